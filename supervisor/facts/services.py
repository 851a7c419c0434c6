"""Writes of the facts: derive them from the timeline and upsert them, for a batch of
conversations (the tick's stale ones, or every one for the rebuild). Idempotent: the row is keyed
by its conversation, and deriving the same timeline twice gives the same row.
"""

import time
from collections import defaultdict

from django.conf import settings
from django.core.cache import cache
from django.db.models import F, Q
from django.utils import timezone

from conversations.models import Conversation, Message, MessageKind, Queue

from .derive import ConversationRow, Entry, conversation_facts
from .models import AgentPresenceChange, ConversationFact, PresenceChangeSource
from .survey_facts import NO_SURVEY, survey_facts

# A queue's service-level target is its ``sla_seconds``; read with getattr so the facts work with a
# Queue model without the field (it came with the wallboard), against this default.
DEFAULT_SLA_SECONDS = 60

_UPDATE_FIELDS = [f.name for f in ConversationFact._meta.concrete_fields if f.name != "conversation"]


def queue_sla_seconds(queue: Queue | None) -> int:
    """The queue's SLA target (``sla_seconds`` when the model has it, else the default)."""
    value = getattr(queue, "sla_seconds", None) if queue is not None else None
    return DEFAULT_SLA_SECONDS if value is None else int(value)


def facts_refresh(conversation_ids: list[int]) -> int:
    """Derive and store the facts of ``conversation_ids``. The conversations are read before their
    timelines: a row then never claims a ``source_seq`` newer than the entries it was derived from
    (an entry committed in between only makes it look stale, and the next tick derives it again).
    Their surveys are read with them (one query): a survey sent or answered writes an event on the
    contact's timeline, which makes its facts stale, so the tick reads them again."""
    if not conversation_ids:
        return 0
    rows = [ConversationRow(*values) for values in Conversation.objects.filter(pk__in=conversation_ids).order_by().values_list(
        "pk", "customer_id", "inbox_id", "channel", "queue_id", "created_at", "abandoned_at", "last_seq",
        "assignee_id")]
    if not rows:
        return 0
    queues = {q.pk: q for q in Queue.objects.filter(pk__in={r.queue_id for r in rows if r.queue_id})}
    entries: dict[int, list[Entry]] = defaultdict(list)
    timeline = (Message.objects.filter(conversation_id__in=[r.pk for r in rows])
                .filter(Q(kind=MessageKind.EVENT) | Q(kind=MessageKind.MESSAGE))
                .order_by("conversation_id", F("seq").asc(nulls_first=True), "created_at", "id")
                .values_list("conversation_id", "seq", "created_at", "kind", "direction", "event_type", "event_data",
                             "author_agent_id"))
    for conversation_id, seq, *rest in timeline.iterator(chunk_size=2000):
        entries[conversation_id].append(Entry(seq or 0, *rest))
    surveys = survey_facts([row.pk for row in rows])
    now = timezone.now()
    short = settings.CC_SHORT_ABANDON_SECONDS
    facts = [
        ConversationFact(conversation_id=row.pk, derived_at=now, **conversation_facts(
            row, entries[row.pk], sla_seconds=queue_sla_seconds(queues.get(row.queue_id)), short_abandon_seconds=short),
            **surveys.get(row.pk, NO_SURVEY))
        for row in rows
    ]
    ConversationFact.objects.bulk_create(
        facts, update_conflicts=True, unique_fields=["conversation"], update_fields=_UPDATE_FIELDS)
    return len(facts)


def facts_stale_ids(*, limit: int) -> list[int]:
    """Conversations without facts or with a timeline entry newer than their facts (the dirty
    marker: every entry takes the conversation's next ``last_seq``)."""
    return list(Conversation.objects.filter(Q(fact__isnull=True) | Q(fact__source_seq__lt=F("last_seq")))
                .order_by().values_list("pk", flat=True)[:limit])


