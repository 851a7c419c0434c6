"""What the wallboard shows, read from the database in a fixed number of queries.

``wallboard_snapshot`` is the whole board: per queue and per channel (waiting now, longest wait,
the oldest customers waiting, offered/handled/abandoned today, service level so far today,
agents serving it by presence) and per agent (presence and since when, load per channel against
capacity, what they handle and since when, missed offers today). Ten queries however many queues,
agents and conversations there are (tests/supervisor/test_selectors.py counts them).

"Today" is the contact center's day (``CC_DEFAULT_TIME_ZONE``, Tokyo by default), from its
midnight. A conversation counts in a queue's day when it entered that queue today
(``queued_at``): offered; handled once an agent took it, answered at its *first* acceptance since
(``answered_at``: a reassignment or a transfer to another agent does not move it, so the wait
and the service level are not stretched by later hand-offs); abandoned when the
customer left first (``abandoned_at``), a *short* abandon when within
``CC_SHORT_ABANDON_SECONDS`` of entering.

Service level so far today = answered within the queue's SLA (``Queue.sla_seconds``) ÷ (offered −
short abandons − those still waiting and not yet past the SLA). Abandons after the threshold and
customers still waiting past the SLA count against it; a customer still waiting inside the SLA is
not decided yet and counts neither way.
"""

from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.db.models import Count, Q
from django.utils import timezone

from conversations.models import (
    ACTIVE_STATUSES,
    Agent,
    AgentSkill,
    Channel,
    Conversation,
    ConversationStatus,
    Offer,
    OfferStatus,
    PresenceState,
    Queue,
)

OLDEST_WAITING_SHOWN = 5
# The load routing counts against capacity (routing.eligibility._LOAD): open and pending
# conversations held, plus pending offers. Snoozed ones are shown as handled but take no slot.
LOAD_STATUSES = (ConversationStatus.OPEN, ConversationStatus.PENDING)


def day_start(now: datetime, *, time_zone: str | None = None) -> datetime:
    """Midnight of ``now``'s day in the contact center's time zone, as an aware datetime."""
    zone = ZoneInfo(time_zone or settings.CC_DEFAULT_TIME_ZONE)
    return datetime.combine(now.astimezone(zone).date(), time.min, tzinfo=zone)


@dataclass
class DayCounts:
    offered: int = 0
    handled: int = 0
    abandoned: int = 0
    short_abandoned: int = 0
    answered_in_sla: int = 0
    undecided: int = 0  # still waiting, not yet past the SLA

    @property
    def service_level(self) -> float | None:
        """Answered within SLA ÷ (offered − short abandons − undecided); None when nothing counts."""
        base = self.offered - self.short_abandoned - self.undecided
        return None if base <= 0 else self.answered_in_sla / base

    def as_dict(self) -> dict:
        level = self.service_level
        return {"offered": self.offered, "handled": self.handled, "abandoned": self.abandoned,
                "short_abandoned": self.short_abandoned, "answered_in_sla": self.answered_in_sla,
                "service_level": None if level is None else round(level * 100, 1)}


def _count_day(counts: DayCounts, row: tuple, *, sla: timedelta, short: timedelta, now: datetime) -> None:
    _queue, _channel, queued_at, answered_at, abandoned_at = row
    counts.offered += 1
    if answered_at is not None and answered_at >= queued_at:
        counts.handled += 1
        if answered_at - queued_at <= sla:
            counts.answered_in_sla += 1
    elif abandoned_at is not None:
        counts.abandoned += 1
        if abandoned_at - queued_at < short:
            counts.short_abandoned += 1
    elif now - queued_at <= sla:
        counts.undecided += 1


def _waiting_entry(row: dict, now: datetime) -> dict:
    # ``customer`` is empty for a customer we know no name of: the template names them by id, in
    # the reader's language.
    since = row["queued_at"] or row["created_at"]
    return {"conversation": row["pk"], "customer": row["customer__display_name"], "customer_id": row["customer_id"],
            "channel": row["channel"], "since": since, "wait_seconds": max(0, int((now - since).total_seconds()))}


def _serves(agent_levels: dict[int, dict[int, int]], agent: Agent, queue: Queue) -> bool:
    return all(agent_levels.get(agent.pk, {}).get(link.skill_id, 0) >= link.min_level
               for link in queue.queueskill_set.all())


def _by_presence(agent_rows: list[dict]) -> list[dict]:
    counts = Counter((row["presence"], row["available"]) for row in agent_rows)
    return [{"presence": name, "available": available, "agents": count}
            for (name, available), count in sorted(counts.items(), key=lambda item: (not item[0][1], item[0][0]))]


