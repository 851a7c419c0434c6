"""Per-conversation sequence numbers for messages, notes and events.

The console follows a conversation by its sequence numbers: an entry numbered n is visible only
once every entry before it in that conversation is, because the number is taken by an UPDATE of
the conversation row and that row lock is held until commit. So "give me everything after n" after a
dropped connection has no gap and no duplicate (a plain auto-increment id does not have that
property: ids are handed out at insert, commits land in any order).

Lock order: callers may already hold the customer's row lock (ingest); nothing takes the customer's
lock after a conversation's, so the two never deadlock.
"""

from django.db import connection

from .models import Conversation


def message_seq_next(conversation: Conversation) -> int:
    """Take the conversation's next number (inside the caller's transaction)."""
    table = connection.ops.quote_name(Conversation._meta.db_table)
    with connection.cursor() as cursor:
        # One statement on both backends (SQLite has RETURNING since 3.35).
        cursor.execute(f"UPDATE {table} SET last_seq = last_seq + 1 WHERE id = %s RETURNING last_seq", [conversation.pk])
        (seq,) = cursor.fetchone()
    conversation.last_seq = seq
    return seq


def conversation_assignments(conversation: Conversation, update_fields) -> tuple[list[str], list]:
    """``column = %s`` assignments and their values for ``update_fields`` (and ``updated_at``), as
    ``save(update_fields=...)`` would write them."""
    meta = Conversation._meta
    quote = connection.ops.quote_name
    assignments, params = [], []
    for name in dict.fromkeys([*update_fields, "updated_at"]):
        field = meta.get_field(name)
        assignments.append(f"{quote(field.column)} = %s")
        params.append(field.get_db_prep_save(field.pre_save(conversation, False), connection))
    return assignments, params


def conversation_save_taking_seq(conversation: Conversation, update_fields, *, count: int = 1) -> int:
    """Save ``update_fields`` of the conversation (``updated_at`` too; nothing but the number when
    ``update_fields`` is None) and take its next ``count`` numbers in the same UPDATE: a routing
    decision ends with both, one round trip instead of two (bench/routing). Returns the last number
    taken. No model signals are listened to for conversations, so nothing is skipped."""
    assert count >= 1
    assignments, params = conversation_assignments(conversation, update_fields) if update_fields is not None else ([], [])
    table = connection.ops.quote_name(Conversation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {''.join(a + ', ' for a in assignments)}last_seq = last_seq + %s "
                       "WHERE id = %s RETURNING last_seq", [*params, count, conversation.pk])
        (seq,) = cursor.fetchone()
    conversation.last_seq = seq
    return seq
