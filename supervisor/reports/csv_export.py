"""CSV exports: every table of the page, and one row per conversation with all its facts.

Cells are plain values (seconds, ratios, ISO times in the contact center's zone). A text cell that
a spreadsheet would run as a formula (=, +, -, @, tab, CR first) is prefixed with an apostrophe:
queue, agent and customer names are typed by people and customers.
"""

import csv

from django.http import StreamingHttpResponse

from supervisor.facts.models import ConversationFact

from . import selectors
from .filters import ReportFilters
from .presenting import presence_change_text

_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")

FIGURE_COLUMNS = ["offered", "handled", "abandoned", "short_abandoned", "within_sla", "sl_base", "service_level",
                  "asa", "responded", "frt", "handle_count", "handle", "transfers_total", "transferred", "reopened_count",
                  "resolved_once", "reopen_rate", "surveys_sent", "surveys_answered", "response_rate", "csat_count",
                  "csat_satisfied", "csat", "csat_mean", "nps_count", "nps_promoters", "nps_detractors", "nps",
                  "ces_count", "ces_easy", "ces"]

FACT_COLUMNS = [
    "conversation_id", "customer_id", "customer", "channel", "inbox", "queue", "agent", "started_at",
    "entered_queue_at", "first_offered_at", "accepted_at", "wait_seconds", "sla_seconds", "answered_within_sla",
    "first_customer_message_at", "first_agent_reply_at", "first_reply_agent", "first_response_seconds", "transfers",
    "first_resolved_at", "resolved_at", "reopened", "abandoned_at", "abandoned_short", "handle_seconds",
    "survey_sent_at", "csat_score", "nps_score", "ces_score", "survey_answered_at",
]


class _Echo:
    def write(self, value):
        return value


def cell(value, tz) -> str:
    if value is None:
        return ""
    if hasattr(value, "astimezone"):
        return value.astimezone(tz).isoformat()
    if isinstance(value, float):
        return f"{value:.4f}"
    text = str(value)
    if isinstance(value, str) and text.startswith(_FORMULA_STARTS):
        return "'" + text
    return text


def _figure_rows(rows, first: list[str]):
    for row in rows:
        yield [row.get(name) for name in first] + [row.get(name) for name in FIGURE_COLUMNS]


def table_rows(filters: ReportFilters, table: str):
    """(header, rows) of ``table``, or None for an unknown one."""
    if table == "summary":
        summary = selectors.report_summary(filters)
        extra = ["handle_p90", "fcr_eligible", "fcr_count", "fcr"]
        return (["start", "end", *FIGURE_COLUMNS, *extra],
                [[filters.start, filters.end, *[summary.get(n) for n in FIGURE_COLUMNS], *[summary.get(n) for n in extra]]])
    if table == "by_day":
        return ["day", *FIGURE_COLUMNS], _figure_rows(selectors.report_by_day(filters), ["day"])
    if table in ("by_queue", "by_channel", "by_agent"):
        dimension = table.removeprefix("by_")
        return [f"{dimension}_id", dimension, *FIGURE_COLUMNS], _figure_rows(
            selectors.report_by(filters, dimension), ["key", "name"])
    if table == "by_hour":
        return ["hour", "offered", "handled"], ([r["hour"], r["offered"], r["handled"]] for r in selectors.report_by_hour(filters))
    if table == "frt_by_agent":
        return ["agent_id", "agent", "responded", "frt"], (
            [r["first_reply_agent_id"], r["first_reply_agent__display_name"], r["responded"], r["frt"]]
            for r in selectors.first_response_by_agent(filters))
    if table == "frt_distribution":
        return ["from_seconds", "to_seconds", "count"], (
            [r["min"], r["max"], r["count"]] for r in selectors.frt_distribution(filters))
    if table == "agent_status":
        return ["agent_id", "agent", "day", "available_seconds", "handling_seconds", "occupancy", "presence_changes"], (
            [r["agent_id"], r["agent"], r["day"], r["available_seconds"], r["handling_seconds"], r["occupancy"],
             "; ".join(presence_change_text(change, filters.tz) for change in r["changes"])]
            for r in selectors.agent_status(filters))
    if table == "conversations":
        facts = (ConversationFact.objects.filter(filters.q()).order_by("started_at", "conversation_id")
                 .values_list("conversation_id", "customer_id", "customer__display_name", "channel", "inbox__name",
                              "queue__name", "agent__display_name", "started_at", "entered_queue_at",
                              "first_offered_at", "accepted_at", "wait_seconds", "sla_seconds", "answered_within_sla",
                              "first_customer_message_at", "first_agent_reply_at", "first_reply_agent__display_name",
                              "first_response_seconds", "transfers", "first_resolved_at", "resolved_at", "reopened",
                              "abandoned_at", "abandoned_short", "handle_seconds", "survey_sent_at", "csat_score",
                              "nps_score", "ces_score", "survey_answered_at"))
        return FACT_COLUMNS, facts.iterator(chunk_size=2000)
    return None


TABLES = ["summary", "by_day", "by_hour", "by_queue", "by_channel", "by_agent", "frt_by_agent", "frt_distribution",
          "agent_status", "conversations"]


def csv_response(filters: ReportFilters, table: str) -> StreamingHttpResponse | None:
    found = table_rows(filters, table)
    if found is None:
        return None
    header, rows = found
    writer = csv.writer(_Echo())

    def lines():
        yield "\ufeff"  # Excel opens UTF-8 (Japanese names) only with the byte-order mark
        yield writer.writerow(header)
        for row in rows:
            yield writer.writerow([cell(value, filters.tz) for value in row])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{table}-{filters.start}-{filters.end}.csv"'
    return response
