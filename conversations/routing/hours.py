"""Business hours of a queue: weekly opening intervals and holidays in one time zone.

Config (a queue's ``business_hours`` JSON)::

    {"time_zone": "Asia/Tokyo",
     "weekly": {"mon": [["09:00", "18:00"]], "sat": [["10:00", "14:00"]], "sun": [], "fri": [["22:00", "02:00"]]},
     "holidays": ["2026-01-01", "2026-12-31"]}

- ``None`` or ``{}``: always open.
- ``weekly`` absent: open around the clock except on holidays. A weekday missing from ``weekly``
  (or with an empty list) is closed, so ``"weekly": {}`` never opens.
- Intervals are ``[start, end)`` in local wall-clock time, ``HH:MM``; ``"24:00"`` is allowed as an end;
  an end earlier than the start crosses midnight (``["22:00", "02:00"]`` runs until 02:00 the next day);
  overlapping intervals simply add up.
- A holiday is closed for the whole local day: its own intervals do not run at all (including any part
  after midnight), and an interval from the evening before ends at midnight.
- Everything is evaluated on the local wall clock, so DST is handled the way a shop sign is: "09:00"
  means 09:00 local whatever the UTC offset. A boundary inside the spring-forward gap takes effect
  at the moment the clock jumps; during the repeated fall-back hour the wall clock decides, both times.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.core.exceptions import ValidationError

WEEKDAYS: tuple[str, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
SEARCH_HORIZON = timedelta(days=14)

_CONFIG_KEYS = ("time_zone", "weekly", "holidays")
_HHMM = re.compile(r"(?:[01]\d|2[0-3]):[0-5]\d")
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
_DAY = timedelta(days=1)
# No zone changes its UTC offset twice within this step, so sampling at it finds every transition.
_OFFSET_SAMPLE = timedelta(hours=1)

# (start, end) as offsets from local midnight; end < start means the interval crosses midnight.
Interval = tuple[timedelta, timedelta]


def validate_config(config: Any) -> None:
    """Raise ``ValidationError`` listing every problem in a business-hours config; ``None``/``{}`` are valid."""
    _parse(config)


@dataclass(frozen=True)
class BusinessHours:
    """Parsed business hours; build with ``from_config``. All methods take and return aware datetimes."""

    time_zone: ZoneInfo | None = None  # None: always open
    weekly: tuple[tuple[Interval, ...], ...] | None = None  # indexed by date.weekday(); None: every day, all day
    holidays: frozenset[date] = frozenset()

    @classmethod
    def from_config(cls, config: dict | None) -> BusinessHours:
        """Validate (``ValidationError`` as in ``validate_config``) and build."""
        return _parse(config)

    @property
    def always_open(self) -> bool:
        return self.time_zone is None

    def is_open(self, at: datetime) -> bool:
        at = _aware(at)
        if self.time_zone is None:
            return True
        return self._open_on_wall_clock(at.astimezone(self.time_zone).replace(tzinfo=None))

    def next_open(self, at: datetime) -> datetime | None:
        """The earliest moment at or after ``at`` when it is open, in UTC: ``at`` itself if open now;
        ``None`` if it stays closed for the next 14 days."""
        return self._next_state(at, want_open=True)

    def next_close(self, at: datetime) -> datetime | None:
        """The earliest moment at or after ``at`` when it is closed, in UTC: ``at`` itself if closed now;
        ``None`` if it stays open for the next 14 days (always for an always-open config)."""
        return self._next_state(at, want_open=False)

    # --- internals

    def _open_on_wall_clock(self, wall: datetime) -> bool:
        day = wall.date()
        if day in self.holidays:
            return False
        if self.weekly is None:
            return True
        since_midnight = wall - datetime.combine(day, time())
        for start, end in self.weekly[day.weekday()]:
            if start <= since_midnight < end or (end < start and since_midnight >= start):
                return True
        yesterday = day - _DAY
        if yesterday not in self.holidays:
            for start, end in self.weekly[yesterday.weekday()]:
                if end < start and since_midnight < end:
                    return True
        return False

    def _next_state(self, at: datetime, *, want_open: bool) -> datetime | None:
        at = _aware(at).astimezone(UTC)
        if self.is_open(at) == want_open:
            return at
        if self.time_zone is None:
            return None
        for moment in self._change_points(at, at + SEARCH_HORIZON):
            if self.is_open(moment) == want_open:
                return moment
        return None

    def _change_points(self, after: datetime, until: datetime) -> list[datetime]:
        """Every instant in (after, until] at which ``is_open`` may change, sorted.

        The state changes only when the local wall clock reaches a boundary (an interval's start or end,
        or midnight for holidays) or jumps over one at an offset transition; so the candidates are every
        real instant of every boundary wall time, plus the transitions themselves.
        """
        zone = self.time_zone
        assert zone is not None
        points = set(_offset_transitions(zone, after, until))
        day = after.astimezone(zone).date() - _DAY
        last = until.astimezone(zone).date() + _DAY
        while day <= last:
            midnight = datetime.combine(day, time())
            walls = [midnight]
            if self.weekly is not None:
                for start, end in self.weekly[day.weekday()]:
                    walls.append(midnight + start)
                    walls.append(midnight + end if end > start else midnight + _DAY + end)
            for wall in walls:
                points.update(_instants_of(wall, zone))
            day += _DAY
        return sorted(point for point in points if after < point <= until)


def _aware(at: datetime) -> datetime:
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError("business hours need a timezone-aware datetime")
    return at


def _instants_of(wall: datetime, zone: ZoneInfo) -> list[datetime]:
    """The UTC instants whose local wall time is ``wall``: one, two (fall-back repeat) or none (spring gap)."""
    instants = []
    for fold in (0, 1):
        instant = wall.replace(tzinfo=zone, fold=fold).astimezone(UTC)
        if instant.astimezone(zone).replace(tzinfo=None) == wall and instant not in instants:
            instants.append(instant)
    return instants


def _offset_transitions(zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """Instants in [after, until] at which ``zone`` changes its UTC offset (to the second)."""
    transitions = []
    moment = after.replace(microsecond=0)
    offset = moment.astimezone(zone).utcoffset()
    while moment < until:
        step = min(moment + _OFFSET_SAMPLE, until)
        step_offset = step.astimezone(zone).utcoffset()
        if step_offset != offset:
            low, high = int(moment.timestamp()), int(step.timestamp())
            while high - low > 1:  # offset(low) is the old one, offset(high) the new one
                middle = (low + high) // 2
                if datetime.fromtimestamp(middle, UTC).astimezone(zone).utcoffset() == offset:
                    low = middle
                else:
                    high = middle
            transitions.append(datetime.fromtimestamp(high, UTC))
        moment, offset = step, step_offset
    return transitions


# --- parsing ----------------------------------------------------------------------------------------


def _parse(config: Any) -> BusinessHours:
    if config is None or config == {}:
        return BusinessHours()
    if not isinstance(config, dict):
        raise ValidationError("business hours must be an object like {\"time_zone\": …, \"weekly\": {…}}",
                              code="hours_invalid")
    errors: list[str] = []
    for key in config:
        if key not in _CONFIG_KEYS:
            errors.append(f"unknown key '{key}'; allowed: {', '.join(_CONFIG_KEYS)}")

    zone = _parse_time_zone(config.get("time_zone"), errors)
    weekly = _parse_weekly(config["weekly"], errors) if config.get("weekly") is not None else None
    holidays = _parse_holidays(config.get("holidays") or [], errors)
    if errors:
        raise ValidationError(errors, code="hours_invalid")
    return BusinessHours(time_zone=zone, weekly=weekly, holidays=holidays)


def _parse_time_zone(name: Any, errors: list[str]) -> ZoneInfo | None:
    if not name:
        errors.append("time_zone is required, e.g. \"Asia/Tokyo\"")
        return None
    if not isinstance(name, str):
        errors.append(f"time_zone must be text like \"Asia/Tokyo\", not {name!r}")
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        errors.append(f"unknown time zone '{name}' (use an IANA name such as \"Asia/Tokyo\")")
        return None


def _parse_weekly(weekly: Any, errors: list[str]) -> tuple[tuple[Interval, ...], ...]:
    days: list[tuple[Interval, ...]] = [() for _ in WEEKDAYS]
    if not isinstance(weekly, dict):
        errors.append("weekly must be an object like {\"mon\": [[\"09:00\", \"18:00\"]]}")
        return tuple(days)
    for key, intervals in weekly.items():
        if key not in WEEKDAYS:
            errors.append(f"unknown weekday '{key}'; use {', '.join(WEEKDAYS)}")
            continue
        if intervals is None:
            continue
        if not isinstance(intervals, list):
            errors.append(f"{key}: expected a list of [start, end] pairs, got {intervals!r}")
            continue
        parsed = []
        for interval in intervals:
            if (not isinstance(interval, (list, tuple)) or len(interval) != 2
                    or not all(isinstance(part, str) for part in interval)):
                errors.append(f"{key}: an interval must be [\"HH:MM\", \"HH:MM\"], got {interval!r}")
                continue
            start_text, end_text = interval
            start = _parse_hhmm(start_text, key, errors, allow_24=False)
            end = _parse_hhmm(end_text, key, errors, allow_24=True)
            if start is None or end is None:
                continue
            if start == end:
                errors.append(f"{key}: interval {start_text}–{end_text} is empty (end equals start)")
                continue
            if end == timedelta(0):
                end = _DAY  # "22:00"–"00:00" ends at midnight: the same as "24:00"
            parsed.append((start, end))
        days[WEEKDAYS.index(key)] = tuple(parsed)
    return tuple(days)


def _parse_hhmm(text: str, key: str, errors: list[str], *, allow_24: bool) -> timedelta | None:
    if allow_24 and text == "24:00":
        return _DAY
    if not _HHMM.fullmatch(text):
        allowed = "00:00–23:59" + (" or 24:00" if allow_24 else "")
        errors.append(f"{key}: bad time '{text}' (expected HH:MM, {allowed})")
        return None
    hours, minutes = text.split(":")
    return timedelta(hours=int(hours), minutes=int(minutes))


def _parse_holidays(holidays: Any, errors: list[str]) -> frozenset[date]:
    if not isinstance(holidays, list):
        errors.append("holidays must be a list of dates like \"2026-01-01\"")
        return frozenset()
    days = set()
    for value in holidays:
        try:
            if not isinstance(value, str) or not _DATE.fullmatch(value):
                raise ValueError
            days.add(date.fromisoformat(value))
        except ValueError:
            errors.append(f"bad holiday date {value!r} (expected YYYY-MM-DD)")
    return frozenset(days)
