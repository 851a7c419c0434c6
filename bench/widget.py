"""bench/widget: active widget chats are not slowed by thousands of idle sockets beside them, and
every message is acknowledged exactly once (issue 23).

Set-up (production mode only): a throwaway PostgreSQL database (``test_<database>_widget``), the
Redis database of ``REDIS_URL`` (flushed before and after), one daphne serving the project
(``contactcenter.asgi`` on ``bench/_sockets_settings.py``, the Procfile's listening options). No
Celery worker: what a message enqueues waits in Redis, and the acknowledgement does not wait for it.

ACTIVE widget chats (a socket and a visitor token each, a first message already stored so the
conversation exists) send RATE messages a second between them, open loop, for SECONDS: message
``i`` from chat ``i % ACTIVE``, a new client id each. Latency = the send → the acknowledgement on
the sending socket (the message frame with that client id). Baseline: that load alone. Subject:
the same load with IDLE more widget sockets open (each said hello, then idles). Rounds alternate;
ratio = the median over rounds of p99 subject / p99 baseline; target 3.

Must be zero: ``missing`` (a message never acknowledged within DRAIN_SECONDS), ``duplicates`` (an
acknowledgement twice on the sending socket), ``sockets_closed`` (by the server), ``errors``
(tracebacks in the daphne's log). ``CC_GC_TUNING=0`` in the environment runs the daphne without
the start-up ``gc.freeze()`` and thresholds (contactcenter.gc_tuning), to measure what they do.

Prints ``BENCH widget ratio=… target=3 spread=… rounds=… p50_ms=… p99_ms=… base_p50_ms=…
base_p99_ms=… messages=… missing=0 duplicates=0 sockets_closed=0 errors=0 …``. ``BENCH_SMOKE=1``:
5 chats, 30 idle sockets, 10 messages/s, two rounds of 1 s. Options: ``--active --idle --rate
--seconds --rounds``.
"""

import argparse
import asyncio
import os
import secrets
import time
import uuid
from collections import Counter

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
from _sockets import (
    Crowd,
    daphne_problems,
    flush_redis,
    raise_open_files_limit,
    rss_kib,
    start_daphne,
)

ACTIVE = 5 if SMOKE else 50
IDLE = 30 if SMOKE else 2000
RATE = 10 if SMOKE else 20
SECONDS = 1 if SMOKE else 10
DRAIN_SECONDS = 10 if SMOKE else 30
SETTLE_SECONDS = 0.5 if SMOKE else 8
TARGET = 3.0
WIDGET_KEY = "bench-widget"


def populate() -> None:
    from conversations.models import Channel, Inbox

    Inbox.objects.create(kind=Channel.WEBCHAT, address=WIDGET_KEY, name="Bench widget", settings={})


def acks(crowd: Crowd, index: int, client_id: str) -> list[float]:
    return [at for at, frame in crowd.frames.get(index, ()) if frame.get("type") == "message"
            and frame.get("client_id") == client_id]


async def send_load(crowd: Crowd, active: list, count: int, rate: float) -> list[tuple[int, str, float]]:
    """``count`` messages at ``rate`` a second from the active sockets, open loop."""
    import json

    loop = asyncio.get_running_loop()
    start, sent = loop.time() + 0.05, []
    for i in range(count):
        delay = start + i / rate - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        index = i % len(active)
        client_id = str(uuid.uuid4())
        sent.append((index, client_id, time.perf_counter()))
        await active[index].send_str(json.dumps({"type": "message", "id": client_id, "text": f"bench message {i}"}))
    return sent


async def settle(crowd: Crowd, sent) -> None:
    deadline = time.perf_counter() + DRAIN_SECONDS
    while time.perf_counter() < deadline and any(not acks(crowd, index, cid) for index, cid, _at in sent):
        await asyncio.sleep(0.05)


def figures(crowd: Crowd, sent) -> dict:
    latencies, missing, duplicates = [], 0, 0
    for index, client_id, at in sent:
        arrivals = acks(crowd, index, client_id)
        if not arrivals:
            missing += 1
            continue
        duplicates += len(arrivals) - 1
        latencies.append((arrivals[0] - at) * 1000)
    return {"latencies": latencies, "missing": missing, "duplicates": duplicates}


