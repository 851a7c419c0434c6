"""The check that the channel layer still delivers to this process's sockets.

Why: when Redis dies, or restarts empty, a socket stays open but its group memberships are gone
(channels_redis keeps them in Redis), so the console or widget silently hears nothing more; the
fault suite saw consoles miss every event after a Redis restart. channels_redis offers no
notification of that. A probe therefore travels every ``CC_CHANNEL_LAYER_CHECK_SECONDS`` through
a group of the process's own and must come back within two checks (one is too strict: a busy
server answered late and closed sockets for nothing in the fault suite). A probe that does not
come back, or a layer that refuses the send, closes the sockets that were open before it with
4503: the clients reconnect, join their groups again, and catch up from the database (the
console by sequence numbers, the widget by its history).

One probe per process (per event loop and layer), shared by all its sockets: a Redis restart
forgets every group at once, the process's with them, so one probe tells for all. Each socket
used to probe its own group, ≈500 probes a second at 5,000 sockets (issue 23). What one probe
cannot see, memberships channels_redis expires one by one (``group_expiry``, a day by default),
is covered by age: a socket open for 90% of that closes with 4503 and joins anew.
"""

import asyncio
import contextlib
import logging
import time
import uuid

from django.conf import settings

from .events import layer_probe_message
from .groups import layer_watch_group

logger = logging.getLogger(__name__)

LAYER_LOST_CLOSE_CODE = 4503  # the clients reconnect on any code but their "stop" ones
PROBE_PATIENCE = 2  # checks a probe may take to come back
EXPIRY_MARGIN = 0.9  # of the layer's group_expiry: a socket this old rejoins before it is forgotten


class ProcessLayerWatch:
    """The sockets of one event loop on one layer, and the one probe loop that speaks for them."""

    def __init__(self, layer, period: float):
        self.layer = layer
        self.period = period
        self.sockets: dict[object, float] = {}  # consumer -> monotonic time it was registered
        self.task: asyncio.Task | None = None
        self.probes_sent = 0
        self._losing: set[asyncio.Task] = set()

    def add(self, consumer) -> None:
        self.sockets[consumer] = time.monotonic()
        if self.task is None or self.task.done():
            self.task = asyncio.create_task(self._run(), name="layer-watch")

    def discard(self, consumer) -> None:
        self.sockets.pop(consumer, None)
        if not self.sockets and self.task is not None:
            task, self.task = self.task, None
            if task is not asyncio.current_task():
                task.cancel()

    async def _run(self) -> None:
        channel = await self.layer.new_channel()
        group = layer_watch_group(uuid.uuid4().hex)
        joined = False
        try:
            while self.sockets:
                if not joined:
                    with contextlib.suppress(Exception):  # a refused join is a lost probe below
                        await self.layer.group_add(group, channel)
                        joined = True
                await asyncio.sleep(self.period)
                sent_at = time.monotonic()
                reason = await self._probe(group, channel)
                if reason is not None:
                    self._lose(reason, opened_before=sent_at)
                    joined = False
                self._rejoin_old_sockets()
        finally:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self.layer.group_discard(group, channel), timeout=1)

    async def _probe(self, group: str, channel: str) -> str | None:
        token = uuid.uuid4().hex
        self.probes_sent += 1
        try:
            await self.layer.group_send(group, layer_probe_message(token))
        except Exception as exc:  # noqa: BLE001 - any failure of the layer means: reconnect
            return f"the channel layer refused a probe: {type(exc).__name__}: {exc}"
        try:
            await asyncio.wait_for(self._returned(channel, token), timeout=self.period * PROBE_PATIENCE)
        except TimeoutError:
            pass
        except Exception as exc:  # noqa: BLE001
            return f"the channel layer failed receiving a probe: {type(exc).__name__}: {exc}"
        else:
            return None
        # Late. A daphne busy with a reconnect storm answers its own probe late too, and closing
        # every socket for that would start the next storm: the layer is asked whether the
        # process's membership is still there (a restarted Redis has none).
        try:
            member = await asyncio.wait_for(self._still_member(group, channel), timeout=self.period)
        except Exception as exc:  # noqa: BLE001 - a layer that cannot answer is a lost layer
            return f"a probe did not come back and the layer did not answer: {type(exc).__name__}: {exc}"
        if member is False:
            return "a probe did not come back: the process's group membership is gone"
        if member is None:
            return "a probe did not come back (group memberships lost?)"
        logger.info("a layer probe came back late; the process's membership is there: sockets kept")
        return None

    async def _still_member(self, group: str, channel: str) -> bool | None:
        """Whether ``channel`` is still in ``group`` by the layer's own record (None: this layer
        cannot tell)."""
        groups = getattr(self.layer, "groups", None)
        if isinstance(groups, dict):  # channels' in-memory layer
            return channel in groups.get(group, {})
        group_key = getattr(self.layer, "_group_key", None)
        if group_key is None or not hasattr(self.layer, "consistent_hash"):
            return None
        connection = self.layer.connection(self.layer.consistent_hash(group))  # channels_redis
        return await connection.zscore(group_key(group), channel) is not None

    async def _returned(self, channel: str, token: str) -> None:
        while True:
            message = await self.layer.receive(channel)
            if message.get("token") == token:
                return

    def _lose(self, reason: str, *, opened_before: float) -> None:
        lost = [consumer for consumer, at in self.sockets.items() if at < opened_before]
        if lost:
            logger.warning("closing %d socket(s): %s", len(lost), reason)
        self._close(lost)

    def _rejoin_old_sockets(self) -> None:
        expiry = getattr(self.layer, "group_expiry", None)
        if not expiry:
            return
        limit = time.monotonic() - expiry * EXPIRY_MARGIN
        self._close([consumer for consumer, at in self.sockets.items() if at < limit])

    def _close(self, consumers: list) -> None:
        for consumer in consumers:
            self.sockets.pop(consumer, None)
            consumer._layer_watch_registered = False
            task = asyncio.create_task(_lost(consumer))
            self._losing.add(task)
            task.add_done_callback(self._losing.discard)