def _work_of_agents(handling: list[dict], offers: list[tuple], now: datetime):
    """What each agent holds, their load per channel (held open/pending + pending offers) and
    their pending offers, from the rows of queries 7 and 8."""
    held: dict[int, list[dict]] = defaultdict(list)
    load: dict[int, Counter] = defaultdict(Counter)
    for row in handling:
        held[row["assignee_id"]].append({
            "conversation": row["pk"], "customer": row["customer__display_name"], "customer_id": row["customer_id"],
            "channel": row["channel"], "status": row["status"], "since": row["assigned_at"],
            "seconds": max(0, int((now - row["assigned_at"]).total_seconds())) if row["assigned_at"] else None})
        if row["status"] in LOAD_STATUSES:
            load[row["assignee_id"]][row["channel"]] += 1
    offered_to: dict[int, int] = Counter()
    for agent_id, channel, _conversation, _created in offers:
        load[agent_id][channel] += 1
        offered_to[agent_id] += 1
    return held, load, offered_to


def _presence_of(agent: Agent, now: datetime) -> dict:
    return {
        "presence": agent.presence.name if agent.presence else "",
        "presence_id": agent.presence_id,
        "available": bool(agent.presence and agent.presence.is_available),
        "offline": bool(agent.presence is None or agent.presence.is_offline),
        "presence_since": agent.presence_changed_at,
        "presence_seconds": max(0, int((now - agent.presence_changed_at).total_seconds())),
    }


def _agent_row(agent: Agent, *, now: datetime, load: Counter, handling: list[dict], pending_offers: int,
               missed: int, serves: list[int]) -> dict:
    loads = [{"channel": value, "load": load[value], "capacity": agent.capacity_for(value)}
             for value, _label in Channel.choices if load[value] or agent.capacity_for(value)]
    return {
        "id": agent.pk, "name": agent.display_name, **_presence_of(agent, now),
        "load": loads, "handling": handling, "pending_offers": pending_offers, "missed_offers_today": missed,
        "serves": serves, "channels": [value for value, _label in Channel.choices if agent.capacity_for(value) > 0],
    }


