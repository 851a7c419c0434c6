"""bench/delivery: inbound SMS → the message event on the assigned agent's console socket, in production mode.

Set-up: a throwaway PostgreSQL database (``test_<database>_delivery``) and Redis database 7
(``BENCH_DELIVERY_REDIS_DB``; channel layer, Celery broker, cache; flushed before and after), two ``daphne`` processes on two ports
serving ``bench/_delivery_asgi.py`` (the project's ASGI application and settings, plus the floor
route ``bench/insert-notify/`` from ``bench/_delivery_urls.py``; same middleware for both), both with
``CC_PUBLIC_URL`` = the first one's address (one public URL, as behind a load balancer, so Twilio
signatures validate on either), and one real ``celery worker`` as the Procfile runs it (prefork,
``-c 4``, ``CC_DB_CONN_MAX_AGE=60``) consuming every queue the project's tasks can go to
(``_harness.celery_queues``): whether the webhook ingests in the request or stores the raw event
and leaves the ingest to a task, the path is complete.

Seed: 50 agents (users in the ``agent`` group with a password, ``Agent`` rows, available presence),
one SMS inbox, 50 customers, each with a verified phone identity and an open SMS conversation
assigned to its own agent. Each agent's console socket (``/ws/console/``, session cookie of a
``force_login``, allowed Origin) is an aiohttp websocket to daphne ``i % 2``; its greeting must report
the three groups an agent's console joins (CONSOLE_GROUPS).

Load, open loop (like Twilio: a request leaves at its scheduled time whether or not earlier ones were
answered): RATE signed inbound SMS/s for SECONDS s (real ``RequestValidator`` signatures), customer
``k % 50``, alternating daphnes so that about half the events cross processes; every body carries a
unique token. Latency = the POST's send → ``message.created`` for that message arriving on the
assigned agent's socket (messages matched through the stored ``Message.text``, so the measure does
not depend on where the MessageSid is kept). Before the first request the consoles sit idle for
IDLE_SECONDS, as agents do between contacts. Zero loss: every sent SMS must arrive exactly once on
its agent's socket and on no other (``lost``, ``duplicates``, ``misrouted``), no console socket may
be closed by the server (``sockets_closed``: the bench does not reconnect, so a closed socket also
loses its agent's events) and every POST must be answered 200; exit 1 otherwise. A warm-up of
WARMUP_SECONDS at the same rate of each (floor, then delivery) precedes the rounds (checked for
loss, left out of the percentiles).

Floor, same run, same rate, sockets and daphne alternation: a POST to a sync view behind the
same middleware that does ONE INSERT and ONE ``group_send`` of a ``console.event`` to the agent's
group; latency = send → that event on the socket. Floor and delivery run in ROUNDS alternating
rounds of SECONDS s each (floor, delivery, floor, delivery …, each drained before the next);
ratio = the median over the rounds of p99 delivery / p99 floor, with their spread; target 5. The
p50/p99 figures are over every round's messages.

First paint: a 51st customer with 5,000 messages (bulk-created, seq 1..n) whose conversation is
assigned to agent 0; Playwright drives Debian's chromium: sign in through the login form, open
``/console/customers/<id>/`` PAINT_LOADS + 1 times and read ``first-contentful-paint`` and the
navigation timing (request start → response start = the server's time for the page); the figure is
the median of the loads after the first (the first, cold one is printed too). ``first_paint_ms=NA``
when ``/usr/bin/chromium`` is missing.

Prints ``BENCH delivery ratio=… target=5 spread=…-… rounds=… delivery_p50_ms=… delivery_p99_ms=… floor_p50_ms=…
floor_p99_ms=… lost=… duplicates=… first_paint_ms=… …``.
Options: ``--rate N --seconds S (per round) --rounds N --warmup-seconds S --idle-seconds S --history N
--no-paint``; ``BENCH_SMOKE=1``: 4 agents, 10/s, two rounds of 1 s, a 50-message history, one paint
load (none without chromium) (``_harness``);
diagnosis: ``--layer-socket-timeout S`` runs the daphnes with that channel-layer Redis read timeout
(``bench/_delivery_settings.py``), i.e. not the project's settings; the BENCH line then says so.
"""

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import time
import urllib.parse
from collections import defaultdict
from pathlib import Path