async def _lost(consumer) -> None:
    with contextlib.suppress(Exception):
        await consumer.layer_watch_lost()


_watches: dict[tuple[int, int], ProcessLayerWatch] = {}


def process_watch(layer) -> ProcessLayerWatch:
    loop = asyncio.get_running_loop()
    key = (id(loop), id(layer))
    watch = _watches.get(key)
    if watch is None or watch.layer is not layer:
        # Entries of closed loops (tests run one loop each) go: their tasks ended with their sockets.
        for stale in [k for k, w in _watches.items() if not w.sockets]:
            del _watches[stale]
        watch = _watches[key] = ProcessLayerWatch(layer, settings.CC_CHANNEL_LAYER_CHECK_SECONDS)
    return watch


def watched_sockets() -> int:
    """Sockets under watch in this process (tests, benches)."""
    return sum(len(watch.sockets) for watch in _watches.values())


def probe_loops() -> int:
    """Running probe loops in this process: one per event loop and layer with sockets, or none."""
    return sum(1 for watch in _watches.values() if watch.task is not None and not watch.task.done())


class ChannelLayerWatch:
    """Mixin for an async websocket consumer: ``layer_watch_start()`` once it has joined its
    groups, ``layer_watch_stop()`` in its cleanup; ``layer_watch_lost()`` is called, once, when
    the process's probe failed (or the socket is about to outlive its memberships)."""

    _layer_watch_registered = False

    async def __call__(self, scope, receive, send):
        # However the socket's instance ends (disconnect, server stop cancelling it, an error), it
        # leaves the watch: nothing is checked for a socket that is gone.
        try:
            return await super().__call__(scope, receive, send)
        finally:
            self.layer_watch_stop()

    def layer_watch_start(self) -> None:
        period = settings.CC_CHANNEL_LAYER_CHECK_SECONDS
        if period > 0 and self.channel_layer is not None and not self._layer_watch_registered:
            self._layer_watch_registered = True
            process_watch(self.channel_layer).add(self)

    def layer_watch_stop(self) -> None:
        if self._layer_watch_registered:
            self._layer_watch_registered = False
            with contextlib.suppress(RuntimeError):  # no running loop: nothing to leave
                process_watch(self.channel_layer).discard(self)

    async def layer_watch_lost(self) -> None:
        raise NotImplementedError

    async def layer_probe(self, event) -> None:
        """A probe of the per-socket design (a process of the previous release, during a rolling
        deploy, still sends them through shared groups): ignored, never a missing handler."""