async def drive(args, *, base: str, daphne_pid: int) -> dict:
    runs = {"baseline": [], "subject": []}
    async with Crowd(base, WIDGET_KEY) as crowd:
        active = await crowd.open([lambda: crowd.widget(secrets.token_urlsafe(32)) for _ in range(args.active)],
                                  record=True)
        first = await send_load(crowd, active, args.active, args.rate)  # every chat's conversation exists
        await settle(crowd, first)
        if figures(crowd, first)["missing"]:
            raise RuntimeError("the first messages were not acknowledged: see var/bench-widget-daphne.log")
        per_round = max(1, int(args.rate * args.seconds))
        idle_crowd = Crowd(base, WIDGET_KEY)
        rss = []

        async def run(kind):
            sent = await send_load(crowd, active, per_round, args.rate)
            await settle(crowd, sent)
            result = figures(crowd, sent)
            runs[kind].append(result)
            return percentile(result["latencies"], 99) if result["latencies"] else float("inf")

        async def baseline(_round):
            return await run("baseline")

        async def subject(_round):
            async with idle_crowd:
                await idle_crowd.open([lambda: idle_crowd.widget(secrets.token_urlsafe(32)) for _ in range(args.idle)])
                await asyncio.sleep(1.0)
                rss.append(rss_kib(daphne_pid))
                try:
                    return await run("subject")
                finally:
                    crowd.closed_by_server.extend(idle_crowd.closed_by_server)
                    await idle_crowd.close_all()
                    # The daphne cleans up after the idle sockets before the next baseline round
                    # (else that round measures the mass disconnect, not the load alone).
                    await asyncio.sleep(SETTLE_SECONDS)

        pairs = await alternate_async(args.rounds, baseline, subject)
        closed = list(crowd.closed_by_server)
    return {"pairs": pairs, "runs": runs, "closed": closed, "rss_kib": max(rss, default=0)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--active", type=int, default=ACTIVE)
    parser.add_argument("--idle", type=int, default=IDLE)
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    raise_open_files_limit()

    import django

    django.setup()
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.CC_PRODUCTION:
        print("widget bench needs production mode (PostgreSQL + Redis, daphne): skipped")
        print(bench_line("widget", ratio=0.0, target=TARGET, db="sqlite", skipped=1))
        return 0

    flush_redis(os.environ["REDIS_URL"])
    database = f"test_{settings.DATABASES['default']['NAME']}_widget"
    gc_tuning = os.environ.get("CC_GC_TUNING", "1") not in ("0", "false", "no", "off")
    with bench_database(database) as connection:
        populate()
        bench_dir = str(REPO / "bench")
        env = dict(os.environ, DATABASE_URL=database_url(connection), CC_EMBEDDED_WORKER="0",
                   ALLOWED_HOSTS="127.0.0.1,localhost", CC_DB_POOL=os.environ.get("CC_DB_POOL", "16"),
                   CC_DB_CONN_MAX_AGE="0", DJANGO_SETTINGS_MODULE="_sockets_settings",
                   PYTHONPATH=os.pathsep.join(p for p in (bench_dir, str(REPO), os.environ.get("PYTHONPATH", "")) if p))
        env.setdefault("SECRET_KEY", "bench-only-secret-key")
        port = free_port()
        procs = Processes()
        try:
            daphne = start_daphne(procs, "widget-daphne", port=port, application="_sockets_project_asgi:application",
                                  env=env)
            run = asyncio.run(drive(args, base=f"http://127.0.0.1:{port}", daphne_pid=daphne.pid))
            errors = daphne_problems(procs, "widget-daphne")
        finally:
            procs.stop()
            connection.close()
    flush_redis(os.environ["REDIS_URL"])

    ratios = RoundRatios([b for b, _s in run["pairs"]], [s for _b, s in run["pairs"]],
                         label="p99 send → ack with idle sockets / without")
    subject = [ms for result in run["runs"]["subject"] for ms in result["latencies"]]
    base = [ms for result in run["runs"]["baseline"] for ms in result["latencies"]]
    every = run["runs"]["subject"] + run["runs"]["baseline"]
    missing = sum(r["missing"] for r in every)
    duplicates = sum(r["duplicates"] for r in every)
    closed = Counter(run["closed"])

    def pct(values, q):
        return percentile(values, q) if values else float("nan")

    print(f"database: postgresql ({database}); one daphne (gc tuning {'on' if gc_tuning else 'off'}); {args.active} "
          f"active chats at {args.rate:g} messages/s; {args.idle} idle sockets beside them in the subject rounds; "
          f"{args.rounds} alternating rounds of {args.seconds:g} s; daphne RSS with idle sockets "
          f"{run['rss_kib'] / 1024:.0f} MiB")
    print(ratios.describe())
    print(f"with idle sockets: p50 {pct(subject, 50):.1f} ms, p99 {pct(subject, 99):.1f} ms, max "
          f"{max(subject, default=float('nan')):.1f} ms; without: p50 {pct(base, 50):.1f} ms, p99 {pct(base, 99):.1f} ms")
    print(f"messages {len(subject) + len(base) + missing}: missing {missing}, duplicate acks {duplicates}; "
          f"closed by the server {dict(closed)}; daphne errors {errors}")
    print(bench_line("widget", ratio=ratios, target=TARGET, p50_ms=pct(subject, 50), p99_ms=pct(subject, 99),
                     base_p50_ms=pct(base, 50), base_p99_ms=pct(base, 99), messages=len(subject) + len(base) + missing,
                     idle=args.idle, gc_tuning=int(gc_tuning), missing=missing, duplicates=duplicates,
                     sockets_closed=sum(closed.values()), errors=errors))
    return 1 if missing or duplicates or closed or errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
