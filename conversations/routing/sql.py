"""SQL shared by routing's reads and locks: statuses, row readers, vendor differences.
"""

import json
from dataclasses import dataclass
from datetime import timedelta
from functools import cache, lru_cache

from django.db import connection

from ..models import (
    DEFAULT_CAPACITY,
    Agent,
    AgentSkill,
    Conversation,
    ConversationStatus,
    Offer,
    OfferStatus,
    PresenceState,
    Queue,
    QueueSkill,
)

LOAD_STATUSES = (ConversationStatus.OPEN, ConversationStatus.PENDING)


# An agent who turned a conversation down is not offered it again for this long (unless they are
# picked or assigned by hand), so an offer cannot ping-pong between two agents.
REJECT_MEMORY = timedelta(minutes=10)


REFUSED = (OfferStatus.REJECTED, OfferStatus.TIMEOUT)


def waiting(qs=None):
    """Open, unassigned, not abandoned: what routing may offer."""
    return (qs if qs is not None else Conversation.objects).filter(
        status=ConversationStatus.OPEN, assignee__isnull=True, abandoned_at__isnull=True)


class RowReader:
    """Model instances from the columns of a plain SQL statement: the same converters the ORM
    applies (JSON, SQLite's datetimes), without building and compiling a query per call."""

    def __init__(self, model, alias: str):
        self.model = model
        self.fields = list(model._meta.concrete_fields)
        self.names = [field.attname for field in self.fields]
        self.columns = ", ".join(f"{alias}.{connection.ops.quote_name(field.column)}" for field in self.fields)
        self._converters = {}

    def instance(self, values):
        converters = self._converters.get(connection.vendor)
        if converters is None:
            converters = self._converters[connection.vendor] = [
                (connection.ops.get_db_converters(col) + field.get_db_converters(connection), col)
                for field in self.fields for col in [field.get_col(self.model._meta.db_table)]
            ]
        converted = []
        for value, (functions, col) in zip(values, converters, strict=True):
            for function in functions:
                value = function(value, col, connection)
            converted.append(value)
        return self.model.from_db(connection.alias, self.names, converted)


@cache
def row_readers() -> tuple[RowReader, RowReader]:
    return RowReader(Conversation, "c"), RowReader(Queue, "q")


def replaced_checked(text: str, old: str, new: str) -> str:
    """``text`` with its one ``old`` replaced: an SQL template edited elsewhere fails here, not in a
    statement that silently lost its condition."""
    assert text.count(old) == 1, f"expected one {old!r} in the statement"
    return text.replace(old, new)


@dataclass(frozen=True)
class Candidate:
    pk: int
    load: int
    capacity: int


def capacity_on(capacity: dict | str | None, channel: str) -> int:
    if isinstance(capacity, str):  # a raw cursor returns JSON as text
        capacity = capacity_parsed(capacity)
    return int((capacity or {}).get(channel, DEFAULT_CAPACITY.get(channel, 1)))


@lru_cache(maxsize=256)
def capacity_parsed(capacity: str) -> dict:
    """Most agents share a few capacity settings: parse each text once (callers only read it)."""
    return json.loads(capacity)


# The statuses the routing statements test, written into them as literals rather than passed as
# parameters: PostgreSQL only uses a partial index (``WHERE status = 'pending'``) when it can see
# the value, and with server-side binding a prepared statement's generic plan sees parameters only
# as "$1" (settings: CC_DB_SERVER_SIDE_BINDING). They are constants of the code, never input.
STATUS_LITERALS = {
    "c_open": ConversationStatus.OPEN, "c_pending": ConversationStatus.PENDING, "o_pending": OfferStatus.PENDING,
    "o_rejected": OfferStatus.REJECTED, "o_timeout": OfferStatus.TIMEOUT,
}


@cache
def vendor_sql(template: str) -> str:
    """``template`` with its {table} names filled in, quoted for the database in use, and its
    {status} literals (STATUS_LITERALS)."""
    tables = {
        "agent": Agent, "presence": PresenceState, "agentskill": AgentSkill, "conversation": Conversation,
        "offer": Offer, "queue": Queue, "required": QueueSkill,
    }
    return template.format(**{key: connection.ops.quote_name(model._meta.db_table) for key, model in tables.items()},
                           **{key: f"'{value}'" for key, value in STATUS_LITERALS.items()})


@cache
def insert_fields(model, exclude: tuple[str, ...] = ()) -> tuple:
    """The fields an INSERT of ``model`` writes (all but the primary key and ``exclude``), in order."""
    return tuple(f for f in model._meta.concrete_fields if not f.primary_key and f.attname not in exclude)


def insert_values(db, fields, instance) -> list:
    """``instance``'s values of ``fields`` as ``save()`` would insert them."""
    return [field.get_db_prep_save(field.pre_save(instance, add=True), db) for field in fields]
