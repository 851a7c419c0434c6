"""HTTP requests in flight when the server stops: finished and answered, never stranded.

Why: on SIGTERM daphne cancels every application instance and stops the event loop as soon as they
are all done. Django's ASGI handler, cancelled while a view runs, ends at once and leaves its own
inner task behind (``asyncio.wait`` does not cancel what it waits for); the view's thread goes on,
and its hop back into the event loop (the innermost sync middleware calls the async handler through
``async_to_sync``) then waits for a loop that no longer runs. At exit Python joins that thread for
ever: the fault suite saw daphne alive 60 s after SIGTERM, its main thread joining a request thread
parked in ``UserTimezoneMiddleware``. Whether it happened depended only on whether a request was
between two hops at the signal, so most runs stopped in a second and some never did.

So the request is not cancelled. It runs in a task of its own; when the server cancels the
instance, the request first gets ``CC_HTTP_DRAIN_SECONDS`` to finish and answer (an SMS webhook
accepted is answered 200, so Twilio does not retry it). Past that, Django is told its client went
away (``http.disconnect``), on which it cancels its own work properly and waits for the view's
thread; only then does the instance end, so the loop stops with nothing left in flight. While the
server stops (daphne keeps listening until its instances are done) new requests are answered 503
with Retry-After without reaching Django: a request started then would be stranded the same way.
"""

import asyncio
import contextlib
import logging

logger = logging.getLogger(__name__)

DISCONNECT = {"type": "http.disconnect"}
STOPPING_BODY = b'{"detail": "The server is restarting; retry shortly."}'


class DrainOnShutdown:
    """ASGI wrapper for the HTTP application (websockets pass through)."""

    def __init__(self, app, *, drain_seconds: float):
        self.app = app
        self.drain_seconds = drain_seconds
        self.stopping = False  # set by the first cancellation of a request whose client is still there
        self.in_flight: set[asyncio.Task] = set()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self.stopping:
            return await self._refuse(send)
        client_gone = asyncio.Event()
        abort = asyncio.Event()

        async def receive_until_aborted():
            """The server's receive, or a disconnect once we abort the request."""
            if abort.is_set():
                return DISCONNECT
            getter = asyncio.ensure_future(receive())
            aborter = asyncio.ensure_future(abort.wait())
            try:
                await asyncio.wait({getter, aborter}, return_when=asyncio.FIRST_COMPLETED)
                if getter.done():
                    message = getter.result()
                    if message.get("type") == "http.disconnect":
                        client_gone.set()
                    return message
                return DISCONNECT
            finally:
                for future in (getter, aborter):
                    if not future.done():
                        future.cancel()

        request = asyncio.ensure_future(self.app(scope, receive_until_aborted, send))
        self.in_flight.add(request)
        request.add_done_callback(self.in_flight.discard)
        try:
            return await asyncio.shield(request)
        except asyncio.CancelledError:
            if request.done():
                raise
            if not client_gone.is_set() and not self.stopping:
                # Daphne cancels an instance whose client is still there only when it stops.
                self.stopping = True
                logger.info("server stopping: %d request(s) in flight get %g s to finish",
                            len(self.in_flight), self.drain_seconds)
            await self._finish(request, abort)
            raise

    async def _finish(self, request: asyncio.Task, abort: asyncio.Event) -> None:
        """Let the request finish (``drain_seconds``), else abort it as a client gone, and wait
        until it has: Django then waits for the view's thread itself. Cancellations arriving
        meanwhile do not cut this short (the loop must not stop with the request in flight)."""
        done, _ = await _wait_uncancellable(request, self.drain_seconds)
        if done:
            return
        logger.warning("a request did not finish in %g s of the server stopping: aborting it", self.drain_seconds)
        abort.set()
        await _wait_uncancellable(request, None)

    async def _refuse(self, send) -> None:
        await send({"type": "http.response.start", "status": 503, "headers": [
            (b"content-type", b"application/json"), (b"retry-after", b"2"), (b"connection", b"close"),
            (b"cache-control", b"no-store"), (b"content-length", str(len(STOPPING_BODY)).encode()),
        ]})
        await send({"type": "http.response.body", "body": STOPPING_BODY})


async def _wait_uncancellable(task: asyncio.Task, timeout: float | None):
    """``asyncio.wait`` for one task, riding out cancellations of the waiter."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    while True:
        left = None if deadline is None else max(0.0, deadline - loop.time())
        with contextlib.suppress(asyncio.CancelledError):
            return await asyncio.wait({task}, timeout=left)