# The tick's cheap path reads the timeline entries added since the last one it saw (by id, from the
# primary key); a full sweep of every conversation runs when that mark is unknown and every
# FULL_SWEEP_SECONDS, and catches what the cheap path cannot see: an entry whose transaction took a
# lower id but committed after a higher one, a conversation without entries. bench/reports: the
# sweep reads every conversation (0.2 s for 200,000), the cheap path a few rows.
_WATERMARK_KEY = "supervisor:facts:message-watermark"
_SWEPT_AT_KEY = "supervisor:facts:swept-at"
FULL_SWEEP_SECONDS = 300


def facts_refresh_due(*, limit: int = 500) -> int:
    """Tick job: bring the stale facts up to date, ``limit`` conversations a tick."""
    now = time.time()
    watermark, swept_at = cache.get(_WATERMARK_KEY), cache.get(_SWEPT_AT_KEY)
    if watermark is None or swept_at is None or now - swept_at >= FULL_SWEEP_SECONDS:
        # The top id is read before the sweep: whatever the sweep misses comes after it.
        top = Message.objects.order_by("-id").values_list("id", flat=True).first() or 0
        stale = facts_stale_ids(limit=limit)
        done = facts_refresh(stale)
        if len(stale) < limit:  # all caught up: the cheap path may take over from ``top``
            cache.set_many({_WATERMARK_KEY: top, _SWEPT_AT_KEY: now}, timeout=None)
        return done
    recent = list(Message.objects.filter(pk__gt=watermark).order_by("pk")
                  .values_list("pk", "conversation_id")[:limit * 4])
    if not recent:
        return 0
    touched = {conversation_id for _pk, conversation_id in recent}
    stale = list(Conversation.objects.filter(pk__in=touched)
                 .filter(Q(fact__isnull=True) | Q(fact__source_seq__lt=F("last_seq"))).values_list("pk", flat=True))
    done = facts_refresh(stale)
    cache.set(_WATERMARK_KEY, recent[-1][0], timeout=None)
    return done


def facts_rebuild(*, batch_size: int = 500, stdout=None) -> int:
    """Derive every conversation's facts again from its timeline (the command)."""
    done = 0
    last_pk = 0
    while True:
        batch = list(Conversation.objects.filter(pk__gt=last_pk).order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not batch:
            return done
        done += facts_refresh(batch)
        last_pk = batch[-1]
        if stdout is not None:
            stdout.write(f"{done} conversations\n")


# The core's reasons (conversations.routing) by who made the change; any other is the system's.
_SOURCE_OF_REASON = {"agent": PresenceChangeSource.AGENT, "signed_out": PresenceChangeSource.AGENT,
                     "supervisor": PresenceChangeSource.SUPERVISOR}


def presence_change_record(*, agent_id: int, presence, changed_at, reason: str | None = None,
                           by_agent_id: int | None = None) -> None:
    """Keep the presence an agent entered at ``changed_at`` and who made the change (idempotent:
    one row per agent and instant). ``reason`` None: a save outside the routing services (the
    admin, a new agent), which never overwrites a row the services recorded; with a reason, the
    row says who: the agent, a supervisor (``by_agent_id``) or the system."""
    if reason is None:
        source = PresenceChangeSource.ADMIN
    else:
        source = _SOURCE_OF_REASON.get(reason, PresenceChangeSource.SYSTEM)
    if source == PresenceChangeSource.AGENT:
        by_agent_id = agent_id
    row = AgentPresenceChange(
        agent_id=agent_id, presence=presence, name=presence.name if presence else "",
        is_available=bool(presence and presence.is_available), is_offline=bool(presence and presence.is_offline),
        changed_at=changed_at, source=source, reason=(reason or "")[:32], changed_by_id=by_agent_id,
    )
    if reason is None:
        AgentPresenceChange.objects.bulk_create([row], ignore_conflicts=True)
    else:  # the agent's save (post_save, without a reason) may have written the row a moment ago
        AgentPresenceChange.objects.bulk_create([row], update_conflicts=True, unique_fields=["agent", "changed_at"],
                                                update_fields=["source", "reason", "changed_by"])
