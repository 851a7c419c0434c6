"""When daphne stops: requests in flight finish and answer, sockets disconnect, nothing is stranded.

Why: on SIGTERM daphne cancels every application instance, waits for them with
``asyncio.gather``, then stops the event loop. Two things made that wait worthless, and the fault
suite saw daphne still alive 60 s after SIGTERM, its main thread joining a request thread for ever:

* ``gather`` ends as soon as ONE instance ends cancelled (a request still queued behind the
  concurrency limit does so at once), so the loop stopped while others were still running;
* Django's ASGI handler, cancelled while a view runs, leaves its own inner task behind
  (``asyncio.wait`` does not cancel what it waits for). The view's thread goes on, and its hop back
  into the event loop (the innermost sync middleware calls the async handler through
  ``async_to_sync``) waits for a loop that no longer runs; Python joins that thread at exit.

Whether it happened depended on whether a request was between two hops at the signal: most runs
stopped in a second, some never did.

So, under daphne, the wrapper adds its own "before shutdown" step to Twisted's reactor (which waits
for every such step) that waits until every instance it runs has ended; daphne's own step cancels
them, and each, cancelled, ends only when its application task has (it also ends normally, so
daphne's ``gather`` waits for it too):

* an HTTP request (queued ones included: they were accepted) first gets ``CC_HTTP_DRAIN_SECONDS``
  to finish and answer (an accepted SMS webhook is answered 200, so Twilio does not retry it);
  past that Django is told its client went away (``http.disconnect``), on which it cancels its
  own work properly and waits for the view's thread;
* a websocket consumer is cancelled (conversations.socket_stop then closes it with 1012 and runs
  its disconnect) and waited for.

While the server stops (daphne keeps listening until its instances are done) new requests are
answered 503 with Retry-After and new sockets refused, without reaching the application.
"""

import asyncio
import logging
import sys

logger = logging.getLogger(__name__)

DISCONNECT = {"type": "http.disconnect"}
STOPPING_BODY = b'{"detail": "The server is restarting; retry shortly."}'
SERVER_RESTART_CLOSE_CODE = 1012


