"""Queue placement: which queue a conversation enters when it opens (routing rules, the inbox's
queue, the default one), and entering it.
"""

from functools import cache
from zoneinfo import ZoneInfo

from django.db import connection
from django.utils import timezone

from profiles.languages import primary_language

from ..models import Conversation, Queue, RoutingRule
from .sql import RowReader


def rule_context(conversation: Conversation, *, tags: list[str] | None = None, at=None) -> dict:
    """What a routing rule can ask about ``conversation`` (rules.ALLOWED_FIELDS). ``tags``: the
    customer's tag names when the caller already knows them; else they are read. ``hour`` and
    ``weekday`` are the contact center's (CC_DEFAULT_TIME_ZONE), not whatever time zone the calling
    process has active: the same message must meet the same rule in a worker (UTC) as in a request
    (the signed-in user's zone). ``at``: the moment asked about (default now): a message's
    arrival, or the moment the widget asks for."""
    customer = conversation.customer
    from django.conf import settings

    local = timezone.localtime(at or timezone.now(), ZoneInfo(settings.CC_DEFAULT_TIME_ZONE))  # ZoneInfo caches it
    return {
        "channel": conversation.channel, "inbox": conversation.inbox.address,
        "language": primary_language(customer.language) or customer.language,  # "ja-JP" set by hand meets "ja"
        "tags": tags if tags is not None else [tag.name for tag in customer.tags.all()],
        "journey_stage": customer.journey_stage,
        "priority": conversation.priority, "ivr": _ivr_choice(conversation),
        "customer_id": customer.pk, "subject": conversation.subject, "hour": local.hour, "weekday": local.isoweekday(),
    }


def _ivr_choice(conversation: Conversation) -> str | None:
    """The IVR option a caller chose (``ivr == "billing"``): the name of the option stored on the
    conversation's latest call; None for every other channel (no query) or a call without one."""
    if conversation.channel != "voice" or conversation.pk is None:
        return None
    from ..models import Call

    return (Call.objects.filter(conversation_id=conversation.pk).order_by("-started_at", "-id")
            .values_list("ivr__option", flat=True).first())


def queue_pick(conversation: Conversation, *, tags: list[str] | None = None, at=None) -> dict:
    """Put ``conversation`` in the queue it belongs in (its ``queue``, not saved) and say why, as
    TaskRouter's workflow places a task when it is created: the first active rule whose expression
    matches decides; else the inbox's default queue, else the active queue marked default; no queue
    when there is none. ``{"rule": <the rule's name, "inbox default", "default queue" or "no
    queue">}``, with ``rule_id`` when a rule matched.

    Reads the active rules; the customer's tags only when a rule asks about them (``tags``: the
    caller knows them, e.g. none for a customer created in its transaction); the chosen queue when
    no rule matched (an inactive default is passed over). The caller then puts the conversation in
    it (``queue_enter``)."""
    from .rules import first_match

    # A rule can only send a conversation to a queue that serves its channel (empty = all).
    rules = [rule for rule in _active_rules() if rule.queue.takes(conversation.channel)]
    if rules:
        if tags is None and not any("tags" in _rule_fields(rule.expression) for rule in rules):
            tags = []  # nobody asks: not worth a query
        matched = first_match(((rule, rule.expression) for rule in rules), rule_context(conversation, tags=tags, at=at))
        if matched is not None:
            conversation.queue = matched.queue
            return {"rule": matched.name, "rule_id": matched.pk}
    inbox_queue = conversation.inbox.default_queue_id
    default = _fallback_queue(inbox_queue)
    conversation.queue = default
    if default is None:
        return {"rule": "no queue"}
    return {"rule": "inbox default" if default.pk == inbox_queue else "default queue"}


# queue_pick's two reads, written out once: every conversation opened asks them, and compiling the
# equivalent querysets cost more CPU than running them (about 2 ms of an SMS's 13 ms ingest here).
_ACTIVE_RULES = """SELECT {rule_columns}, {queue_columns} FROM {rule} r JOIN {queue} q ON q.id = r.queue_id
    WHERE r.is_active AND q.is_active ORDER BY r.{order}, r.id"""


# The inbox's default queue, else the queue marked default (the inbox's may be NULL or inactive).
_FALLBACK_QUEUE = """SELECT {queue_columns} FROM {queue} q WHERE q.is_active AND (q.id = %s OR q.is_default)
    ORDER BY CASE WHEN q.id = %s THEN 0 ELSE 1 END, q.id LIMIT 1"""


@cache
def _queue_pick_sql(vendor: str) -> tuple[str, str]:
    rules, queues = _rule_readers()
    quote = connection.ops.quote_name
    names = {"rule_columns": rules.columns, "queue_columns": queues.columns, "order": quote("order"),
             "rule": quote(RoutingRule._meta.db_table), "queue": quote(Queue._meta.db_table)}
    return _ACTIVE_RULES.format(**names), _FALLBACK_QUEUE.format(**names)


@cache
def _rule_readers() -> tuple["RowReader", "RowReader"]:
    return RowReader(RoutingRule, "r"), RowReader(Queue, "q")


def _active_rules() -> list[RoutingRule]:
    """The active rules of active queues, in order, each with its queue."""
    rules, queues = _rule_readers()
    width = len(rules.fields)
    with connection.cursor() as cursor:
        cursor.execute(_queue_pick_sql(connection.vendor)[0])
        rows = cursor.fetchall()
    out = []
    for row in rows:
        rule = rules.instance(row[:width])
        rule.queue = queues.instance(row[width:])
        out.append(rule)
    return out


def _fallback_queue(inbox_queue_id: int | None) -> Queue | None:
    """The inbox's default queue if active, else the active queue marked default, else None."""
    with connection.cursor() as cursor:
        cursor.execute(_queue_pick_sql(connection.vendor)[1], [inbox_queue_id, inbox_queue_id])
        row = cursor.fetchone()
    return None if row is None else _rule_readers()[1].instance(row)


def queue_enter(conversation: Conversation, queue: Queue, *, at, reason: str) -> list[str]:
    """Put ``conversation`` in ``queue`` as of ``at`` (not saved): it waits there from then
    (``queued_at``: its position, its overflow timer, its answer time), says why (``queue_reason``),
    and takes at least the queue's priority, as a TaskRouter workflow target sets its task's
    priority: the waiting order is priority then age, so an agent serving several queues gets the
    higher-priority queue's conversations first. Returns the fields it changed, for the caller's
    save."""
    conversation.queue, conversation.queued_at, conversation.queue_reason = queue, at, reason[:200]
    fields = ["queue", "queued_at", "queue_reason"]
    if queue.priority > conversation.priority:
        conversation.priority = queue.priority
        fields.append("priority")
    return fields


def _rule_fields(expression: str) -> frozenset[str]:
    """The fields a rule's expression asks about; everything, for one that does not compile (so
    first_match gets to log it)."""
    from django.core.exceptions import ValidationError

    from .rules import ALLOWED_FIELDS, compile_rule

    try:
        return compile_rule(expression).fields
    except ValidationError:
        return frozenset(ALLOWED_FIELDS)
