import asyncio

from contactcenter.concurrency import ConcurrencyLimit


async def test_http_requests_beyond_the_limit_wait_and_websockets_pass():
    running, peak = 0, 0
    release = asyncio.Event()

    async def app(scope, receive, send):
        nonlocal running, peak
        running += 1
        peak = max(peak, running)
        await release.wait()
        running -= 1

    limited = ConcurrencyLimit(app, limit=3)
    tasks = [asyncio.create_task(limited({"type": "http"}, None, None)) for _ in range(10)]
    await asyncio.sleep(0.05)
    assert running == 3
    socket = asyncio.create_task(limited({"type": "websocket"}, None, None))
    await asyncio.sleep(0.05)
    assert running == 4  # websockets are long-lived and not limited
    release.set()
    await asyncio.gather(*tasks, socket)
    assert peak == 4 and running == 0
