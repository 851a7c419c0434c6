"""Counting what the private database holds for one scenario's tokens (read with psycopg: the
pytest process's Django is on the shared test database, not on the suite's private one)."""

import time
from dataclasses import dataclass

from .clients import TOKEN


@dataclass
class Outcome:
    """One scenario's counts, as the README's reliability table reports them."""

    scenario: str
    sent: int
    accepted: int  # answered 200 / 250 / echoed: the provider or the client will not send it again
    stored: int  # distinct tokens stored as inbound messages
    duplicated: int  # stored rows beyond one per token
    lost: int  # accepted but not stored
    unrouted: int  # conversations of the burst without exactly one assignment
    conversations: int
    seconds: float
    extra: str = ""
    unaccepted: list = None  # tokens sent but never accepted (a few, for the failure message)

    def line(self) -> str:
        return (f"FAULTS {self.scenario}: sent={self.sent} accepted={self.accepted} stored={self.stored} "
                f"duplicated={self.duplicated} lost={self.lost} conversations={self.conversations} "
                f"unrouted={self.unrouted} seconds={self.seconds:.0f}" + (f" {self.extra}" if self.extra else ""))


def stored_tokens(conn, run: str) -> dict[str, int]:
    """{token: stored inbound messages holding it} for tokens of ``run``."""
    rows = conn.execute(
        "SELECT substring(text from %s) AS tok, count(*) FROM conversations_message "
        "WHERE direction = 'inbound' AND kind = 'message' AND text LIKE %s GROUP BY tok",
        [TOKEN.pattern, f"%tok-{run}-%"],
    ).fetchall()
    return {tok: n for tok, n in rows if tok}


def routing(conn, run: str) -> tuple[int, int]:
    """(conversations holding the run's messages, how many of them are not assigned exactly once:
    no assignee, or a number of *assigned* events other than one)."""
    rows = conn.execute(
        "SELECT c.id, c.assignee_id, (SELECT count(*) FROM conversations_message e WHERE e.conversation_id = c.id "
        "AND e.kind = 'event' AND e.event_type = 'assigned') FROM conversations_conversation c "
        "WHERE c.id IN (SELECT conversation_id FROM conversations_message WHERE direction = 'inbound' "
        "AND text LIKE %s)",
        [f"%tok-{run}-%"],
    ).fetchall()
    return len(rows), sum(1 for _id, assignee, assigned in rows if assignee is None or assigned != 1)


def unfinished_inbound_events(conn) -> int:
    return conn.execute("SELECT count(*) FROM conversations_twilioinboundevent "
                        "WHERE processed_at IS NULL AND failed_at IS NULL").fetchone()[0]


def failed_inbound_events(conn) -> list[str]:
    return [row[0][:300] for row in conn.execute(
        "SELECT last_error FROM conversations_twilioinboundevent WHERE failed_at IS NOT NULL").fetchall()]


def wait_settled(connect, run: str, accepted: set[str], *, timeout: float) -> tuple[dict[str, int], int, int]:
    """Until every accepted token is stored and every conversation of the run is assigned (or
    ``timeout``): (stored tokens, conversations, unrouted). ``connect``: a new connection, so a
    database restarted meanwhile does not break the wait."""
    deadline = time.monotonic() + timeout
    stored, conversations, unrouted = {}, 0, -1
    while True:
        try:
            with connect() as conn:
                stored = stored_tokens(conn, run)
                conversations, unrouted = routing(conn, run)
                busy = unfinished_inbound_events(conn)
        except Exception:  # noqa: BLE001 - the database is coming back
            busy = 1
        if accepted <= stored.keys() and unrouted == 0 and busy == 0:
            return stored, conversations, unrouted
        if time.monotonic() > deadline:
            return stored, conversations, unrouted
        time.sleep(1.0)


def outcome(scenario: str, *, sent: int, accepted: set[str], stored: dict[str, int], conversations: int,
            unrouted: int, started: float, extra: str = "", sent_tokens: set[str] = frozenset()) -> Outcome:
    return Outcome(unaccepted=sorted(sent_tokens - accepted)[:20],
        scenario=scenario, sent=sent, accepted=len(accepted), stored=len(stored),
        duplicated=sum(n - 1 for n in stored.values() if n > 1), lost=len(accepted - stored.keys()),
        unrouted=unrouted, conversations=conversations, seconds=time.monotonic() - started, extra=extra,
    )
