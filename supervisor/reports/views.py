"""The reports pages (supervisors and admins only; agents get 403): thin, reads in selectors."""

from dataclasses import replace

from django.core.paginator import Paginator
from django.http import Http404
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext as _

from contactcenter.permissions import supervisor_required
from conversations.models import Channel

from . import selectors
from .charts import Bar, bar_chart
from .csv_export import TABLES, csv_response
from .filters import ReportFilters, _date, _int
from .metrics import definitions
from .presenting import drill_url, duration_text, group_filters, percent_text, presence_change_author, row_present

PAGE_SIZE = 100


def _group_rows(filters: ReportFilters, dimension: str, grid: list[dict] | None = None) -> list[dict]:
    rows = []
    for row in selectors.report_by(filters, dimension, grid=grid):
        narrowed = group_filters(filters, dimension, row["key"])
        label = row["name"]
        if dimension == "channel":
            label = Channel(row["key"]).label if row["key"] in Channel.values else row["key"]
        presented = row_present(row, narrowed) if narrowed else {**row_present(row, filters), "links": {}}
        presented["label"] = label if label not in (None, "") else _("(none)")
        rows.append(presented)
    return rows


def _charts(filters: ReportFilters, by_day: list[dict], by_hour: list[dict], distribution: list[dict]) -> list[dict]:
    days = [(f"{row['day']:%m-%d}", row) for row in by_day]
    return [
        {"id": "chart-volume-hour", "title": _("Offered by hour of day"), "bars": [
            Bar(f"{row['hour']:02d}", row["offered"], str(row["offered"]),
                drill_url(filters, "offered", hour=row["hour"])) for row in by_hour]},
        {"id": "chart-volume-day", "title": _("Offered by day"), "bars": [
            Bar(label, row["offered"], str(row["offered"]), drill_url(filters, "offered", day=row["day"]))
            for label, row in days]},
        {"id": "chart-sl-day", "title": _("Service level by day"), "bars": [
            Bar(label, row["service_level"], percent_text(row["service_level"]),
                drill_url(filters, "missed_sla", day=row["day"])) for label, row in days]},
        {"id": "chart-asa-day", "title": _("Average speed of answer by day"), "bars": [
            Bar(label, row["asa"], duration_text(row["asa"]), drill_url(filters, "handled", day=row["day"]))
            for label, row in days]},
        {"id": "chart-csat-day", "title": _("CSAT by day"), "bars": [
            Bar(label, row["csat"], percent_text(row["csat"]), drill_url(filters, "csat_answered", day=row["day"]))
            for label, row in days]},
        {"id": "chart-frt-distribution", "title": _("First response time distribution"), "bars": [
            Bar(bucket["label"], bucket["count"], str(bucket["count"]),
                drill_url(filters, "responded", frt_from=bucket["min"], frt_to=bucket["max"]))
            for bucket in distribution]},
    ]


