"""Bounded, shared Redis connection pools for the cache and the channel layer.

Why: Django's cache handler gives every async context its own ``RedisCache`` instance, and each
instance builds its own connection pool; a websocket consumer is one such context, so each socket's
first cache call (the widget's hello rate check, the console's ``console_opened``) opened a Redis
client kept for the socket's life: two file descriptors per socket, and daphnes plus workers hit
Redis's ``maxclients`` long before memory ran out (issue 23). Here every cache instance of a
process shares one ``BlockingConnectionPool`` per server (``CC_CACHE_MAX_CONNECTIONS``, 50 by
default): a burst waits for a free connection instead of opening more.

The same for channels_redis: its async pool *refuses* once full (``MaxConnectionsError``), which
made thousands of ``disconnect()`` calls fail when 6,000 sockets closed at once and leaked their
groups. ``BoundedRedisChannelLayer`` waits instead (``CC_CHANNELS_MAX_CONNECTIONS``, 100).
"""

import threading

from channels_redis.core import RedisChannelLayer
from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis import BlockingConnectionPool
from redis.asyncio import BlockingConnectionPool as AsyncBlockingConnectionPool

_shared_pools: dict[tuple, BlockingConnectionPool] = {}
_shared_pools_lock = threading.Lock()


class SharedPoolRedisCacheClient(RedisCacheClient):
    """One bounded pool per (server, pool options) for the whole process, whichever cache
    instance asks. redis-py's pools notice a fork (Celery's prefork) and start afresh there."""

    def __init__(self, servers, *, max_connections: int = 50, pool_timeout: float = 20, **options):
        super().__init__(servers, pool_class=BlockingConnectionPool, **options)
        self._pool_options = {**self._pool_options, "max_connections": max_connections, "timeout": pool_timeout}

    def _get_connection_pool(self, write):
        index = self._get_connection_pool_index(write)
        key = (self._servers[index], tuple(sorted((k, repr(v)) for k, v in self._pool_options.items())))
        pool = _shared_pools.get(key)
        if pool is None:
            with _shared_pools_lock:
                pool = _shared_pools.get(key)
                if pool is None:
                    pool = _shared_pools[key] = BlockingConnectionPool.from_url(
                        self._servers[index], **self._pool_options)
        return pool


class SharedPoolRedisCache(RedisCache):
    """``django.core.cache.backends.redis.RedisCache`` on the process's shared bounded pool
    (OPTIONS ``max_connections`` and ``pool_timeout``)."""

    def __init__(self, server, params):
        super().__init__(server, params)
        self._class = SharedPoolRedisCacheClient


def shared_cache_pools() -> list[BlockingConnectionPool]:
    """The pools this process holds (tests and benches count their connections)."""
    return list(_shared_pools.values())


class BoundedRedisChannelLayer(RedisChannelLayer):
    """channels_redis whose pool (one per event loop and host) is bounded and *waits* for a free
    connection instead of raising ``MaxConnectionsError`` at once. By default it waits as long as
    it takes (``pool_timeout``: seconds, then redis's ConnectionError): connections are only ever
    held for one command (or channels_redis's 5 s blocking read), each bounded by the socket
    timeout, and a reconnect storm on a saturated daphne made a 20 s bound refuse joins.)"""

    def __init__(self, *args, max_connections: int = 100, pool_timeout: float | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.max_connections = max_connections
        self.pool_timeout = pool_timeout

    def create_pool(self, index):
        host = dict(self.hosts[index])
        if "address" not in host:  # sentinels or host/port pairs: channels_redis's own pool
            return super().create_pool(index)
        address = host.pop("address")
        host.setdefault("max_connections", self.max_connections)
        host.setdefault("timeout", self.pool_timeout)
        return AsyncBlockingConnectionPool.from_url(address, **host)


def cache_redis_client(alias: str = "default"):
    """The raw redis-py client behind cache ``alias`` (on the process's shared pool) when it is a
    Redis cache, else None (the embedded mode's in-memory cache): for what needs one round trip
    where Django's cache API takes several (a pipeline, a script)."""
    from django.core.cache import caches

    backend = caches[alias]
    if isinstance(backend, RedisCache):
        return backend._cache.get_client(None, write=True)
    return None
