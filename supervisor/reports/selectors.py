"""Reads of the reports: every figure an aggregate over ``ConversationFact`` (never a scan of
messages), in a fixed number of queries however many conversations the range holds.
"""

import math
from dataclasses import replace
from datetime import date, datetime, time, timedelta

from django.db.models import Avg, Count, OuterRef, Q, Subquery, Sum
from django.db.models.functions import ExtractHour, TruncDate
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from conversations.models import Agent, Inbox, Queue
from supervisor.facts.models import AgentPresenceChange, ConversationFact

from .filters import ReportFilters
from .metrics import (
    drill_q,
    fcr_eligible,
    figure_aggregates,
    figures_add,
    figures_complete,
    repeat_contact_exists,
)

# First response time distribution: (upper bound in seconds or None, label).
FRT_BUCKETS = [(60, _("< 1 min")), (300, _("1–5 min")), (900, _("5–15 min")), (3600, _("15–60 min")),
               (14400, _("1–4 h")), (None, _("≥ 4 h"))]


def facts_of(filters: ReportFilters):
    return ConversationFact.objects.filter(filters.q())


def percentile(queryset, field: str, count: int, fraction: float) -> int | None:
    """The nearest-rank percentile of ``field`` over ``count`` non-null values (one query)."""
    if not count:
        return None
    rank = max(1, math.ceil(fraction * count))
    values = (queryset.filter(**{f"{field}__isnull": False}).order_by(field).values_list(field, flat=True)
              [rank - 1:rank])
    return next(iter(values), None)


def report_grid(filters: ReportFilters) -> list[dict]:
    """The figures per day and hour of the range (one aggregate), with the first-response
    distribution's counts: the totals, the days, the hours and the distribution all add up from it."""
    return list(facts_of(filters).annotate(day=TruncDate("started_at", tzinfo=filters.tz),
                                           hour=ExtractHour("started_at", tzinfo=filters.tz))
                .values("day", "hour").annotate(**figure_aggregates(), **_bucket_aggregates()).order_by())


def report_summary(filters: ReportFilters, *, grid: list[dict] | None = None, now: datetime | None = None) -> dict:
    """The totals of the range: the grid's (``report_grid``), the handle-time percentile, FCR."""
    facts = facts_of(filters)
    summary = figures_complete(figures_add(report_grid(filters) if grid is None else grid))
    summary["handle_p90"] = percentile(facts, "handle_seconds", summary["handle_count"], 0.9)
    fcr = (facts.filter(fcr_eligible(now)).annotate(has_repeat=repeat_contact_exists())
           .aggregate(eligible=Count("pk"), resolved_first=Count("pk", filter=Q(reopened=0, has_repeat=False))))
    summary["fcr_eligible"], summary["fcr_count"] = fcr["eligible"], fcr["resolved_first"]
    summary["fcr"] = fcr["resolved_first"] / fcr["eligible"] if fcr["eligible"] else None
    return summary


def report_by_day(filters: ReportFilters, *, grid: list[dict] | None = None) -> list[dict]:
    """One row per day of the range (days without contacts too), in the contact center's zone."""
    grid = report_grid(filters) if grid is None else grid
    return [{**figures_complete(figures_add(row for row in grid if row["day"] == day)), "day": day}
            for day in filters.days]


def report_by_hour(filters: ReportFilters, *, grid: list[dict] | None = None) -> list[dict]:
    """Offered and handled conversations by hour of the day they started (0–23, local)."""
    grid = report_grid(filters) if grid is None else grid
    hours = [figures_add(row for row in grid if row["hour"] == hour) for hour in range(24)]
    return [{"hour": hour, "offered": row["offered"], "handled": row["handled"]} for hour, row in enumerate(hours)]


_GROUPS = {"queue": ("queue_id", "queue__name"), "channel": ("channel", "channel"),
           "agent": ("agent_id", "agent__display_name"), "inbox": ("inbox_id", "inbox__name")}


def report_queue_channel_grid(filters: ReportFilters) -> list[dict]:
    """The figures per queue and channel (one aggregate): both tables add up from it."""
    return list(facts_of(filters).values("queue_id", "queue__name", "channel").annotate(**figure_aggregates())
                .order_by())