def wallboard_snapshot(*, now: datetime | None = None) -> dict:
    """The whole wallboard (see the module's docstring). Ten queries."""
    now = now or timezone.now()
    start = day_start(now)
    short = timedelta(seconds=settings.CC_SHORT_ABANDON_SECONDS)

    queues = list(Queue.objects.filter(is_active=True).prefetch_related("queueskill_set").order_by("name", "id"))  # 2
    today = list(Conversation.objects.filter(queued_at__gte=start, queue__isnull=False)  # 3
                 .values_list("queue_id", "channel", "queued_at", "answered_at", "abandoned_at"))
    waiting = list(Conversation.objects.filter(  # 4: the routing index's condition (conv_routing_order_idx)
        status=ConversationStatus.OPEN, assignee__isnull=True, abandoned_at__isnull=True, queue__isnull=False)
        .order_by("queued_at", "created_at", "id")
        .values("pk", "queue_id", "channel", "queued_at", "created_at", "customer_id", "customer__display_name"))
    agents = list(Agent.objects.select_related("presence").order_by("display_name", "id"))  # 5
    agent_levels: dict[int, dict[int, int]] = defaultdict(dict)
    for agent_id, skill_id, level in AgentSkill.objects.values_list("agent_id", "skill_id", "level"):  # 6
        agent_levels[agent_id][skill_id] = level
    handling = list(Conversation.objects.filter(assignee__isnull=False, status__in=ACTIVE_STATUSES)  # 7
                    .order_by("assigned_at", "id")
                    .values("pk", "assignee_id", "channel", "status", "assigned_at", "queue_id", "customer_id",
                            "customer__display_name"))
    offers = list(Offer.objects.filter(status=OfferStatus.PENDING)  # 8
                  .values_list("agent_id", "channel", "conversation_id", "created_at"))
    missed = _missed_offers(start)  # 9
    presences = [{"id": state.pk, "name": state.name, "label": state.label, "available": state.is_available}
                 for state in PresenceState.objects.order_by("ordering", "name")]  # 10

    sla_of = {queue.pk: timedelta(seconds=queue.sla_seconds) for queue in queues}
    default_sla = timedelta(seconds=Queue._meta.get_field("sla_seconds").default)
    queue_days = {queue.pk: DayCounts() for queue in queues}
    channel_days = {value: DayCounts() for value, _label in Channel.choices}
    for row in today:
        sla = sla_of.get(row[0], default_sla)
        if row[0] in queue_days:
            _count_day(queue_days[row[0]], row, sla=sla, short=short, now=now)
        if row[1] in channel_days:
            _count_day(channel_days[row[1]], row, sla=sla, short=short, now=now)

    waiting_by_queue: dict[int, list[dict]] = defaultdict(list)
    waiting_by_channel: dict[str, list[dict]] = defaultdict(list)
    for row in waiting:
        entry = _waiting_entry(row, now)
        waiting_by_queue[row["queue_id"]].append(entry)
        waiting_by_channel[row["channel"]].append(entry)

    queue_rows = []
    for queue in queues:
        queued = waiting_by_queue.get(queue.pk, [])
        queue_rows.append({
            "id": queue.pk, "name": queue.name, "sla_seconds": queue.sla_seconds,
            "waiting": len(queued), "longest_wait_seconds": queued[0]["wait_seconds"] if queued else None,
            "oldest": queued[:OLDEST_WAITING_SHOWN], "today": queue_days[queue.pk].as_dict(),
            "serving": [],  # below, from the agents' rows
        })

    held, load, offered_to = _work_of_agents(handling, offers, now)

    agent_rows = [_agent_row(agent, now=now, load=load[agent.pk], handling=held.get(agent.pk, []),
                             pending_offers=offered_to.get(agent.pk, 0), missed=missed.get(agent.pk, 0),
                             serves=[queue.pk for queue in queues if _serves(agent_levels, agent, queue)])
                  for agent in agents]

    channel_rows = []
    for value, label in Channel.choices:
        queued = waiting_by_channel.get(value, [])
        day = channel_days[value]
        if not queued and not day.offered:
            continue
        channel_rows.append({
            "channel": value, "waiting": len(queued),
            "longest_wait_seconds": queued[0]["wait_seconds"] if queued else None,
            "oldest": queued[:OLDEST_WAITING_SHOWN], "today": day.as_dict(), "serving": [],
        })
    _count_serving(queue_rows, channel_rows, agent_rows)

    return {"at": now, "day_start": start, "short_abandon_seconds": settings.CC_SHORT_ABANDON_SECONDS,
            "queues": queue_rows, "channels": channel_rows, "agents": agent_rows, "presences": presences}


def _count_serving(queue_rows: list[dict], channel_rows: list[dict], agent_rows: list[dict]) -> None:
    """Each queue's and channel's agents by presence, from the agents' rows (``serves``: the queues
    whose skills they have; ``channels``: those they have capacity on)."""
    for queue in queue_rows:
        queue["serving"] = _by_presence([row for row in agent_rows if queue["id"] in row["serves"]])
    for channel in channel_rows:
        channel["serving"] = _by_presence([row for row in agent_rows if channel["channel"] in row["channels"]])


def wallboard_agents_refresh(board: dict, agent_ids: set[int], *, now: datetime | None = None) -> dict | None:
    """``board`` after a presence change of ``agent_ids``: their presence read again (one query)
    and the queues' agents by presence counted again. A presence change alone moves nothing else
    on the board: the offers it rescinds and the work it routes are events of their own, which
    read the whole board. None when one of them is not in the database any more (the board's rows
    changed: read it whole). ``board`` itself is not changed."""
    now = now or timezone.now()
    agents = {agent.pk: agent for agent in Agent.objects.filter(pk__in=agent_ids).select_related("presence")}  # 1
    if len(agents) != len(agent_ids):
        return None
    agent_rows = []
    for row in board["agents"]:
        agent = agents.get(row["id"])
        if agent is not None:
            row = {**row, **_presence_of(agent, now)}
        agent_rows.append(row)
    queue_rows, channel_rows = [dict(row) for row in board["queues"]], [dict(row) for row in board["channels"]]
    _count_serving(queue_rows, channel_rows, agent_rows)
    return {**board, "at": now, "queues": queue_rows, "channels": channel_rows, "agents": agent_rows}


