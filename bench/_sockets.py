"""What bench/connections and bench/widget share: a daphne started as the Procfile starts one, its
memory and Redis connections read from /proc, the channel layer's group memberships read from
Redis, and a crowd of widget and console sockets (aiohttp, one event loop)."""

import asyncio
import json
import os
import resource
import sys
import time

from _harness import REPO, Processes

CONNECT_CONCURRENCY = 100  # handshakes in flight while a crowd is opened (not the storm: that one is not gated)


def raise_open_files_limit() -> int:
    """As many file descriptors as the hard limit allows, for this process and the daphnes it
    starts (each socket is one on both sides)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else max(soft, 65536)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def start_daphne(procs: Processes, log: str, *, port: int, application: str, env: dict):
    """daphne with the Procfile's listening options (backlog 2048, 30 s websocket handshake)."""
    sys.path.insert(0, str(REPO))
    from contactcenter.management.commands.runembedded import daphne_arguments

    proc = procs.start(log, [sys.executable, "-m", "daphne", *daphne_arguments("127.0.0.1", port), application], env)
    procs.wait_http(proc, log, f"http://127.0.0.1:{port}/healthz", timeout=90)
    return proc


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def redis_connections(pid: int, redis_port: int = 6379) -> int:
    """Established TCP connections of process ``pid`` to ``redis_port`` (its Redis clients)."""
    inodes = set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    count = 0
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as lines:
                next(lines)
                for line in lines:
                    fields = line.split()
                    remote_port = int(fields[2].rsplit(":", 1)[1], 16)
                    if remote_port == redis_port and fields[3] == "01" and fields[9] in inodes:
                        count += 1
        except OSError:
            continue
    return count


def group_memberships(redis_url: str, prefix: str) -> int:
    """Channels in the layer's groups under ``prefix`` (a process's own probe group excluded)."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        return sum(client.zcard(key) for key in client.scan_iter(match=f"{prefix}:group:*", count=1000)
                   if b"layerwatch." not in key)
    finally:
        client.close()


def daphne_problems(procs: Processes, log: str) -> int:
    """Consumer errors in a daphne's log: tracebacks and groups a consumer could not leave."""
    text = procs.log_text(log)
    return text.count("Traceback (most recent call last)") + text.count("could not leave")


class Crowd:
    """Widget and console sockets of one run: ``open_*`` returns when each has been greeted
    (widget: its status frame after the hello; console: its hello)."""

    def __init__(self, base: str, widget_key: str):
        self.base, self.widget_key = base, widget_key
        self.ws_base = base.replace("http://", "ws://")
        self.sockets: list = []
        self.readers: list[asyncio.Task] = []
        self.closed_by_server: list[int | None] = []
        self.resets = 0  # handshakes refused or reset, retried
        self.reset_reasons: dict[str, int] = {}
        self.frames: dict[int, list[tuple[float, dict]]] = {}  # socket index -> (arrival, frame), when recorded
        self._http = None
        self.closing = False

    async def __aenter__(self):
        import aiohttp

        self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(), connector=aiohttp.TCPConnector(limit=0),
                                           timeout=aiohttp.ClientTimeout(total=None, connect=60))
        return self

    async def __aexit__(self, *exc):
        await self.close_all()
        await self._http.close()

    async def _connect(self, path: str, headers: dict, greeted: str, hello: dict | None):
        import aiohttp

        for _attempt in range(50):
            try:
                ws = await self._http.ws_connect(self.ws_base + path, headers=headers, max_msg_size=0, heartbeat=None)
                if hello is not None:
                    await ws.send_str(json.dumps(hello))
                while True:
                    frame = await ws.receive(timeout=60)
                    if frame.type != aiohttp.WSMsgType.TEXT:
                        raise ConnectionResetError(f"closed before greeting: {frame.type} {ws.close_code}")
                    if json.loads(frame.data).get("type") == greeted:
                        return ws
            except (TimeoutError, aiohttp.ClientError, ConnectionError, OSError) as exc:
                self.resets += 1
                reason = f"{type(exc).__name__}: {str(exc)[:80]}"
                self.reset_reasons[reason] = self.reset_reasons.get(reason, 0) + 1
                await asyncio.sleep(0.2 + 0.3 * (_attempt % 5))
        raise RuntimeError(f"could not open {path} after 50 attempts")

    def widget(self, token: str):
        hello = {"type": "hello", "widget": self.widget_key, "token": token, "locale": "en"}
        return self._connect(f"/ws/widget/?widget={self.widget_key}", {"Origin": self.base}, "status", hello)

    def console(self, cookie: str):
        return self._connect("/ws/console/", {"Origin": self.base, "Cookie": cookie}, "hello", None)

    async def open(self, openers, *, gate: int | None = CONNECT_CONCURRENCY, record: bool = False) -> list:
        """Open every socket ``openers`` makes (coroutine factories), ``gate`` at a time (None:
        all at once, as a reconnect storm); keep reading them."""
        semaphore = asyncio.Semaphore(gate) if gate else None

        async def one(opener):
            if semaphore is None:
                return await opener()
            async with semaphore:
                return await opener()

        opened = await asyncio.gather(*(one(opener) for opener in openers))
        for ws in opened:
            index = len(self.sockets)
            self.sockets.append(ws)
            if record:
                self.frames[index] = []
            self.readers.append(asyncio.create_task(self._read(index, ws, record)))
        return opened

    async def _read(self, index: int, ws, record: bool) -> None:
        import aiohttp

        async for frame in ws:
            if record and frame.type == aiohttp.WSMsgType.TEXT:
                self.frames[index].append((time.perf_counter(), json.loads(frame.data)))
        if not self.closing:
            self.closed_by_server.append(ws.close_code)

    async def close_all(self) -> None:
        """Every socket at once, as a deploy or a network blip closes them."""
        self.closing = True
        await asyncio.gather(*(ws.close() for ws in self.sockets), return_exceptions=True)
        for reader in self.readers:
            reader.cancel()
        await asyncio.gather(*self.readers, return_exceptions=True)
        self.sockets, self.readers, self.frames = [], [], {}
        self.closing = False


def flush_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    finally:
        client.close()


def wait_until(predicate, timeout: float, step: float = 0.2) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(step)
    return predicate()