def report_by(filters: ReportFilters, dimension: str, *, grid: list[dict] | None = None) -> list[dict]:
    """One row per queue, channel or agent (who handled), with its name. Queue and channel add up
    from ``report_queue_channel_grid`` when given."""
    key, name = _GROUPS[dimension]
    if grid is None or dimension not in ("queue", "channel"):
        grid = list(facts_of(filters).values(*dict.fromkeys((key, name))).annotate(**figure_aggregates()).order_by())
    groups: dict = {}
    for row in grid:
        groups.setdefault((row[key], row[name]), []).append(row)
    result = [{**figures_complete(figures_add(rows)), "key": k, "name": n} for (k, n), rows in groups.items()]
    return sorted(result, key=lambda row: (row["name"] is None, str(row["name"] or ""), str(row["key"])))


def first_response_by_agent(filters: ReportFilters) -> list[dict]:
    """First response time per agent who sent the first reply (not the agent who handled last)."""
    # The agent filter means "replies sent by this agent" here.
    facts = ConversationFact.objects.filter(filters.q() if not filters.agent else
                                            replace(filters, agent=None).q()
                                            & Q(first_reply_agent_id=filters.agent))
    return list(facts.filter(first_reply_agent__isnull=False)
                .values("first_reply_agent_id", "first_reply_agent__display_name")
                .annotate(responded=Count("pk"), frt=Avg("first_response_seconds"))
                .order_by("first_reply_agent__display_name", "first_reply_agent_id"))


def _bucket_aggregates() -> dict:
    aggregates, lower = {}, 0
    for index, (upper, _label) in enumerate(FRT_BUCKETS):
        condition = Q(first_response_seconds__gte=lower)
        if upper is not None:
            condition &= Q(first_response_seconds__lt=upper)
        aggregates[f"frt_bucket_{index}"] = Count("pk", filter=condition)
        lower = upper or lower
    return aggregates


def frt_distribution(filters: ReportFilters, *, grid: list[dict] | None = None) -> list[dict]:
    """How many first responses took how long (the grid's counts)."""
    counts = figures_add(report_grid(filters) if grid is None else grid)
    bounds, lower = [], 0
    for index, (upper, label) in enumerate(FRT_BUCKETS):
        bounds.append({"label": str(label), "count": counts.get(f"frt_bucket_{index}", 0), "min": lower, "max": upper})
        lower = upper or lower
    return bounds


def drill_down(filters: ReportFilters, metric: str, *, day: date | None = None, hour: int | None = None,
               reply_agent: int | None = None, frt_from: int | None = None, frt_to: int | None = None, now=None):
    """The conversations behind a figure: the filters, the metric's condition, and the row's day,
    hour or first-reply agent when the figure came from such a row. None for an unknown metric."""
    condition = drill_q(metric, now=now)
    if condition is None:
        return None
    facts = ConversationFact.objects.filter(filters.q())
    if reply_agent:
        facts = ConversationFact.objects.filter(
            replace(filters, agent=None).q() & Q(first_reply_agent_id=reply_agent))
    if metric in ("fcr", "repeat"):
        facts = facts.annotate(has_repeat=repeat_contact_exists())
    if day is not None:
        starts = datetime.combine(day, time.min, tzinfo=filters.tz)
        facts = facts.filter(started_at__gte=starts, started_at__lt=starts + timedelta(days=1))
    if hour is not None:
        facts = facts.annotate(hour=ExtractHour("started_at", tzinfo=filters.tz)).filter(hour=hour)
    if frt_from is not None:  # a bar of the first-response distribution
        facts = facts.filter(first_response_seconds__gte=frt_from)
    if frt_to is not None:
        facts = facts.filter(first_response_seconds__lt=frt_to)
    return (facts.filter(condition).select_related("customer", "queue", "agent", "first_reply_agent", "inbox")
            .order_by("-started_at", "-conversation_id"))


def filter_choices() -> dict:
    """What the filter form offers (three queries)."""
    return {
        "queues": list(Queue.objects.order_by("name").values_list("pk", "name")),
        "agents": list(Agent.objects.order_by("display_name").values_list("pk", "display_name")),
        "inboxes": list(Inbox.objects.order_by("name").values_list("pk", "name")),
    }