@supervisor_required
def reports_page(request):
    filters = ReportFilters.from_query(request.GET)
    grid = selectors.report_grid(filters)  # the totals, days, hours and distribution add up from it
    queue_channel = selectors.report_queue_channel_grid(filters)
    summary = row_present(selectors.report_summary(filters, grid=grid), filters)
    summary["handle_p90_text"] = duration_text(summary["handle_p90"])
    summary["fcr_text"] = percent_text(summary["fcr"])
    summary["survey_links"] = {metric: drill_url(filters, metric) for metric in (
        "surveys_sent", "surveys_answered", "csat_answered", "csat_satisfied", "nps_answered", "nps_promoters",
        "nps_detractors", "ces_answered", "ces_easy")}
    by_day = [{**row_present(row, filters, day=row["day"])} for row in selectors.report_by_day(filters, grid=grid)]
    by_hour = selectors.report_by_hour(filters, grid=grid)
    distribution = selectors.frt_distribution(filters, grid=grid)
    charts = _charts(filters, by_day, by_hour, distribution)
    for chart in charts:
        chart["svg"] = bar_chart(chart_id=chart["id"], title=chart["title"],
                                 description=_("%(title)s, %(start)s to %(end)s; the table below gives the same "
                                               "figures.") % {"title": chart["title"], "start": filters.start,
                                                              "end": filters.end},
                                 bars=chart["bars"])
    frt_agents = [{**row, "frt_text": duration_text(row["frt"]),
                   "link": drill_url(filters, "responded", reply_agent=row["first_reply_agent_id"])}
                  for row in selectors.first_response_by_agent(filters)]
    # Every agent's every day is a CSV's worth (100 agents, 30 days: 3,000 rows): the page adds each
    # agent's days up and links to that agent's days with their presence changes.
    status_rows = selectors.agent_status(filters)
    if not filters.agent:
        status_rows = [{**row, "link": reverse("supervisor_reports:index") + "?"
                        + replace(filters, agent=row["agent_id"]).query() + "#status-title"}
                       for row in selectors.agent_status_totals(status_rows)]
    status = [{**row, "changes": [{**change, "author": presence_change_author(change)}
                                  for change in row.get("changes", [])] if filters.agent else row.get("changes"),
               "available_text": duration_text(row["available_seconds"]),
               "handling_text": duration_text(row["handling_seconds"]), "occupancy_text": percent_text(row["occupancy"])}
              for row in status_rows]
    return render(request, "supervisor/reports/index.html", {
        "filters": filters, "choices": selectors.filter_choices(), "channels": Channel.choices,
        "summary": summary, "by_day": by_day, "by_hour": by_hour, "by_queue": _group_rows(filters, "queue", queue_channel),
        "by_channel": _group_rows(filters, "channel", queue_channel), "by_agent": _group_rows(filters, "agent"),
        "frt_agents": frt_agents, "distribution": distribution, "charts": charts, "agent_status": status, "status_per_day": bool(filters.agent),
        "definitions": {d["key"]: d for d in definitions()}, "definition_list": definitions(),
        "fcr_links": {"fcr": drill_url(filters, "fcr"), "eligible": drill_url(filters, "fcr_eligible"),
                      "repeat": drill_url(filters, "repeat")},
        "exports": [(table, reverse("supervisor_reports:export", args=[table]) + "?" + filters.query())
                    for table in TABLES],
    })


@supervisor_required
def reports_conversations(request):
    filters = ReportFilters.from_query(request.GET)
    metric = request.GET.get("metric", "all")
    hour = request.GET.get("hour", "")
    frt_from, frt_to = request.GET.get("frt_from", ""), request.GET.get("frt_to", "")
    facts = selectors.drill_down(filters, metric, day=_date(request.GET.get("day")),
                                 hour=int(hour) if hour.isdigit() and int(hour) < 24 else None,
                                 reply_agent=_int(request.GET.get("reply_agent")),
                                 frt_from=int(frt_from) if frt_from.isdigit() and len(frt_from) < 10 else None,
                                 frt_to=int(frt_to) if frt_to.isdigit() and len(frt_to) < 10 else None)
    if facts is None:
        raise Http404(_("No such figure."))
    page = Paginator(facts, PAGE_SIZE).get_page(request.GET.get("page"))
    labels = {d["key"]: d for d in definitions()}
    return render(request, "supervisor/reports/conversations.html", {
        "filters": filters, "metric": metric, "page": page,
        "rows": [{"fact": fact, "channel": Channel(fact.channel).label if fact.channel in Channel.values else fact.channel,
                  "wait_text": duration_text(fact.wait_seconds),
                  "frt_text": duration_text(fact.first_response_seconds),
                  "handle_text": duration_text(fact.handle_seconds)} for fact in page.object_list],
        "definition": labels.get(metric),
        "back": reverse("supervisor_reports:index") + "?" + filters.query(),
        "query": request.GET.copy(),
    })


@supervisor_required
def reports_export(request, table: str):
    response = csv_response(ReportFilters.from_query(request.GET), table)
    if response is None:
        raise Http404(_("No such table."))
    return response