def board_with_presences(board: dict, presences: dict[int, dict], *, now: datetime | None = None) -> dict:
    """``board`` after the presence changes ``presences`` (agent id → the fields of
    ``presence_from_event``) as their events tell them, the queues' agents by presence counted
    again; no query. A change older than the row's (events from two processes crossing) is left
    out. ``board`` itself is not changed."""
    now = now or timezone.now()
    agent_rows = []
    for row in board["agents"]:
        change = presences.get(row["id"])
        if change is not None and change["presence_since"] >= row["presence_since"]:
            row = {**row, **change,
                   "presence_seconds": max(0, int((now - change["presence_since"]).total_seconds()))}
        agent_rows.append(row)
    queue_rows, channel_rows = [dict(row) for row in board["queues"]], [dict(row) for row in board["channels"]]
    _count_serving(queue_rows, channel_rows, agent_rows)
    return {**board, "at": now, "queues": queue_rows, "channels": channel_rows, "agents": agent_rows}


def presence_from_event(event: dict) -> dict | None:
    """The row fields of an ``agent.presence`` event (conversations.events), None when it does not
    carry them all (then the agent is read again)."""
    try:
        since = datetime.fromisoformat(event["since"])
        if since.tzinfo is None:
            return None
        return {"presence": str(event["name"] or ""), "presence_id": event["presence"],
                "available": bool(event["available"]), "offline": bool(event["offline"]),
                "presence_since": since}
    except (KeyError, TypeError, ValueError):
        return None


def _missed_offers(start: datetime, *, agent_ids=None) -> dict[int, int]:
    """Offers each agent let time out today (one grouped query)."""
    offers = Offer.objects.filter(status=OfferStatus.TIMEOUT, decided_at__gte=start)
    if agent_ids is not None:
        offers = offers.filter(agent_id__in=agent_ids)
    rows = offers.order_by().values("agent_id").annotate(missed=Count("id")).values_list("agent_id", "missed")
    return dict(rows)


def agent_day(*, agent: Agent, now: datetime | None = None) -> dict:
    """An agent's own day, read-only ("my day"): presence and since when, load per channel against
    capacity, what they handle, assigned, resolved and missed offers today, and how many wait in
    the queues they serve. Eight queries."""
    now = now or timezone.now()
    start = day_start(now)
    handling = list(Conversation.objects.filter(assignee=agent, status__in=ACTIVE_STATUSES)  # 1
                    .order_by("assigned_at", "id")
                    .values("pk", "channel", "status", "assigned_at", "customer_id", "customer__display_name"))
    pending = Counter(Offer.objects.filter(agent=agent, status=OfferStatus.PENDING)  # 2
                      .values_list("channel", flat=True))
    today = Conversation.objects.filter(assignee=agent).aggregate(  # 3
        assigned=Count("id", filter=Q(assigned_at__gte=start)),
        resolved=Count("id", filter=Q(resolved_at__gte=start, status=ConversationStatus.RESOLVED)))
    missed = Offer.objects.filter(agent=agent, status=OfferStatus.TIMEOUT, decided_at__gte=start).count()  # 4
    levels = dict(AgentSkill.objects.filter(agent=agent).values_list("skill_id", "level"))  # 5
    queues = [queue for queue in Queue.objects.filter(is_active=True).prefetch_related("queueskill_set")  # 6, 7
              .order_by("name", "id")
              if all(levels.get(link.skill_id, 0) >= link.min_level for link in queue.queueskill_set.all())]
    waiting = dict(Conversation.objects.filter(  # 8
        status=ConversationStatus.OPEN, assignee__isnull=True, abandoned_at__isnull=True,
        queue_id__in=[queue.pk for queue in queues]).order_by().values("queue_id").annotate(n=Count("id"))
        .values_list("queue_id", "n"))
    load = Counter(row["channel"] for row in handling if row["status"] in LOAD_STATUSES) + pending
    presence = agent.presence
    return {
        "presence": presence.name if presence else "", "available": bool(presence and presence.is_available),
        "presence_since": agent.presence_changed_at,
        "presence_seconds": max(0, int((now - agent.presence_changed_at).total_seconds())),
        "load": [{"channel": value, "load": load[value], "capacity": agent.capacity_for(value)}
                 for value, _label in Channel.choices if load[value] or agent.capacity_for(value)],
        "handling": [{"conversation": row["pk"], "customer": row["customer__display_name"],
                      "customer_id": row["customer_id"], "channel": row["channel"], "status": row["status"],
                      "since": row["assigned_at"],
                      "seconds": max(0, int((now - row["assigned_at"]).total_seconds())) if row["assigned_at"] else None}
                     for row in handling],
        "assigned_today": today["assigned"], "resolved_today": today["resolved"], "missed_offers_today": missed,
        "queues": [{"id": queue.pk, "name": queue.name, "waiting": waiting.get(queue.pk, 0)} for queue in queues],
    }