from _harness import (
    REPO,
    ROUNDS,
    SMOKE,
    Processes,
    RoundRatios,
    alternate_async,
    bench_database,
    bench_line,
    celery_queues,
    database_url,
    free_port,
    percentile,
    with_redis_db,
)

REDIS_DB = int(os.environ.get("BENCH_DELIVERY_REDIS_DB", "7"))
if os.environ.get("REDIS_URL"):
    # Our own Redis database (channel layer, broker, cache), set before Django reads its settings.
    os.environ["REDIS_URL"] = with_redis_db(os.environ["REDIS_URL"], REDIS_DB)

from webhook import OUR_NUMBER, WEBHOOK_PATH, _one, _session  # noqa: E402 - after REDIS_URL

AGENTS = 4 if SMOKE else 50
RATE = 10 if SMOKE else 20  # SMS per second, all customers together
SECONDS = 1 if SMOKE else 6  # per round: ROUNDS rounds of floor and of delivery (5 x 6 s = 30 s each)
WARMUP_SECONDS = 0.5 if SMOKE else 2
IDLE_SECONDS = 1 if SMOKE else 12  # consoles idle before the load: more than twice channels_redis' 5 s blocking read
DRAIN_SECONDS = 15 if SMOKE else 30  # after the last send, how long to wait for missing events
GRACE_SECONDS = 0.3 if SMOKE else 1.0  # after the last expected event, how long to keep listening for duplicates
DAPHNES = 2
WORKER_POOL, WORKER_CONCURRENCY = "prefork", 2 if SMOKE else 4  # the Procfile's worker: celery's default pool, concurrency 4
HISTORY = 50 if SMOKE else 5000
PAINT_LOADS = 1 if SMOKE else 5
# What an agent's console socket joins (conversations/consumers.py, _console_groups): its browser
# session's group (signing out closes it), its user's group (a password or role change makes it
# authenticate again) and its agent's group (offers, message.created of its conversations, the
# floor's events). Not the supervisors' group: the bench's users are only in the "agent" group, so
# a fourth group would mean the socket also gets every supervisor broadcast.
CONSOLE_GROUPS = ("session", "user", "agent")
TARGET = 5.0
FLOOR_PATH = "/bench/insert-notify/"
PASSWORD = "bench-delivery-password-2026"
CHROMIUM = "/usr/bin/chromium"
BODY = "bench delivery {phase} {k} {token}: is my order on its way?"


# --- data -------------------------------------------------------------------------------------------

def populate(*, agents: int, history: int) -> dict:
    """Agents, one SMS inbox, one customer + assigned open conversation per agent, and the customer
    with a long history for the first paint. Bulk inserts: this is set-up, not what is measured."""
    from datetime import timedelta

    from django.contrib.auth.hashers import make_password
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from conversations.models import Agent, Channel, Conversation, Direction, Inbox, Message, PresenceState
    from profiles import addresses
    from profiles.models import Customer, Identity, IdentityKind, IdentitySource

    now = timezone.now()
    available, _ = PresenceState.objects.get_or_create(name="Available", defaults={"is_available": True})
    inbox = Inbox.objects.create(kind=Channel.SMS, address=OUR_NUMBER, name="Bench SMS")
    encoded = make_password(PASSWORD)  # hashed once: every agent gets the same (salted) hash
    users = User.objects.bulk_create([User(username=f"bench-agent-{i:02d}", password=encoded) for i in range(agents)])
    Group.objects.get(name="agent").user_set.add(*users)
    agent_rows = Agent.objects.bulk_create([
        Agent(user=user, display_name=f"Agent {i:02d}", presence=available, presence_changed_at=now)
        for i, user in enumerate(users)
    ])
    customers = Customer.objects.bulk_create([Customer(display_name=f"Bench customer {i:02d}") for i in range(agents + 1)])
    phones = [f"+81901235{i:04d}" for i in range(agents + 1)]
    Identity.objects.bulk_create([
        Identity(customer=customer, kind=IdentityKind.PHONE, value=addresses.normalize(IdentityKind.PHONE, phone),
                 verified=True, source=IdentitySource.INBOUND, last_seen_at=now)
        for customer, phone in zip(customers, phones, strict=True)
    ])
    conversations = Conversation.objects.bulk_create([
        Conversation(customer=customer, inbox=inbox, channel=Channel.SMS, status="open", assignee=agent,
                     assigned_at=now, created_at=now, last_message_at=now)
        for customer, agent in zip(customers, [*agent_rows, agent_rows[0]], strict=True)
    ])

    # The long history: one conversation, inbound and outbound alternating, a minute apart.
    long_conversation = conversations[-1]
    start = now - timedelta(minutes=history + 1)
    Message.objects.bulk_create([
        Message(conversation=long_conversation, customer=customers[-1], inbox=inbox, channel=Channel.SMS,
                direction=Direction.INBOUND if n % 2 else Direction.OUTBOUND,
                author_agent=None if n % 2 else agent_rows[0], delivery_status="" if n % 2 else "delivered",
                text=f"History message {n}: the order, the delivery date, the invoice.", seq=n,
                created_at=start + timedelta(minutes=n))
        for n in range(1, history + 1)
    ], batch_size=1000)
    Conversation.objects.filter(pk=long_conversation.pk).update(last_seq=history, last_message_at=start + timedelta(minutes=history))
    return {
        "inbox": inbox,
        "agents": [(agent.pk, user) for agent, user in zip(agent_rows, users, strict=True)],
        "phones": phones[:agents],
        "conversations": [c.pk for c in conversations[:agents]],
        "paint_customer": customers[-1].pk,
        "paint_user": users[0].username,
    }


