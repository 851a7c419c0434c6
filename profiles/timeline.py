"""The customer's one timeline: every source (messages on every channel, notes, events,
touchpoints) merged into one chronological stream, cursor-paginated both ways.

Each source is queried once per page (``limit + 1`` rows on its own index), so a page costs the
same number of queries whatever the size of the history. Entries are ordered by
``(at, source rank, id)``, a total order, so cursors never skip or repeat an entry.
"""

import base64
import binascii
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from django.core.exceptions import ValidationError
from django.db.models import Q, QuerySet
from django.utils.translation import gettext as _

from contactcenter.decoding import database_integer, json_decode

from .models import Touchpoint


@dataclass(frozen=True, order=True)
class Position:
    at: datetime
    rank: int
    id: int

    def encode(self) -> str:
        raw = json.dumps([self.at.isoformat(), self.rank, self.id], separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")

    @classmethod
    def decode(cls, cursor: str) -> "Position":
        try:
            padded = cursor + "=" * (-len(cursor) % 4)
            # Decoded as any client JSON is (bounded nesting, finite numbers), every part checked:
            # a date that cannot be moved to UTC, or an id past bigint, would fail in the database.
            at, rank, ident = json_decode(base64.urlsafe_b64decode(padded.encode()))
            position = cls(at=datetime.fromisoformat(at), rank=database_integer(rank), id=database_integer(ident))
            if position.at.tzinfo is None:
                raise ValueError("naive datetime")
            position.at.astimezone(UTC)
        except (ValueError, TypeError, OverflowError, binascii.Error, UnicodeDecodeError) as exc:
            raise ValidationError(_("Invalid timeline cursor."), code="cursor_invalid") from exc
        return position


@dataclass(frozen=True)
class TimelineEntry:
    type: str  # "message" or "touchpoint": which source produced it
    position: Position
    item: Any

    @property
    def at(self) -> datetime:
        return self.position.at

    @property
    def cursor(self) -> str:
        return self.position.encode()


@dataclass
class TimelinePage:
    entries: list[TimelineEntry] = field(default_factory=list)  # oldest first
    has_older: bool = False
    has_newer: bool = False

    @property
    def older_cursor(self) -> str | None:
        return self.entries[0].cursor if self.entries and self.has_older else None

    @property
    def newer_cursor(self) -> str | None:
        return self.entries[-1].cursor if self.entries and self.has_newer else None


class TimelineSource(Protocol):
    type: str
    rank: int
    time_field: str

    def queryset(self, *, customer_id: int) -> QuerySet: ...

    # Optional: ``hydrate(items)`` loads related rows for the entries that made the page (one
    # query per relation), so rows fetched only to find the page boundary cost nothing more.


def _before(source: TimelineSource, cursor: Position) -> Q:
    """Rows of ``source`` strictly before ``cursor`` in (at, rank, id) order."""
    tf = source.time_field
    if source.rank < cursor.rank:
        return Q(**{f"{tf}__lte": cursor.at})
    if source.rank > cursor.rank:
        return Q(**{f"{tf}__lt": cursor.at})
    return Q(**{f"{tf}__lt": cursor.at}) | Q(**{tf: cursor.at, "id__lt": cursor.id})


def _after(source: TimelineSource, cursor: Position) -> Q:
    tf = source.time_field
    if source.rank > cursor.rank:
        return Q(**{f"{tf}__gte": cursor.at})
    if source.rank < cursor.rank:
        return Q(**{f"{tf}__gt": cursor.at})
    return Q(**{f"{tf}__gt": cursor.at}) | Q(**{tf: cursor.at, "id__gt": cursor.id})


class TouchpointSource:
    type = "touchpoint"
    rank = 1
    time_field = "occurred_at"

    def queryset(self, *, customer_id: int) -> QuerySet:
        return Touchpoint.objects.filter(customer_id=customer_id)


_sources: dict[str, TimelineSource] = {}


def register_source(source: TimelineSource) -> None:
    _sources[source.type] = source


def customer_timeline(
    *, customer_id: int, before: str | None = None, after: str | None = None, limit: int = 50
) -> TimelinePage:
    """One page of the timeline, oldest entry first.

    No cursor: the newest ``limit`` entries. ``before``: the ``limit`` entries just older than the
    cursor. ``after``: the ``limit`` entries just newer. One query per source (plus whatever
    prefetches a source declares), whatever the length of the history.
    """
    if before and after:
        raise ValidationError(_("Give either “before” or “after”, not both."), code="cursor_conflict")
    limit = max(1, min(int(limit), 200))
    cursor = Position.decode(before or after) if (before or after) else None
    forward = after is not None
    candidates: list[TimelineEntry] = []
    for source in _sources.values():
        qs = source.queryset(customer_id=customer_id)
        if cursor is not None:
            qs = qs.filter(_after(source, cursor) if forward else _before(source, cursor))
        tf = source.time_field
        order = (tf, "id") if forward else (f"-{tf}", "-id")
        for row in qs.order_by(*order)[: limit + 1]:
            candidates.append(TimelineEntry(source.type, Position(getattr(row, tf), source.rank, row.pk), row))
    candidates.sort(key=lambda entry: entry.position, reverse=not forward)
    more = len(candidates) > limit
    chosen = candidates[:limit]
    chosen.sort(key=lambda entry: entry.position)
    for source in _sources.values():
        hydrate = getattr(source, "hydrate", None)
        items = [entry.item for entry in chosen if entry.type == source.type]
        if hydrate is not None and items:
            hydrate(items)
    if forward:
        return TimelinePage(entries=chosen, has_older=cursor is not None, has_newer=more)
    return TimelinePage(entries=chosen, has_older=more, has_newer=cursor is not None)
