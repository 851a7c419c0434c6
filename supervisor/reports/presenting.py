"""How figures read on the page and in the exports: durations, percentages, drill-down links."""

from dataclasses import replace

from django.urls import reverse
from django.utils.translation import gettext as _

from .filters import ReportFilters

# The figures of a table row that link to their conversations, and the metric each lists.
ROW_LINKS = {
    "offered": "offered", "handled": "handled", "abandoned": "abandoned", "short_abandoned": "short_abandoned",
    "within_sla": "within_sla", "service_level": "offered", "asa": "handled", "frt": "responded", "handle": "handle",
    "transfers": "transferred", "reopened": "reopened", "reopen_rate": "reopened",
    "csat": "csat_answered", "nps": "nps_answered", "ces": "ces_answered", "response_rate": "surveys_sent",
}


def duration_text(seconds) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return _("%(s)d s") % {"s": seconds}
    if seconds < 3600:
        return _("%(m)d min %(s)d s") % {"m": seconds // 60, "s": seconds % 60}
    return _("%(h)d h %(m)d min") % {"h": seconds // 3600, "m": seconds % 3600 // 60}


def percent_text(value) -> str:
    return "—" if value is None else f"{value * 100:.1f} %"


def number_text(value) -> str:
    """A mean score to one decimal ("–" when there is none)."""
    return "—" if value is None else f"{value:.1f}"


def nps_text(value) -> str:
    """An NPS with its sign, to a whole number: "+32", "−5", "0"."""
    if value is None:
        return "—"
    rounded = round(value)
    return f"+{rounded}" if rounded > 0 else (f"−{-rounded}" if rounded < 0 else "0")


def drill_url(filters: ReportFilters, metric: str, **extra) -> str:
    return reverse("supervisor_reports:conversations") + "?" + filters.query(metric=metric, **extra)


def _drill_urls(filters: ReportFilters, **extra) -> dict[str, str]:
    """Every link of a row: one reverse and one encoding of the filters, then a suffix each."""
    prefix = reverse("supervisor_reports:conversations") + "?" + filters.query(**extra) + "&metric="
    return {name: prefix + metric for name, metric in ROW_LINKS.items()}


def row_present(row: dict, filters: ReportFilters, **extra) -> dict:
    """``row`` with its figures as text and a drill-down link for each."""
    row = dict(row)
    row["asa_text"] = duration_text(row.get("asa"))
    row["frt_text"] = duration_text(row.get("frt"))
    row["handle_text"] = duration_text(row.get("handle"))
    row["service_level_text"] = percent_text(row.get("service_level"))
    row["reopen_rate_text"] = percent_text(row.get("reopen_rate"))
    row["csat_text"] = percent_text(row.get("csat"))
    row["csat_mean_text"] = number_text(row.get("csat_mean"))
    row["nps_text"] = nps_text(row.get("nps"))
    row["ces_text"] = number_text(row.get("ces"))
    row["ces_easy_text"] = percent_text(row.get("ces_easy_share"))
    row["response_rate_text"] = percent_text(row.get("response_rate"))
    row["links"] = _drill_urls(filters, **extra)
    return row


def group_filters(filters: ReportFilters, dimension: str, key) -> ReportFilters | None:
    """The filters narrowed to one row of a by-queue/channel/agent table (None: a row of
    conversations without one, e.g. no queue, which no filter selects)."""
    if key in (None, ""):
        return None
    return replace(filters, **{dimension: key})


def _reason_labels() -> dict[str, str]:
    return {"missed_offer": _("an offer went unanswered"), "disconnected": _("the console closed"),
            "signed_out": _("signed out")}


def presence_change_author(change: dict) -> str:
    """Who made a presence change, in the reader's language ("" when it was not recorded)."""
    source, by = change.get("source"), change.get("by")
    reason = _reason_labels().get(change.get("reason") or "")
    if source == "supervisor":
        return _("by supervisor %(name)s") % {"name": by} if by else _("by a supervisor")
    if source == "agent":
        return _("by the agent (%(reason)s)") % {"reason": reason} if reason else _("by the agent")
    if source == "system":
        return _("by the system (%(reason)s)") % {"reason": reason} if reason else _("by the system")
    if source == "admin":
        return _("in the admin")
    return ""


def presence_change_text(change: dict, tz) -> str:
    """One change for the CSV: "12:00 Lunch (supervisor: Carol Sato)"; codes, not translations."""
    who = change.get("source") or "unknown"
    if change.get("by") and who == "supervisor":
        who = f"{who}: {change['by']}"
    elif change.get("reason") and who in ("system", "agent") and change["reason"] != "agent":
        who = f"{who}: {change['reason']}"
    return f"{change['at'].astimezone(tz):%H:%M} {change['name']} ({who})"
