"""bench/wallboard: a state change's commit → the wallboard update on every supervisor's socket.

Set-up (production mode only): a throwaway PostgreSQL database (``test_<database>_wallboard``) and
the Redis database of ``REDIS_URL`` (flushed before and after), one ``daphne`` serving
``bench/_wallboard_asgi.py`` (the project's websocket stack; the wallboard consumer has one more
handler, for the floor). Seed: SUPERVISORS supervisors and AGENTS agents (half Break, half Lunch),
three queues, WAITING waiting and ASSIGNED assigned conversations, so the board has something on
every row. Every supervisor has a wallboard socket (``/ws/supervisor/``), every agent a console
socket (``/ws/console/``), all connected and read throughout.

Subject: RATE state changes a second, open loop, from this process: agent ``i % AGENTS`` is put
on Break or Lunch through routing's ``agent_presence_set`` (a real service: one transaction, the
``agent.presence`` event to the supervisors' group after commit). Latency = the commit (an
``on_commit`` hook registered before the service's own) → the first frame on a supervisor's
socket that shows the change (its ``presence_since``: a ``wallboard.delta`` with the agent's row,
or a whole board), for every supervisor socket. Zero lost:
every change must show on every supervisor socket (``lost``), none may be closed
(``sockets_closed``).

Floor, same run, same rate and sockets: a bare ``group_send`` to the supervisors' group (the same
20 sockets) of a small message each socket relays; latency = the send → its arrival on each
socket; every one must arrive (``floor_lost``). Floor and subject alternate in ROUNDS rounds of
SECONDS s each; ratio = the median over rounds of p95 subject / p95 floor; target 3.

Prints ``BENCH wallboard ratio=… target=3 spread=…-… rounds=… p50_ms=… p95_ms=… floor_p50_ms=…
floor_p95_ms=… lost=… floor_lost=… sockets_closed=… …``. ``BENCH_SMOKE=1``: 3 supervisors, 10
agents, 10 changes/s, two rounds of 1 s (``_harness``). Options: ``--rate N --seconds S --rounds N``.
"""

import argparse
import asyncio
import json
import os
import time
from collections import defaultdict

from _harness import (
    REPO,
    ROUNDS,
    SMOKE,
    Processes,
    RoundRatios,
    alternate_async,
    bench_database,
    bench_line,
    database_url,
    free_port,
    percentile,
)

SUPERVISORS = 3 if SMOKE else 20
AGENTS = 10 if SMOKE else 100
WAITING = 10 if SMOKE else 60
ASSIGNED = 10 if SMOKE else 150
RATE = 10 if SMOKE else 20
SECONDS = 1 if SMOKE else 6
DRAIN_SECONDS = 10 if SMOKE else 20
TARGET = 3.0


# --- data -------------------------------------------------------------------------------------------

