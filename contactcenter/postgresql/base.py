"""Django's PostgreSQL backend, failing fast while PostgreSQL is unreachable.

Why: with ``CC_DB_POOL`` every request that needs a connection while PostgreSQL is down waits in
the pool for one that cannot come, and the requests pile up: the fault suite saw ``/healthz`` and
Twilio's webhooks hang for the pool's whole timeout each, so a load balancer could not tell the
database was down and Twilio waited instead of retrying. A short pool timeout alone still costs
every request that timeout. So one failed attempt to get a connection opens a process-wide
breaker: for ``CC_DB_OUTAGE_SECONDS`` (default 1 s) every further attempt fails at once with
``DatabaseUnavailable`` (an ``OperationalError``, which ``contactcenter.views.server_error`` answers
503 with Retry-After). Then exactly one attempt probes again (half-open) while the others keep
failing fast; a successful probe closes the breaker. Only opening a connection counts: a query
failing on a connection that was fine says nothing about the next connection.
"""

import threading
import time

from django.conf import settings
from django.db.backends.postgresql import base as postgresql

DEFAULT_OUTAGE_SECONDS = 1.0


class DatabaseUnavailable(postgresql.Database.OperationalError):
    """Raised instead of trying to connect while the breaker is open. A subclass of psycopg's
    OperationalError, so Django wraps it into ``django.db.OperationalError`` as it does a refused
    connection."""


class Breaker:
    """Process-wide (all threads: daphne runs each request's sync code in a thread of its own)."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self._lock = threading.Lock()
        self._closed_until_probe: float | None = None  # None: closed (connections are tried)
        self.last_error = ""

    @staticmethod
    def seconds() -> float:
        return float(getattr(settings, "CC_DB_OUTAGE_SECONDS", DEFAULT_OUTAGE_SECONDS))

    def before_connect(self) -> None:
        """Raise ``DatabaseUnavailable`` while open; let one caller through per window to probe."""
        with self._lock:
            if self._closed_until_probe is None:
                return
            now = self.clock()
            if now < self._closed_until_probe:
                raise DatabaseUnavailable(f"database unavailable (retrying shortly): {self.last_error}")
            # Half-open: this caller probes; the others fail fast until it succeeds or the next window.
            self._closed_until_probe = now + self.seconds()

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            self._closed_until_probe = self.clock() + self.seconds()

    def succeeded(self) -> None:
        with self._lock:
            self._closed_until_probe = None

    @property
    def is_open(self) -> bool:
        return self._closed_until_probe is not None


BREAKER = Breaker()


class DatabaseWrapper(postgresql.DatabaseWrapper):
    breaker = BREAKER

    def get_new_connection(self, conn_params):
        if self.breaker.seconds() <= 0:
            return super().get_new_connection(conn_params)
        self.breaker.before_connect()
        try:
            connection = super().get_new_connection(conn_params)
        except postgresql.Database.OperationalError as exc:  # refused, timed out, pool timeout
            self.breaker.failed(exc)
            raise
        self.breaker.succeeded()
        return connection
