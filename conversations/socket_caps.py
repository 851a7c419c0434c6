"""At most ``CC_SOCKETS_PER_OWNER`` open sockets per console session and per widget visitor token.

Why (issue 23): 200 sockets on one session were all accepted, so one tab loop or script could
take a daphne. Each socket registers under its owner (a session key, a visitor key) with the time
it opened; past the cap the OLDEST ones are told to close (``SOCKET_CAP_CLOSE_CODE``: the console
and the widget say why and do not reconnect), so the tab the person is looking at keeps working.

Production: one Redis sorted set per owner, shared by every daphne (score: when the socket
opened), updated atomically by a Lua script; the set expires a day after its last socket opened,
so the sockets of a daphne that died are forgotten (and, oldest first, evicted first meanwhile).
Embedded: the same in the process's memory (one process serves every socket).
"""

import asyncio
import threading
import time
import weakref

from asgiref.sync import sync_to_async
from django.conf import settings

from contactcenter.redis_pools import cache_redis_client

from .events import socket_evicted_message
from .socket_cleanup import suppress_and_log

SOCKET_CAP_CLOSE_CODE = 4429
KEY_TTL_SECONDS = 24 * 3600

_REGISTER = """
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[4])
local over = redis.call('ZCARD', KEYS[1]) - tonumber(ARGV[3])
if over > 0 then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, over - 1)
  redis.call('ZREMRANGEBYRANK', KEYS[1], 0, over - 1)
  return oldest
end
return {}
"""

_local: dict[str, dict[str, float]] = {}
_local_lock = threading.Lock()


def socket_cap() -> int:
    return settings.CC_SOCKETS_PER_OWNER


def _key(kind: str, owner: str) -> str:
    return f"cc:sockets:{kind}:{owner}"


def _redis():
    return cache_redis_client()


def socket_register(*, kind: str, owner: str, channel_name: str) -> list[str]:
    """Count this socket under its owner; returns the channels of the sockets to close (the
    oldest beyond the cap, never this one unless the cap is 0)."""
    cap = socket_cap()
    at = time.time()
    client = _redis()
    if client is not None:
        evicted = client.eval(_REGISTER, 1, _key(kind, owner), repr(at), channel_name, cap, KEY_TTL_SECONDS)
        return [name.decode() if isinstance(name, bytes) else name for name in evicted]
    with _local_lock:
        sockets = _local.setdefault(_key(kind, owner), {})
        sockets[channel_name] = at
        over = len(sockets) - cap
        if over <= 0:
            return []
        oldest = sorted(sockets, key=sockets.get)[:over]
        for name in oldest:
            del sockets[name]
        return oldest


def socket_unregister(*, kind: str, owner: str, channel_name: str) -> None:
    client = _redis()
    if client is not None:
        client.zrem(_key(kind, owner), channel_name)
        return
    with _local_lock:
        sockets = _local.get(_key(kind, owner))
        if sockets is not None:
            sockets.pop(channel_name, None)
            if not sockets:
                del _local[_key(kind, owner)]


def socket_count(*, kind: str, owner: str) -> int:
    """How many sockets are registered for the owner (tests, benches)."""
    client = _redis()
    if client is not None:
        return int(client.zcard(_key(kind, owner)))
    with _local_lock:
        return len(_local.get(_key(kind, owner), {}))


async def claim_socket_slot(consumer, *, kind: str, owner: str) -> None:
    """Register ``consumer``'s socket under ``owner`` (off the database thread: a Redis round
    trip) and tell the sockets it pushes over the cap to close (``socket.evicted``)."""
    consumer._socket_slot = (kind, owner)
    with suppress_and_log("registering a socket"):  # never refuse a socket because Redis hiccupped
        evicted = await sync_to_async(socket_register, thread_sensitive=False)(
            kind=kind, owner=owner, channel_name=consumer.channel_name)
        for channel_name in evicted:
            with suppress_and_log("evicting a socket"):
                await consumer.channel_layer.send(channel_name, socket_evicted_message())


def socket_unregister_many(slots: list[tuple[str, str, str]]) -> None:
    """``socket_unregister`` for many ``(kind, owner, channel_name)`` in one round trip."""
    client = _redis()
    if client is None:
        for kind, owner, channel_name in slots:
            socket_unregister(kind=kind, owner=owner, channel_name=channel_name)
        return
    pipe = client.pipeline(transaction=False)
    for kind, owner, channel_name in slots:
        pipe.zrem(_key(kind, owner), channel_name)
    pipe.execute()


class _Releases:
    """The slots of one event loop's closing sockets, given back together: when thousands close
    at once, one thread hop and one Redis round trip per batch instead of one each."""

    def __init__(self):
        self.pending: list[tuple[tuple[str, str, str], asyncio.Future]] = []
        self.task: asyncio.Task | None = None

    async def release(self, slot: tuple[str, str, str]) -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        self.pending.append((slot, done))
        if self.task is None or self.task.done():
            self.task = loop.create_task(self._flush())
        await asyncio.shield(done)

    async def _flush(self) -> None:
        while self.pending:
            batch, self.pending = self.pending, []
            try:
                await sync_to_async(socket_unregister_many, thread_sensitive=False)([slot for slot, _ in batch])
            except Exception as exc:  # noqa: BLE001 - each waiting socket logs it
                for _slot, done in batch:
                    if not done.done():
                        done.set_exception(exc)
            else:
                for _slot, done in batch:
                    if not done.done():
                        done.set_result(None)


_releases: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Releases]" = weakref.WeakKeyDictionary()


async def release_socket_slot(consumer) -> None:
    slot = getattr(consumer, "_socket_slot", None)
    if slot is None:
        return
    consumer._socket_slot = None
    loop = asyncio.get_running_loop()
    releases = _releases.get(loop)
    if releases is None:
        releases = _releases[loop] = _Releases()
    with suppress_and_log("unregistering a socket"):
        await releases.release((slot[0], slot[1], consumer.channel_name))