def populate() -> dict:
    from django.contrib.auth.models import Group, User
    from django.utils import timezone

    from conversations.models import (
        Agent,
        AgentSkill,
        Conversation,
        Inbox,
        PresenceState,
        Queue,
        Skill,
    )
    from profiles.models import Customer

    states = {name: PresenceState.objects.create(name=name, is_available=name == "Available", ordering=i)
              for i, name in enumerate(("Available", "Break", "Lunch"))}
    skills = [Skill.objects.create(name=f"Skill {i}", slug=f"skill-{i}") for i in range(3)]
    queues = []
    for i, skill in enumerate(skills):
        queue = Queue.objects.create(name=f"Queue {i}", slug=f"queue-{i}", sla_seconds=60)
        queue.required_skills.add(skill)
        queues.append(queue)
    agent_group, supervisor_group = Group.objects.get(name="agent"), Group.objects.get(name="supervisor")
    agents = []
    for i in range(AGENTS):
        user = User.objects.create_user(username=f"bench-agent-{i}")
        user.groups.add(agent_group)
        agents.append(Agent.objects.create(user=user, display_name=f"Agent {i}",
                                           presence=states["Break" if i % 2 else "Lunch"]))
    AgentSkill.objects.bulk_create([AgentSkill(agent=agent, skill=skills[i % 3]) for i, agent in enumerate(agents)])
    supervisors = []
    for i in range(SUPERVISORS):
        user = User.objects.create_user(username=f"bench-supervisor-{i}")
        user.groups.add(supervisor_group)
        supervisors.append(user)
    inbox = Inbox.objects.create(kind="sms", address="+815000000000", name="SMS")
    now = timezone.now()
    customers = Customer.objects.bulk_create([Customer(display_name=f"Customer {i}") for i in range(WAITING + ASSIGNED)])
    Conversation.objects.bulk_create([
        Conversation(customer=customer, inbox=inbox, channel="sms", queue=queues[i % 3], queued_at=now,
                     last_message_at=now, **({"assignee": agents[i % AGENTS], "assigned_at": now} if i >= WAITING else {}))
        for i, customer in enumerate(customers)])
    return {"agents": [agent.pk for agent in agents], "supervisors": supervisors,
            "agent_users": [agent.user for agent in agents], "states": [states["Break"].pk, states["Lunch"].pk]}


def session_cookies(users) -> list[str]:
    from django.conf import settings
    from django.test import Client

    cookies = []
    for user in users:
        client = Client()
        client.force_login(user)
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    return cookies


def presence_change(agent_id: int, state_id: int) -> tuple[float, str]:
    """The subject's state change; returns (commit time, the change's ``presence_since`` as the
    board's JSON writes it)."""
    from django.core.serializers.json import DjangoJSONEncoder
    from django.db import connection, transaction

    from conversations.models import Agent, PresenceState
    from conversations.routing.presence import agent_presence_set

    committed = []
    try:
        with transaction.atomic():
            transaction.on_commit(lambda: committed.append(time.perf_counter()))  # before the service's publish
            agent = agent_presence_set(agent=Agent(pk=agent_id), presence=PresenceState.objects.get(pk=state_id),
                                       reason="bench")
    finally:
        # The executor's threads would keep their connections, and the database could not be dropped.
        connection.close()
    return committed[0], json.dumps({"presence_since": agent.presence_changed_at}, cls=DjangoJSONEncoder)[1:-1]


def floor_send(token: str) -> float:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer

    from conversations.groups import supervisors_group

    text = json.dumps({"type": "bench.floor", "token": token})
    sent = time.perf_counter()
    async_to_sync(get_channel_layer().group_send)(supervisors_group(), {"type": "bench.floor", "text": text})
    return sent


# --- sockets -----------------------------------------------------------------------------------------