def session_cookies(users) -> list[str]:
    """A signed-in session per user (what the login view would leave), as a ``Cookie`` header."""
    from django.conf import settings
    from django.test import Client

    cookies = []
    for user in users:
        client = Client()
        client.force_login(user)
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    return cookies


# --- requests ---------------------------------------------------------------------------------------

def delivery_requests(phase: str, count: int, *, phones: list[str], bases: list[str], public: str) -> list[dict]:
    """Signed inbound SMS: customer ``k % n`` (its phone), daphne alternating, a unique body each."""
    from twilio.request_validator import RequestValidator

    from conversations.channels.twilio_client import auth_token
    from conversations.simulator.client import new_message_sid, twilio_sms_params

    validator = RequestValidator(auth_token())
    signed_url = public + WEBHOOK_PATH  # what Twilio signs: the public URL, whichever daphne answers
    out = []
    for k in range(count):
        customer, daphne = k % len(phones), (k + k // len(phones)) % len(bases)
        body = BODY.format(phase=phase, k=k, token=secrets.token_hex(4))
        params = twilio_sms_params(sender=phones[customer], to=OUR_NUMBER, sid=new_message_sid(), body=body)
        headers = {"X-Twilio-Signature": validator.compute_signature(signed_url, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        out.append({"key": body, "url": bases[daphne] + WEBHOOK_PATH, "body": urllib.parse.urlencode(params).encode(),
                    "headers": headers, "socket": customer, "daphne": daphne, "phase": phase})
    return out


def floor_requests(phase: str, count: int, *, agent_ids: list[int], bases: list[str]) -> list[dict]:
    out = []
    for k in range(count):
        customer, daphne = k % len(agent_ids), (k + k // len(agent_ids)) % len(bases)
        token = f"floor-{phase}-{k}-{secrets.token_hex(4)}"
        out.append({"key": token, "url": bases[daphne] + FLOOR_PATH,
                    "body": urllib.parse.urlencode({"token": token, "agent": agent_ids[customer]}).encode(),
                    "headers": {"Content-Type": "application/x-www-form-urlencoded"},
                    "socket": customer, "daphne": daphne, "phase": phase})
    return out


# --- the client: sockets + open-loop sender, one event loop -----------------------------------------

class Console:
    """Every agent's console socket; each frame is stamped on arrival, before it is parsed."""

    def __init__(self):
        self.arrivals: list[tuple[float, int, dict]] = []  # (perf_counter, socket index, event)
        self.floor_seen: set[str] = set()
        self.messages_seen = 0
        self.closed: dict[int, tuple[float, int | None]] = {}  # socket index → (perf_counter, close code)
        self.sockets = []
        self._readers = []
        self._http = None
        self.closing = False

    async def connect(self, urls: list[str], cookies: list[str], origins: list[str]) -> None:
        import aiohttp

        self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                           timeout=aiohttp.ClientTimeout(total=None, connect=20))

        async def one(index: int):
            ws = await self._http.ws_connect(
                urls[index], headers={"Origin": origins[index], "Cookie": cookies[index]})
            hello = await ws.receive_json(timeout=20)
            if hello.get("type") != "hello" or hello.get("groups") != len(CONSOLE_GROUPS):
                raise RuntimeError(f"socket {index}: unexpected greeting {hello}")
            return ws

        self.sockets = await asyncio.gather(*(one(i) for i in range(len(urls))))
        self._readers = [asyncio.create_task(self._read(i, ws)) for i, ws in enumerate(self.sockets)]

    async def _read(self, index: int, ws) -> None:
        import aiohttp

        async for frame in ws:
            at = time.perf_counter()
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            event = json.loads(frame.data)
            self.arrivals.append((at, index, event))
            if event.get("type") == "message.created":
                self.messages_seen += 1
            elif event.get("type") == "bench.floor":
                self.floor_seen.add(event.get("token"))
        if not self.closing:  # the server closed it (ours close only at the end)
            self.closed.setdefault(index, (time.perf_counter(), ws.close_code))

    async def close(self) -> None:
        self.closing = True
        for ws in self.sockets:
            await ws.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        if self._http is not None:
            await self._http.close()


async def open_loop(requests: list[dict], rate: float, sends: dict) -> dict:
    """Send request i at start + i/rate regardless of earlier answers; record send time and answer."""
    loop = asyncio.get_running_loop()

    async def post(session, request):
        sent = time.perf_counter()
        ms, status = await _one(session, request["url"], request["body"], request["headers"])
        sends[request["key"]] = {**request, "sent": sent, "status": status, "http_ms": ms}

    async with _session() as session:
        tasks, lag = [], 0.0
        start = loop.time() + 0.1
        for i, request in enumerate(requests):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lag = max(lag, loop.time() - due)
            tasks.append(asyncio.create_task(post(session, request)))
        sent_for = loop.time() - start
        await asyncio.gather(*tasks)
    return {"max_lag_ms": lag * 1000, "send_seconds": sent_for}


async def drain(done, limit: float) -> float:
    """Until ``done()`` (then GRACE_SECONDS more, for late duplicates) or ``limit`` s; seconds waited."""
    start = time.perf_counter()
    while not done() and time.perf_counter() - start < limit:
        await asyncio.sleep(0.05)
    waited = time.perf_counter() - start
    await asyncio.sleep(GRACE_SECONDS)
    return waited


class BacklogSampler:
    """Tasks waiting on the broker (the worker's queues), sampled every 0.2 s: the worker keeping up or not."""

    def __init__(self, queues: list[str]):
        import redis.asyncio

        self.queues = queues
        self.client = redis.asyncio.Redis.from_url(os.environ["REDIS_URL"])
        self.max = 0
        self._task = None

    async def _run(self) -> None:
        while True:
            lengths = await asyncio.gather(*(self.client.llen(queue) for queue in self.queues))
            self.max = max(self.max, sum(lengths))
            await asyncio.sleep(0.2)

    def start(self) -> None:
        self.max = 0
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> int:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        return self.max

    async def close(self) -> None:
        await self.client.aclose()


async def drive(args, *, socket_urls, cookies, origins, floor_plan, delivery_plan, queues) -> dict:
    console = Console()
    backlog = BacklogSampler(queues)
    await console.connect(socket_urls, cookies, origins)
    connected_at = time.perf_counter()
    sends: dict[str, dict] = {}
    phases = {}

    async def run_phase(requests: list[dict]) -> None:
        """One phase's open loop, then until every event of it arrived (or the drain limit)."""
        load_avg = os.getloadavg()[0]
        backlog.start()
        stats = await open_loop(requests, args.rate, sends)
        if requests[0]["phase"].startswith("floor"):
            keys = {r["key"] for r in requests}
            waited = await drain(lambda keys=keys: keys <= console.floor_seen, args.drain_seconds)
        else:
            expected = sum(1 for r in sends.values() if r["phase"].startswith("delivery"))
            waited = await drain(lambda n=expected: console.messages_seen >= n, args.drain_seconds)
        phases[requests[0]["phase"]] = {**stats, "drain_seconds": waited, "load": load_avg,
                                        "max_backlog": await backlog.stop()}

    try:
        # Agents sit idle between contacts: the consoles must survive a quiet channel layer.
        await asyncio.sleep(args.idle_seconds)
        closed_idle = sorted(console.closed)
        floor_warm, *floor_rounds = floor_plan
        delivery_warm, *delivery_rounds = delivery_plan
        await run_phase(floor_warm)
        await run_phase(delivery_warm)
        await alternate_async(len(floor_rounds), lambda i: run_phase(floor_rounds[i]),
                              lambda i: run_phase(delivery_rounds[i]))
        closed = {index: (round(at - connected_at, 1), code) for index, (at, code) in sorted(console.closed.items())}
    finally:
        await console.close()
        await backlog.close()
    return {"arrivals": console.arrivals, "sends": sends, "phases": phases, "closed": closed,
            "closed_idle": closed_idle}


# --- matching ---------------------------------------------------------------------------------------

def match_floor(sends: dict, arrivals: list, phase: set[str]) -> dict:
    by_token = defaultdict(list)
    for at, index, event in arrivals:
        if event.get("type") == "bench.floor":
            by_token[event.get("token")].append((at, index))
    return _match(sends, by_token, phase, prefix="floor")


def match_delivery(sends: dict, arrivals: list, phase: set[str], conversation_ids: list[int]) -> dict:
    """message.created events → sent SMS through the stored rows' text (each body is unique)."""
    from conversations.models import Message

    pks_by_text = defaultdict(list)
    rows = Message.objects.filter(conversation_id__in=conversation_ids, direction="inbound").values_list("pk", "text")
    for pk, text in rows:
        pks_by_text[text].append(pk)
    by_pk = defaultdict(list)
    for at, index, event in arrivals:
        if event.get("type") == "message.created":
            by_pk[event.get("message")].append((at, index))
    by_body = {body: [hit for pk in pks_by_text.get(body, []) for hit in by_pk[pk]]
               for body, send in sends.items() if send["phase"].startswith("delivery")}
    result = _match(sends, by_body, phase, prefix="delivery")
    result["stored_twice"] = sum(len(pks_by_text.get(b, [])) - 1 for b in by_body if len(pks_by_text.get(b, [])) > 1)
    result["not_stored"] = sum(1 for b in by_body if not pks_by_text.get(b))
    return result


def _match(sends: dict, hits_by_key, phase: set[str], *, prefix: str) -> dict:
    """Latencies of the phases in ``phase``; loss, duplicates and misrouting over every phase of ``prefix``."""
    latencies, http_ms, errors = [], [], {}
    lost = duplicates = misrouted = 0
    for key, send in sends.items():
        if not send["phase"].startswith(prefix):
            continue
        if send["status"] != 200:
            errors[str(send["status"])] = errors.get(str(send["status"]), 0) + 1
        hits = hits_by_key.get(key, [])
        right = sorted(at for at, index in hits if index == send["socket"])
        misrouted += len(hits) - len(right)
        if not right:
            lost += 1
            continue
        duplicates += len(right) - 1
        if send["phase"] in phase:
            latencies.append((right[0] - send["sent"]) * 1000)
            if send["status"] == 200:
                http_ms.append(send["http_ms"])
    return {"latencies": latencies, "http_ms": http_ms, "lost": lost, "duplicates": duplicates,
            "misrouted": misrouted, "errors": sum(errors.values()), "error_kinds": errors,
            "sent": sum(1 for s in sends.values() if s["phase"] in phase)}


def pct(values: list[float], q: float) -> float:
    return percentile(values, q) if values else float("nan")


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return (f"p50 {percentile(values, 50):.1f} ms, p90 {percentile(values, 90):.1f} ms, "
            f"p99 {percentile(values, 99):.1f} ms, max {max(values):.1f} ms (n={len(values)})")


# --- first paint ------------------------------------------------------------------------------------

PAINT_JS = """() => {
  const nav = performance.getEntriesByType('navigation')[0];
  const fcp = performance.getEntriesByType('paint').find(e => e.name === 'first-contentful-paint');
  return {fcp: fcp ? fcp.startTime : null, server: nav.responseStart - nav.requestStart,
          html: nav.responseEnd - nav.requestStart, bytes: nav.decodedBodySize, status: nav.responseStatus,
          rows: document.querySelectorAll('main li, main article').length};
}"""


def first_paint(base: str, *, username: str, customer_id: int, loads: int) -> dict:
    """Median first-contentful-paint and server time of the customer page over ``loads`` warm loads."""
    if not Path(CHROMIUM).exists():
        return {"error": f"{CHROMIUM} is missing (chromium not installed yet?)"}
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--headless", "--no-sandbox", "--disable-gpu"])
            try:
                page = browser.new_page()
                page.goto(base + "/accounts/login/")
                page.fill("input[name=username]", username)
                page.fill("input[name=password]", PASSWORD)
                with page.expect_navigation():  # the sign-in form's button, not the language switcher's
                    page.click("form:has(input[name=password]) [type=submit]")
                if "/accounts/login/" in page.url:
                    return {"error": f"sign-in failed (still on {page.url})"}
                samples = []
                for _ in range(loads + 1):
                    response = page.goto(f"{base}/console/customers/{customer_id}/", wait_until="load")
                    if response is None or response.status != 200:
                        return {"error": f"customer page answered {response.status if response else 'nothing'}"}
                    # Polled from here: wait_for_function would need eval, which the page's CSP forbids.
                    deadline = time.monotonic() + 10
                    sample = page.evaluate(PAINT_JS)
                    while sample["fcp"] is None and time.monotonic() < deadline:
                        time.sleep(0.05)
                        sample = page.evaluate(PAINT_JS)
                    if sample["fcp"] is None:
                        return {"error": "no first-contentful-paint entry within 10 s"}
                    samples.append(sample)
            finally:
                browser.close()
    except PlaywrightError as exc:
        return {"error": f"playwright: {str(exc).splitlines()[0]}"}
    warm = samples[1:] or samples
    return {"cold": samples[0], "fcp": statistics.median(s["fcp"] for s in warm),
            "server": statistics.median(s["server"] for s in warm), "html": statistics.median(s["html"] for s in warm),
            "bytes": samples[-1]["bytes"], "rows": samples[-1]["rows"], "loads": len(warm)}


# --- main -------------------------------------------------------------------------------------------

def flush_redis() -> None:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        client.flushdb()
    finally:
        client.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds of floor and delivery")
    parser.add_argument("--warmup-seconds", type=float, default=WARMUP_SECONDS)
    parser.add_argument("--drain-seconds", type=float, default=DRAIN_SECONDS)
    parser.add_argument("--idle-seconds", type=float, default=IDLE_SECONDS,
                        help="consoles connected and idle before the first request")
    parser.add_argument("--history", type=int, default=HISTORY, help="messages of the first-paint customer")
    parser.add_argument("--paint-loads", type=int, default=PAINT_LOADS)
    parser.add_argument("--no-paint", action="store_true", help="skip the browser (first_paint_ms=NA)")
    parser.add_argument("--layer-socket-timeout", type=float, default=None, metavar="S",
                        help="diagnosis: the daphnes' channel-layer Redis read timeout (see _delivery_settings.py)")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.CC_PRODUCTION:
        print("delivery bench needs production mode (PostgreSQL + Redis, daphne): skipped")
        print(bench_line("delivery", ratio=0.0, target=TARGET, db="sqlite", skipped=1))
        return 0

    from contactcenter.celery import app

    began = time.monotonic()
    flush_redis()
    database = f"test_{settings.DATABASES['default']['NAME']}_delivery"
    with bench_database(database) as connection:
        seeded = populate(agents=AGENTS, history=args.history)
        agent_ids = [agent_id for agent_id, _user in seeded["agents"]]
        cookies = session_cookies([user for _id, user in seeded["agents"]])
        db_url = database_url(connection)
        connection.close()  # the load phases hold no connection of ours open

        ports = []
        while len(ports) < DAPHNES:
            port = free_port()
            if port not in ports:
                ports.append(port)
        bases = [f"http://127.0.0.1:{port}" for port in ports]
        bench_dir = str(REPO / "bench")
        env = dict(
            os.environ, DATABASE_URL=db_url, CC_EMBEDDED_WORKER="0", CC_PUBLIC_URL=bases[0],
            ALLOWED_HOSTS="127.0.0.1,localhost", DJANGO_SETTINGS_MODULE="_delivery_settings",
            PYTHONPATH=os.pathsep.join(p for p in (bench_dir, str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        )
        env.setdefault("SECRET_KEY", "bench-only-secret-key")
        env.pop("CC_BENCH_LAYER_SOCKET_TIMEOUT", None)
        if args.layer_socket_timeout is not None:
            env["CC_BENCH_LAYER_SOCKET_TIMEOUT"] = str(args.layer_socket_timeout)
        queues = celery_queues(app)
        node = f"bench-delivery-{os.getpid()}"
        procs = Processes()
        try:
            daphnes = [procs.daphne(f"delivery-daphne{i}", port=port, application="_delivery_asgi:application", env=env)
                       for i, port in enumerate(ports)]
            worker = procs.celery_worker("delivery-worker", node=node, pool=WORKER_POOL, concurrency=WORKER_CONCURRENCY,
                                         queues=queues, env=dict(env, CC_DB_CONN_MAX_AGE="60"))
            for i, (proc, base) in enumerate(zip(daphnes, bases, strict=True)):
                procs.wait_http(proc, f"delivery-daphne{i}", base + WEBHOOK_PATH)
            procs.wait_celery(worker, "delivery-worker", app, node)

            warm_n, round_n = max(1, int(args.rate * args.warmup_seconds)), max(1, int(args.rate * args.seconds))
            round_names = [f"r{i}" for i in range(args.rounds)]
            floor_plan = [floor_requests(f"floor-{phase}", n, agent_ids=agent_ids, bases=bases)
                          for phase, n in (("warmup", warm_n), *((name, round_n) for name in round_names))]
            delivery_plan = [delivery_requests(f"delivery-{phase}", n, phones=seeded["phones"], bases=bases,
                                               public=bases[0])
                             for phase, n in (("warmup", warm_n), *((name, round_n) for name in round_names))]
            load_start = os.getloadavg()[0]
            run = asyncio.run(drive(
                args, socket_urls=[f"ws://127.0.0.1:{ports[i % DAPHNES]}/ws/console/" for i in range(AGENTS)],
                cookies=cookies, origins=[bases[i % DAPHNES] for i in range(AGENTS)],
                floor_plan=floor_plan, delivery_plan=delivery_plan, queues=queues,
            ))
            load_end = os.getloadavg()[0]
            floor_phases = {f"floor-{name}" for name in round_names}
            delivery_phases = {f"delivery-{name}" for name in round_names}
            floor = match_floor(run["sends"], run["arrivals"], floor_phases)
            delivery = match_delivery(run["sends"], run["arrivals"], delivery_phases, seeded["conversations"])
            ratios = RoundRatios(
                [pct(match_floor(run["sends"], run["arrivals"], {f"floor-{name}"})["latencies"], 99)
                 for name in round_names],
                [pct(match_delivery(run["sends"], run["arrivals"], {f"delivery-{name}"},
                                    seeded["conversations"])["latencies"], 99) for name in round_names],
                label="p99 delivery / p99 floor")
            paint = ({"error": "--no-paint"} if args.no_paint else
                     first_paint(bases[0], username=seeded["paint_user"], customer_id=seeded["paint_customer"],
                                 loads=args.paint_loads))
            tracebacks = {f"delivery-daphne{i}": procs.tracebacks(f"delivery-daphne{i}") for i in range(DAPHNES)}
            tracebacks["delivery-worker"] = procs.tracebacks("delivery-worker")
        finally:
            procs.stop()
            try:
                flush_redis()
            except Exception:  # noqa: BLE001 - cleanup only
                pass
            connection.close()

    rate = int(args.rate) if args.rate == int(args.rate) else args.rate
    seconds = int(args.seconds) if args.seconds == int(args.seconds) else args.seconds
    print(f"database: postgresql ({database}) + redis db {REDIS_DB}; {DAPHNES} daphne processes "
          f"({', '.join(bases)}), one celery worker (-P {WORKER_POOL} -c {WORKER_CONCURRENCY}, queues {','.join(queues)}); "
          f"{os.cpu_count()} CPUs, load average {load_start:.1f} at start, {load_end:.1f} at end")
    if args.layer_socket_timeout is not None:
        print(f"diagnosis: the daphnes' channel layer ran with a Redis socket_timeout of {args.layer_socket_timeout:g} s "
              "(not the project's settings)")
    if load_start > 1.5:
        print("note: the machine was already busy when the bench started (other processes); latencies include that")
    print(f"{AGENTS} agents, one console socket each ({AGENTS // DAPHNES} per daphne), each with one assigned open SMS "
          f"conversation; open loop {rate}/s, {args.rounds} alternating rounds of {seconds} s each after a "
          f"{args.warmup_seconds:g} s warm-up, "
          f"requests alternating daphnes (events cross processes about half the time)")
    for name, result in (("floor (1 INSERT + 1 group_send)", floor), ("delivery (signed inbound SMS)", delivery)):
        rounds = [run["phases"][f"{name.split()[0]}-{r}"] for r in round_names]
        phase = {key: max(one[key] for one in rounds)
                 for key in ("send_seconds", "max_lag_ms", "drain_seconds", "load", "max_backlog")}
        print(f"{name}: send -> event on the agent's socket {fmt(result['latencies'])}")
        print(f"    HTTP answer {fmt(result['http_ms'])}; every round sent in at most {phase['send_seconds']:.1f} s "
              f"(max client lag {phase['max_lag_ms']:.0f} ms), drained at most {phase['drain_seconds']:.1f} s after; "
              f"load average at most {phase['load']:.1f} at a round's start; tasks waiting for the worker: at most "
              f"{phase['max_backlog']}")
        print(f"    lost {result['lost']}, duplicates {result['duplicates']}, on another agent's socket "
              f"{result['misrouted']}, HTTP errors {result['errors']}{' ' + str(result['error_kinds']) if result['errors'] else ''}"
              + (f"; stored twice {result['stored_twice']}, never stored {result['not_stored']}" if "stored_twice" in result else ""))
    if run["closed"]:
        print(f"console sockets closed by the server: {len(run['closed'])} ({len(run['closed_idle'])} during the "
              f"{args.idle_seconds:g} s idle before the load); socket: (seconds after connecting, close code) "
              f"{run['closed']}")
    else:
        print(f"console sockets closed by the server: 0 (idle {args.idle_seconds:g} s before the load, then the run)")
    print(f"tracebacks in var/bench-delivery-*.log: {tracebacks}")
    if "error" in paint:
        print(f"first paint: NA ({paint['error']})")
        first_paint_ms = server_ms = "NA"
    else:
        print(f"first paint, customer with {args.history} messages (console page, newest 50 shown): "
              f"first-contentful-paint median {paint['fcp']:.0f} ms over {paint['loads']} loads "
              f"(cold first load {paint['cold']['fcp']:.0f} ms); server time (request -> first byte) "
              f"{paint['server']:.0f} ms, whole HTML {paint['html']:.0f} ms, {paint['bytes'] / 1024:.0f} KiB")
        first_paint_ms, server_ms = round(paint["fcp"]), round(paint["server"])
    print(f"{ratios.describe()} (target {TARGET:g}); total {time.monotonic() - began:.0f} s")
    lost = delivery["lost"] + floor["lost"]
    duplicates = delivery["duplicates"] + floor["duplicates"]
    misrouted = delivery["misrouted"] + floor["misrouted"]
    errors = delivery["errors"] + floor["errors"]
    closed = len(run["closed"])
    print(bench_line(
        "delivery", ratio=ratios, target=TARGET,
        delivery_p50_ms=pct(delivery["latencies"], 50), delivery_p99_ms=pct(delivery["latencies"], 99),
        floor_p50_ms=pct(floor["latencies"], 50), floor_p99_ms=pct(floor["latencies"], 99),
        lost=lost, duplicates=duplicates, first_paint_ms=first_paint_ms, first_paint_server_ms=server_ms,
        misrouted=misrouted, sockets_closed=closed, http_errors=errors, sent=delivery["sent"], rate=rate, seconds=seconds,
        load_start=round(load_start, 1),
        **({"layer_socket_timeout": args.layer_socket_timeout} if args.layer_socket_timeout is not None else {}),
    ))
    if lost or duplicates or misrouted or errors or closed:
        print(f"FAIL: lost={lost} duplicates={duplicates} misrouted={misrouted} sockets_closed={closed} "
              f"http_errors={errors}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
