"""Django's PostgreSQL backend, failing fast while PostgreSQL is unreachable.

Why: with ``CC_DB_POOL`` every request that needed a connection while PostgreSQL was down waited in
the pool for the pool's whole timeout, for a connection that could not come; the requests piled up
behind the concurrency limit, and the fault suite saw ``/healthz`` and Twilio's webhooks hang, so
neither a load balancer nor Twilio learnt that the database was down. A short pool timeout is no
cure: a pool that is merely busy (slow requests, a Redis outage) would then refuse requests that
a short wait would have served.

So the two are told apart. A waiter in the pool (``OutageAwarePool``) waits in short slices and
gives up as soon as the pool failed to open a connection meanwhile (PostgreSQL refuses or is
gone); a busy pool without such failures is waited for as long as before. Either failure to get a
connection opens a process-wide breaker: for ``CC_DB_OUTAGE_SECONDS`` (default 1 s) every further
attempt fails at once with ``DatabaseUnavailable`` (an ``OperationalError``, which
``contactcenter.views.server_error`` answers 503 with Retry-After). Then exactly one request probes
with a direct connection of its own (the pool's own reconnection backs off for many seconds) while
the others keep failing fast; a successful probe closes the breaker. A merely busy pool never opens
it, and a query failing on a connection that was fine says nothing about the next connection.
"""

import threading
import time

from django.conf import settings
from django.db.backends.postgresql import base as postgresql
from psycopg_pool import ConnectionPool, PoolTimeout

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
        self._open_until: float | None = None  # None: closed (connections are tried); else when to probe
        self.last_error = ""

    @staticmethod
    def seconds() -> float:
        return float(getattr(settings, "CC_DB_OUTAGE_SECONDS", DEFAULT_OUTAGE_SECONDS))

    def before_connect(self) -> bool:
        """Raise ``DatabaseUnavailable`` while open; let one caller through per window to probe
        (True: the caller is that probe)."""
        with self._lock:
            if self._open_until is None:
                return False
            now = self.clock()
            if now < self._open_until:
                raise DatabaseUnavailable(f"database unavailable (retrying shortly): {self.last_error}")
            # Half-open: this caller probes; the others fail fast until it succeeds or the next window.
            self._open_until = now + self.seconds()
            return True

    def failed(self, exc: BaseException) -> None:
        with self._lock:
            self.last_error = f"{type(exc).__name__}: {exc}"[:200]
            self._open_until = self.clock() + self.seconds()

    def succeeded(self) -> None:
        with self._lock:
            self._open_until = None

    @property
    def is_open(self) -> bool:
        return self._open_until is not None


BREAKER = Breaker()


class PoolBusy(PoolTimeout):
    """Every connection of the pool stayed in use for the whole wait: the database is fine."""


class PoolCannotConnect(PoolTimeout):
    """The pool failed to open connections while we waited: PostgreSQL refuses or is gone."""


class OutageAwarePool(ConnectionPool):
    """psycopg's pool, whose waiters give up early when the pool cannot connect."""

    WAIT_SLICE_SECONDS = 0.2

    def _connection_errors(self) -> int:
        return self.get_stats().get(self._CONNECTIONS_ERRORS, 0)

    def getconn(self, timeout: float | None = None):
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout)
        errors_before = self._connection_errors()
        while True:
            left = deadline - time.monotonic()
            try:
                return super().getconn(timeout=max(0.001, min(self.WAIT_SLICE_SECONDS, left)))
            except PoolTimeout:
                # Re-queued at the back after each slice: the wait stays bounded, fairness is
                # approximate, which a pool this small does not notice.
                if self._connection_errors() > errors_before:
                    raise PoolCannotConnect(f"pool {self.name!r} could not open a connection") from None
                if time.monotonic() >= deadline:
                    raise PoolBusy(f"no free connection in pool {self.name!r} after {self.timeout:g} s") from None


class DatabaseWrapper(postgresql.DatabaseWrapper):
    breaker = BREAKER

    @property
    def pool(self):
        pool = super().pool
        # Django builds the pool itself (from OPTIONS["pool"]) with no way to choose its class:
        # give that instance our waiting (it adds behaviour only, no state).
        if pool is not None and type(pool) is ConnectionPool:
            pool.__class__ = OutageAwarePool
        return pool

    def get_new_connection(self, conn_params):
        if self.breaker.seconds() <= 0:
            return super().get_new_connection(conn_params)
        probing = self.breaker.before_connect()
        try:
            if probing and self.pool:
                # Not through the pool: after an outage its own reconnection backs off for seconds.
                self.Database.connect(**conn_params).close()
                self.breaker.succeeded()
            connection = super().get_new_connection(conn_params)
        except PoolBusy:
            raise  # busy, not down: this request answers 503, the others keep trying
        except postgresql.Database.OperationalError as exc:  # refused, timed out, pool cannot connect
            self.breaker.failed(exc)
            raise
        self.breaker.succeeded()
        return connection