class Sockets:
    """Supervisors' wallboard sockets (every frame stamped on arrival) and agents' console sockets."""

    def __init__(self):
        self.boards: list[list[tuple[float, str]]] = []  # per supervisor socket: (arrival, frame text)
        self.floor: dict[str, dict[int, float]] = defaultdict(dict)  # token → socket → arrival
        self.closed: dict[str, int | None] = {}
        self.sockets, self._readers, self._http, self.closing = [], [], None, False

    async def connect(self, base: str, supervisor_cookies: list[str], agent_cookies: list[str]) -> None:
        import aiohttp

        self._http = aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar(),
                                           connector=aiohttp.TCPConnector(limit=0),  # 120 sockets > its 100
                                           timeout=aiohttp.ClientTimeout(total=None, connect=120))
        ws_base = base.replace("http://", "ws://")

        gate = asyncio.Semaphore(10)  # a hundred handshakes at once overflow daphne's listen backlog

        async def one(path, cookie):
            async with gate:
                return await self._http.ws_connect(ws_base + path, headers={"Origin": base, "Cookie": cookie},
                                                   max_msg_size=0)

        boards = await asyncio.gather(*(one("/ws/supervisor/", c) for c in supervisor_cookies))
        consoles = await asyncio.gather(*(one("/ws/console/", c) for c in agent_cookies))
        self.boards = [[] for _ in boards]
        self.sockets = [*boards, *consoles]
        self._readers = [asyncio.create_task(self._read_board(i, ws)) for i, ws in enumerate(boards)]
        self._readers += [asyncio.create_task(self._read_console(i, ws)) for i, ws in enumerate(consoles)]

    async def _read_board(self, index: int, ws) -> None:
        import aiohttp

        async for frame in ws:
            at = time.perf_counter()
            if frame.type != aiohttp.WSMsgType.TEXT:
                continue
            if frame.data.startswith('{"type": "bench.floor"'):
                self.floor[json.loads(frame.data)["token"]][index] = at
            else:
                self.boards[index].append((at, frame.data))
        if not self.closing:
            self.closed[f"board-{index}"] = ws.close_code

    async def _read_console(self, index: int, ws) -> None:
        async for _frame in ws:
            pass
        if not self.closing:
            self.closed[f"console-{index}"] = ws.close_code

    async def close(self) -> None:
        self.closing = True
        for ws in self.sockets:
            await ws.close()
        for reader in self._readers:
            reader.cancel()
        await asyncio.gather(*self._readers, return_exceptions=True)
        await self._http.close()


def board_latencies(sockets: Sockets, changes: list[tuple[float, str]]) -> tuple[list[float], int]:
    """For every change and supervisor socket: the first board after the commit that shows it."""
    latencies, lost = [], 0
    for frames in sockets.boards:
        for committed, marker in changes:
            arrival = next((at for at, text in frames if at >= committed and marker in text), None)
            if arrival is None:
                lost += 1
            else:
                latencies.append((arrival - committed) * 1000)
    return latencies, lost


async def open_loop(count: int, rate: float, work) -> list:
    """Call ``work(i)`` (in a thread: it uses the ORM) at start + i/rate, whatever the earlier took."""
    loop = asyncio.get_running_loop()
    start, tasks = loop.time() + 0.05, []
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(loop.run_in_executor(None, work, i))
    return await asyncio.gather(*tasks)


