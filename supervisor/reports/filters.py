"""The report's filters, read from the query string: a date range in the contact center's time zone
(CC_DEFAULT_TIME_ZONE: Tokyo days by default) and queue, channel, agent, inbox. Anything that does
not parse is ignored (the default applies), never an error page.
"""

import zoneinfo
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import Q
from django.http import QueryDict
from django.utils import timezone

DEFAULT_DAYS = 7
# A longer range is cut to this many days (one request must stay cheap).
MAX_DAYS = 366


def report_time_zone() -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(settings.CC_DEFAULT_TIME_ZONE)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return zoneinfo.ZoneInfo("UTC")


# Dates outside these are not a contact center's (and year 1 or 9999 would overflow a day's bounds).
EARLIEST, LATEST = date(2000, 1, 1), date(2199, 12, 31)


def _date(value: str | None) -> date | None:
    try:
        parsed = date.fromisoformat(value) if value else None
    except (ValueError, TypeError):
        return None
    return parsed if parsed is None or EARLIEST <= parsed <= LATEST else None


def _int(value: str | None) -> int | None:
    try:
        number = int(value) if value not in (None, "") else None
    except (ValueError, TypeError):
        return None
    return number if number is not None and 0 < number < 2**31 else None


@dataclass(frozen=True)
class ReportFilters:
    start: date
    end: date  # inclusive
    tz: zoneinfo.ZoneInfo = field(default_factory=report_time_zone)
    queue: int | None = None
    channel: str = ""
    agent: int | None = None
    inbox: int | None = None

    @classmethod
    def from_query(cls, query: QueryDict, *, today: date | None = None) -> "ReportFilters":
        tz = report_time_zone()
        today = today or timezone.localdate(timezone=tz)
        end = _date(query.get("end")) or today
        start = _date(query.get("start")) or end - timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            start, end = end, start
        if (end - start).days >= MAX_DAYS:
            start = end - timedelta(days=MAX_DAYS - 1)
        from conversations.models import Channel

        channel = query.get("channel", "")
        return cls(start=start, end=end, tz=tz, queue=_int(query.get("queue")),
                   channel=channel if channel in Channel.values else "",
                   agent=_int(query.get("agent")), inbox=_int(query.get("inbox")))

    @property
    def starts_at(self) -> datetime:
        """The first instant of ``start`` in the contact center's zone (stored times are UTC)."""
        return datetime.combine(self.start, time.min, tzinfo=self.tz)

    @property
    def ends_before(self) -> datetime:
        return datetime.combine(self.end + timedelta(days=1), time.min, tzinfo=self.tz)

    @property
    def days(self) -> list[date]:
        return [self.start + timedelta(days=n) for n in range((self.end - self.start).days + 1)]

    def q(self) -> Q:
        """The facts these filters select: conversations that started in the range."""
        condition = Q(started_at__gte=self.starts_at, started_at__lt=self.ends_before)
        if self.queue:
            condition &= Q(queue_id=self.queue)
        if self.channel:
            condition &= Q(channel=self.channel)
        if self.agent:
            condition &= Q(agent_id=self.agent)
        if self.inbox:
            condition &= Q(inbox_id=self.inbox)
        return condition

    def query(self, **extra) -> str:
        """The query string of these filters (plus ``extra``), for links and exports (a page has
        hundreds of links: plain ``urlencode``, not a QueryDict each)."""
        params = [("start", self.start.isoformat()), ("end", self.end.isoformat())]
        params += [(name, getattr(self, name)) for name in ("queue", "channel", "agent", "inbox") if getattr(self, name)]
        params += [(name, value) for name, value in extra.items() if value not in (None, "")]
        return urlencode(params)
