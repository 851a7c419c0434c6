"""Bound the number of HTTP requests Django works on at once in one daphne process.

Under ASGI each request's sync code runs in a thread of its own with a database connection of its
own; a burst (a provider retrying, 100 webhooks a second) would otherwise open one PostgreSQL
connection per in-flight request until the server refuses new clients and requests fail with 500.
Waiting requests wait here, in the event loop, costing nothing but a coroutine.
"""

import asyncio


class ConcurrencyLimit:
    def __init__(self, app, *, limit: int):
        self.app = app
        self.limit = limit
        self._semaphore: asyncio.Semaphore | None = None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if self._semaphore is None:  # created lazily, inside the server's event loop
            self._semaphore = asyncio.Semaphore(self.limit)
        async with self._semaphore:
            return await self.app(scope, receive, send)