async def drive(args, *, base, seeded, supervisor_cookies, agent_cookies) -> dict:
    sockets = Sockets()
    await sockets.connect(base, supervisor_cookies, agent_cookies)
    await asyncio.sleep(2.0)  # every socket has its first board
    per_round = max(1, int(args.rate * args.seconds))
    agents, states = seeded["agents"], seeded["states"]
    counter = iter(range(10**9))
    floor_rounds, subject_rounds = [], []

    async def floor(round_index):
        tokens = [f"r{round_index}-{i}" for i in range(per_round)]
        sent = await open_loop(per_round, args.rate, lambda i: floor_send(tokens[i]))
        deadline = time.perf_counter() + DRAIN_SECONDS
        while time.perf_counter() < deadline and any(len(sockets.floor[t]) < len(sockets.boards) for t in tokens):
            await asyncio.sleep(0.05)
        latencies = [(sockets.floor[t][s] - at) * 1000 for t, at in zip(tokens, sent) for s in sockets.floor[t]]
        lost = sum(len(sockets.boards) - len(sockets.floor[t]) for t in tokens)
        floor_rounds.append((latencies, lost))
        return percentile(latencies, 95) if latencies else float("inf")

    async def subject(round_index):
        def change(_i):
            n = next(counter)
            return presence_change(agents[n % len(agents)], states[(n // len(agents) + 1) % 2])

        changes = await open_loop(per_round, args.rate, change)
        deadline = time.perf_counter() + DRAIN_SECONDS
        while time.perf_counter() < deadline and board_latencies(sockets, changes)[1]:
            await asyncio.sleep(0.2)
        latencies, lost = board_latencies(sockets, changes)
        subject_rounds.append((latencies, lost))
        for frames in sockets.boards:
            frames.clear()  # matched: the next round starts from new frames
        return percentile(latencies, 95) if latencies else float("inf")

    pairs = await alternate_async(args.rounds, floor, subject)
    await asyncio.sleep(0.5)
    closed = dict(sockets.closed)
    await sockets.close()
    return {"pairs": pairs, "floor": floor_rounds, "subject": subject_rounds, "closed": closed}


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
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.CC_PRODUCTION:
        print("wallboard bench needs production mode (PostgreSQL + Redis, daphne): skipped")
        print(bench_line("wallboard", ratio=0.0, target=TARGET, db="sqlite", skipped=1))
        return 0

    flush_redis()
    database = f"test_{settings.DATABASES['default']['NAME']}_wallboard"
    with bench_database(database) as connection:
        seeded = populate()
        supervisor_cookies = session_cookies(seeded["supervisors"])
        agent_cookies = session_cookies(seeded["agent_users"])
        db_url = database_url(connection)
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        bench_dir = str(REPO / "bench")
        env = dict(os.environ, DATABASE_URL=db_url, CC_EMBEDDED_WORKER="0", ALLOWED_HOSTS="127.0.0.1,localhost",
                   PYTHONPATH=os.pathsep.join(p for p in (bench_dir, str(REPO), os.environ.get("PYTHONPATH", "")) if p))
        env.setdefault("SECRET_KEY", "bench-only-secret-key")
        procs = Processes()
        try:
            daphne = procs.daphne("wallboard-daphne", port=port, application="_wallboard_asgi:application", env=env)
            procs.wait_http(daphne, "wallboard-daphne", base + "/healthz")
            run = asyncio.run(drive(args, base=base, seeded=seeded, supervisor_cookies=supervisor_cookies,
                                    agent_cookies=agent_cookies))
            tracebacks = procs.tracebacks("wallboard-daphne")
        finally:
            procs.stop()
            connection.close()
    flush_redis()

    ratios = RoundRatios([floor for floor, _subject in run["pairs"]], [subject for _floor, subject in run["pairs"]],
                         label="p95 commit → board / p95 bare group_send")
    subject = [ms for latencies, _lost in run["subject"] for ms in latencies]
    floor = [ms for latencies, _lost in run["floor"] for ms in latencies]
    lost = sum(lost for _latencies, lost in run["subject"])
    floor_lost = sum(lost for _latencies, lost in run["floor"])

    def pct(values, q):
        return percentile(values, q) if values else float("nan")

    print(f"database: postgresql ({database}); one daphne; {SUPERVISORS} wallboard sockets, {AGENTS} console sockets; "
          f"{args.rate:g} changes/s, {args.rounds} alternating rounds of {args.seconds:g} s")
    print(ratios.describe())
    print(f"subject: commit → board on every supervisor socket: p50 {pct(subject, 50):.1f} ms, "
          f"p95 {pct(subject, 95):.1f} ms, max {max(subject, default=float('nan')):.1f} ms over {len(subject)} "
          f"(change, socket) pairs; lost {lost}")
    print(f"floor: bare group_send → each socket: p50 {pct(floor, 50):.1f} ms, p95 {pct(floor, 95):.1f} ms; "
          f"lost {floor_lost}")
    print(f"sockets closed by the server: {len(run['closed'])}; daphne tracebacks: {tracebacks}")
    print(bench_line("wallboard", ratio=ratios, target=TARGET, p50_ms=pct(subject, 50), p95_ms=pct(subject, 95),
                     floor_p50_ms=pct(floor, 50), floor_p95_ms=pct(floor, 95), lost=lost, floor_lost=floor_lost,
                     sockets_closed=len(run["closed"]), tracebacks=tracebacks))
    wrong = lost or floor_lost or run["closed"] or tracebacks
    return 1 if wrong else 0


if __name__ == "__main__":
    raise SystemExit(main())
