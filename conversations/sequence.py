"""Per-conversation sequence numbers for messages, notes and events.

The console follows a conversation by its sequence numbers: an entry numbered n is visible only
once every entry before it in that conversation is, because the number is taken by an UPDATE of
the conversation row and that row lock is held until commit. So "give me everything after n" after a
dropped connection has no gap and no duplicate (a plain auto-increment id does not have that
property: ids are handed out at insert, commits land in any order).

Lock order: callers may already hold the customer's row lock (ingest); nothing takes the customer's
lock after a conversation's, so the two never deadlock.
"""

from functools import lru_cache

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


@lru_cache(maxsize=64)
def _assigned_fields(update_fields: tuple[str, ...]) -> tuple:
    meta = Conversation._meta
    return tuple(meta.get_field(name) for name in dict.fromkeys([*update_fields, "updated_at"]))


@lru_cache(maxsize=64)
def conversation_assignments_sql(update_fields: tuple[str, ...]) -> str:
    """``column = %s, …`` for ``update_fields`` (and ``updated_at``), as ``save(update_fields=...)``
    would write them; the values are ``conversation_assignment_values``."""
    return ", ".join(f"{connection.ops.quote_name(field.column)} = %s" for field in _assigned_fields(update_fields))


def conversation_assignment_values(db, conversation: Conversation, update_fields: tuple[str, ...]) -> list:
    return [field.get_db_prep_save(field.pre_save(conversation, False), db) for field in _assigned_fields(update_fields)]


def conversation_save_taking_seq(conversation: Conversation, update_fields, *, count: int = 1) -> int:
    """Save ``update_fields`` of the conversation (``updated_at`` too; nothing but the number when
    ``update_fields`` is None) and take its next ``count`` numbers in the same UPDATE: a routing
    decision ends with both, one round trip instead of two (bench/routing). Returns the last number
    taken. No model signals are listened to for conversations, so nothing is skipped."""
    assert count >= 1
    fields = tuple(update_fields) if update_fields is not None else None
    assignments = conversation_assignments_sql(fields) + ", " if fields is not None else ""
    params = conversation_assignment_values(connection, conversation, fields) if fields is not None else []
    table = connection.ops.quote_name(Conversation._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET {assignments}last_seq = last_seq + %s "
                       "WHERE id = %s RETURNING last_seq", [*params, count, conversation.pk])
        (seq,) = cursor.fetchone()
    conversation.last_seq = seq
    return seq