def _available_seconds(changes: list[tuple[datetime, bool]], start_available: bool, start: datetime,
                       end: datetime) -> int:
    """Seconds in an available presence between ``start`` and ``end``, given the state at
    ``start`` and the changes (instant, available) inside."""
    total, available, since = 0.0, start_available, start
    for at, is_available in changes:
        if available:
            total += (at - since).total_seconds()
        available, since = is_available, at
    if available and end > since:
        total += (end - since).total_seconds()
    return int(total)


def agent_status(filters: ReportFilters, *, now: datetime | None = None) -> list[dict]:
    """Per agent and day: the presence changes (each with who made it: ``source`` the agent, a
    supervisor, the system or the admin, ``reason`` as the core said it, ``by`` the supervisor's
    name), the time available, the time handling and the
    occupancy (handling ÷ available). Three queries: the agents with their presence when the range
    starts, the changes inside it, the handle time of the conversations they accepted each day."""
    now = now or timezone.now()
    starts, ends = filters.starts_at, min(filters.ends_before, now)
    agents = Agent.objects.order_by("display_name", "pk")
    if filters.agent:
        agents = agents.filter(pk=filters.agent)
    before = AgentPresenceChange.objects.filter(agent=OuterRef("pk"), changed_at__lt=starts).order_by("-changed_at", "-id")
    agents = list(agents.annotate(available_at_start=Subquery(before.values("is_available")[:1]))
                  .values("pk", "display_name", "available_at_start"))
    changes: dict[int, list] = {}
    for agent_id, at, name, is_available, source, reason, by in (
            AgentPresenceChange.objects.filter(changed_at__gte=starts, changed_at__lt=filters.ends_before,
                                               agent_id__in=[a["pk"] for a in agents])
            .order_by("agent_id", "changed_at", "id").values_list(
                "agent_id", "changed_at", "name", "is_available", "source", "reason", "changed_by__display_name")):
        changes.setdefault(agent_id, []).append({"at": at, "name": name, "available": is_available,
                                                 "source": source, "reason": reason, "by": by or ""})
    handling = {(row["agent_id"], row["day"]): row["seconds"] or 0 for row in (
        ConversationFact.objects.filter(accepted_at__gte=starts, accepted_at__lt=filters.ends_before,
                                        agent_id__in=[a["pk"] for a in agents])
        .annotate(day=TruncDate("accepted_at", tzinfo=filters.tz)).values("agent_id", "day")
        .annotate(seconds=Sum("handle_seconds")))}
    rows = []
    for agent in agents:
        available = bool(agent["available_at_start"])
        agent_changes = changes.get(agent["pk"], [])
        for day in filters.days:
            day_start = datetime.combine(day, time.min, tzinfo=filters.tz)
            day_end = min(day_start + timedelta(days=1), ends)
            if day_start >= ends:
                break
            inside = [change for change in agent_changes if day_start <= change["at"] < day_end]
            seconds = _available_seconds([(change["at"], change["available"]) for change in inside], available,
                                         day_start, day_end)
            handled = handling.get((agent["pk"], day), 0)
            if inside:
                available = inside[-1]["available"]
            if not inside and not seconds and not handled:
                continue
            rows.append({
                "agent_id": agent["pk"], "agent": agent["display_name"], "day": day, "changes": inside,
                "available_seconds": seconds, "handling_seconds": handled,
                "occupancy": handled / seconds if seconds else None,
            })
    return rows


def agent_status_totals(rows: list[dict]) -> list[dict]:
    """``agent_status`` rows added up per agent over the range (the page's view of many agents;
    one agent's days are shown when the report is filtered to them)."""
    totals: dict[int, dict] = {}
    for row in rows:
        total = totals.setdefault(row["agent_id"], {"agent_id": row["agent_id"], "agent": row["agent"], "days": 0,
                                                    "change_count": 0, "available_seconds": 0, "handling_seconds": 0})
        total["days"] += 1
        total["change_count"] += len(row["changes"])
        total["available_seconds"] += row["available_seconds"]
        total["handling_seconds"] += row["handling_seconds"]
    for total in totals.values():
        total["occupancy"] = (total["handling_seconds"] / total["available_seconds"]
                              if total["available_seconds"] else None)
    return list(totals.values())