class GracefulStop:
    """Outermost ASGI wrapper of the application daphne serves."""

    def __init__(self, app, *, drain_seconds: float):
        self.app = app
        self.drain_seconds = drain_seconds
        # Past the drain, an aborted request and a cancelled socket get this long to end (Django
        # joining a view's thread, a socket's bounded cleanup); then the server stops without
        # them: one instance that never ends must not keep a stopping server alive for ever.
        self.end_grace_seconds = 12.0
        self.stop_limit_seconds = drain_seconds + self.end_grace_seconds + 3.0
        self.stopping = False  # set by the server's stop step (under daphne)
        self.running: set[asyncio.Task] = set()  # instances in flight
        self._hooked = False

    async def __call__(self, scope, receive, send):
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        self._hook_server_stop()
        if self.stopping:
            return await self._refuse(kind, send)
        current = asyncio.current_task()
        self.running.add(current)
        try:
            return await self._run(kind, scope, receive, send)
        finally:
            self.running.discard(current)

    def _hook_server_stop(self) -> None:
        """Under daphne: one more "before shutdown" step of the reactor, waiting for our instances.
        Added at the first connection: the reactor runs by then (daphne installs it at import)."""
        if self._hooked:
            return
        self._hooked = True
        reactor = sys.modules.get("twisted.internet.reactor")
        if reactor is None or not hasattr(reactor, "addSystemEventTrigger"):
            return  # another server: it waits for its requests itself
        from twisted.internet import defer

        async def wait_then_close_pools():
            try:
                await asyncio.wait_for(self.all_ended(), self.stop_limit_seconds)
            except TimeoutError:
                # Stopping must end (a process manager would kill us anyway, losing the rest):
                # name what is left and let the server go.
                logger.warning("server stopping: %d instance(s) still in flight after %g s; stopping anyway",
                               len(self.running), self.stop_limit_seconds)
            await asyncio.to_thread(close_database_pools)

        def server_stopping():
            self.stopping = True
            return defer.Deferred.fromFuture(asyncio.ensure_future(wait_then_close_pools()))

        reactor.addSystemEventTrigger("before", "shutdown", server_stopping)

    async def all_ended(self) -> None:
        """Until no instance is in flight (daphne cancels them meanwhile; each drains)."""
        if self.running:
            logger.info("server stopping: %d instance(s) in flight; requests get %g s to finish",
                        len(self.running), self.drain_seconds)
        while self.running:
            await asyncio.wait(set(self.running))

    async def _run(self, kind, scope, receive, send):
        abort = asyncio.Event()

        async def receive_until_aborted():
            """The server's receive, or a disconnect once we abort the request."""
            if abort.is_set():
                return DISCONNECT
            getter = asyncio.ensure_future(receive())
            aborter = asyncio.ensure_future(abort.wait())
            try:
                await asyncio.wait({getter, aborter}, return_when=asyncio.FIRST_COMPLETED)
                return getter.result() if getter.done() else DISCONNECT
            finally:
                for future in (getter, aborter):
                    if not future.done():
                        future.cancel()

        instance = asyncio.ensure_future(self.app(scope, receive_until_aborted if kind == "http" else receive, send))
        try:
            return await asyncio.shield(instance)
        except asyncio.CancelledError:
            if instance.done():
                raise
            if kind == "http":
                await self._drain(instance, abort)
            else:
                instance.cancel()  # the consumer closes and disconnects itself (conversations.socket_stop)
                done, _ = await _wait_uncancellable(instance, self.end_grace_seconds)
                if not done:
                    logger.warning("a websocket did not end within %g s of the server stopping",
                                   self.end_grace_seconds)
        if not instance.done():
            return None  # left behind (logged above): the server stops without it
        # Ended, not cancelled: daphne's gather waits for every instance only if none ends cancelled.
        if not instance.cancelled() and instance.exception() is not None:
            logger.warning("%s instance failed while the server stopped", kind, exc_info=instance.exception())
        return None

    async def _drain(self, request: asyncio.Task, abort: asyncio.Event) -> None:
        """Let the request finish (``drain_seconds``), else abort it as a client gone, and wait
        until it has: Django then waits for the view's thread itself. Cancellations arriving
        meanwhile do not cut this short (the loop must not stop with the request in flight)."""
        done, _ = await _wait_uncancellable(request, self.drain_seconds)
        if done:
            return
        logger.warning("a request did not finish in %g s of the server stopping: aborting it", self.drain_seconds)
        abort.set()
        done, _ = await _wait_uncancellable(request, self.end_grace_seconds)
        if not done:
            logger.warning("an aborted request did not end within %g s: the server stops without it",
                           self.end_grace_seconds)

    async def _refuse(self, kind: str, send) -> None:
        if kind == "websocket":
            # Before accept a close is a refusal (HTTP 403); the clients retry with backoff.
            await send({"type": "websocket.close", "code": SERVER_RESTART_CLOSE_CODE})
            return
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", b"2"), (b"connection", b"close"),
            (b"cache-control", b"no-store"), (b"content-length", str(len(STOPPING_BODY)).encode()),
        ]})
        await send({"type": "http.response.body", "body": STOPPING_BODY})


def close_database_pools() -> None:
    """Close psycopg's connection pools once no request runs any more. Left to the garbage
    collector at exit, each pool waits 5 s for its worker threads (``ConnectionPool.__del__``),
    which is how long every daphne stop took after the requests had ended."""
    from django.db import connections

    for alias in connections:
        connection = connections[alias]
        if alias in getattr(connection, "_connection_pools", {}):
            try:
                connection.close_pool()
            except Exception:  # the server is stopping: never keep it from stopping
                logger.warning("closing the connection pool of %r failed", alias, exc_info=True)


async def _wait_uncancellable(task: asyncio.Task, timeout: float | None):
    """``asyncio.wait`` for one task, riding out cancellations of the waiter."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        try:
            return await asyncio.wait({task}, timeout=left)
        except asyncio.CancelledError:
            continue
