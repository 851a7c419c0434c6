"""bench/connections: thousands of idle sockets on one daphne, all closed at once, all back within
seconds, against a bare Channels consumer on the same stack (issue 23).

Set-up (production mode only): a throwaway PostgreSQL database (``test_<database>_connections``)
and the Redis database of ``REDIS_URL`` (flushed before and after). Each side runs in a daphne of
its own, started fresh each round with the Procfile's options (``-e tcp:…:backlog=2048
--websocket_connect_timeout 30``) and its own channel-layer prefix:

* subject: the project (``contactcenter.asgi`` on ``bench/_sockets_settings.py``: the widget's
  per-address limits lifted, since every simulated visitor comes from 127.0.0.1);
* baseline: ``bench/_sockets_asgi.py``, a bare Channels consumer that joins one group per socket,
  answers the widget's hello with a history and a status frame and greets a console.

Per round and side: WIDGETS widget sockets (each a new visitor token, a hello, idle) and CONSOLES
console sockets (CONSOLES sessions of AGENTS agents) are opened, 100 handshakes at a time; after
IDLE_SECONDS the daphne's RSS over its RSS before any socket, per socket, and its Redis
connections (from /proc) are read. Then every socket closes at once (the client's close
handshakes together), the layer's group memberships must drop to zero (``leaked_groups``: what
is left after 20 s); then every socket reconnects, each at a random moment within
RECONNECT_WINDOW seconds (a restart's reconnect storm, no gate): ``reconnect_s`` is the time from
the first attempt until the last socket is greeted; refused or reset handshakes are retried and
counted (``resets``). Finally all close again and must leave nothing.

Ratios (median over rounds, subject / baseline): ``ratio`` = reconnect time, target 3;
``rss_ratio`` = RSS per socket, target 1.5. Must be zero: ``errors`` (tracebacks or groups a
consumer could not leave, in the daphne's log), ``leaked_groups``, ``sockets_closed`` (by the
server), ``redis_over_bound`` (the project daphne's Redis connections beyond what its pools allow:
``CC_CACHE_MAX_CONNECTIONS`` + 2 × ``CC_CHANNELS_MAX_CONNECTIONS``, the layer's pool on daphne's
loop and on the publisher's, + 4).

Prints ``BENCH connections ratio=… target=3 spread=… rounds=… rss_ratio=… rss_target=1.5
rss_per_socket_kib=… bare_rss_per_socket_kib=… reconnect_s=… bare_reconnect_s=… redis_clients=…
errors=0 leaked_groups=0 sockets_closed=0 redis_over_bound=0 …``. ``BENCH_SMOKE=1``: 40 widgets,
6 consoles, a 1 s window, two rounds. Options: ``--widgets N --consoles N --rounds N``.
"""

import argparse
import asyncio
import os
import random
import secrets
import statistics
import time

from _harness import (
    REPO,
    SMOKE,
    Processes,
    RoundRatios,
    bench_database,
    bench_line,
    database_url,
    free_port,
)
from _sockets import (
    Crowd,
    daphne_problems,
    flush_redis,
    group_memberships,
    raise_open_files_limit,
    redis_connections,
    rss_kib,
    start_daphne,
)

WIDGETS = 40 if SMOKE else 5000
CONSOLES = 6 if SMOKE else 200
AGENTS = 3 if SMOKE else 20
IDLE_SECONDS = 1 if SMOKE else 5
RECONNECT_WINDOW = 1.0 if SMOKE else 10.0
CLEANUP_WAIT_SECONDS = 20
ROUNDS = 2
TARGET = 3.0
RSS_TARGET = 1.5
WIDGET_KEY = "bench-widget"


def populate() -> list[str]:
    """The widget inbox (any site may embed it) and CONSOLES signed-in sessions of AGENTS agents."""
    from django.conf import settings
    from django.contrib.auth.models import Group, User
    from django.test import Client

    from conversations.models import Agent, Channel, Inbox

    Inbox.objects.create(kind=Channel.WEBCHAT, address=WIDGET_KEY, name="Bench widget", settings={})
    group = Group.objects.get(name="agent")
    users = []
    for i in range(AGENTS):
        user = User.objects.create_user(username=f"agent{i}", password="x")
        user.groups.add(group)
        Agent.objects.create(user=user, display_name=f"Agent {i}")
        users.append(user)
    cookies = []
    for i in range(CONSOLES):
        client = Client()
        client.force_login(users[i % AGENTS])
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    return cookies


async def _until(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        await asyncio.sleep(0.25)


async def one_side(args, *, label: str, application: str, env: dict, cookies: list[str]) -> dict:
    """One daphne, fresh: open, idle, close all, reconnect storm, close all. Its figures."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    prefix = env["CC_CHANNELS_PREFIX"]
    redis_url = env["REDIS_URL"]
    procs = Processes()
    log = f"connections-{label}"
    try:
        daphne = await asyncio.to_thread(start_daphne, procs, log, port=port, application=application, env=env)
        await asyncio.sleep(1.0)
        rss_before = rss_kib(daphne.pid)
        sockets = args.widgets + args.consoles
        figures = {"closed": []}
        async with Crowd(base, WIDGET_KEY) as crowd:
            def openers():
                return ([lambda: crowd.widget(secrets.token_urlsafe(32)) for _ in range(args.widgets)]
                        + [lambda c=c: crowd.console(c) for c in cookies[:args.consoles]])

            started = time.perf_counter()
            await crowd.open(openers())
            figures["open_s"] = time.perf_counter() - started
            await asyncio.sleep(IDLE_SECONDS)
            figures["rss_per_socket_kib"] = max(0, rss_kib(daphne.pid) - rss_before) / sockets
            figures["rss_mib"] = rss_kib(daphne.pid) / 1024
            redis_peak = redis_connections(daphne.pid)

            await crowd.close_all()  # every socket at once
            await _until(lambda: group_memberships(redis_url, prefix) == 0, CLEANUP_WAIT_SECONDS)
            leaked = group_memberships(redis_url, prefix)

            # The storm: every socket back, each at a random moment of the window, no gate.
            async def later(opener):
                await asyncio.sleep(random.uniform(0, args.window))
                return await opener()

            resets_before = crowd.resets
            started = time.perf_counter()
            await crowd.open([lambda o=o: later(o) for o in openers()], gate=None)
            figures["reconnect_s"] = time.perf_counter() - started
            figures["resets"] = crowd.resets - resets_before
            await asyncio.sleep(1.0)
            redis_peak = max(redis_peak, redis_connections(daphne.pid))
            figures["closed"] = list(crowd.closed_by_server)
            await crowd.close_all()
            await _until(lambda: group_memberships(redis_url, prefix) == 0, CLEANUP_WAIT_SECONDS)
            leaked += group_memberships(redis_url, prefix)
        figures["redis_clients"] = redis_peak
        figures["leaked_groups"] = leaked
        await asyncio.sleep(0.5)
        figures["errors"] = daphne_problems(procs, log)
        return figures
    finally:
        await asyncio.to_thread(procs.stop)


async def drive(args, *, env: dict, cookies: list[str]) -> list[tuple[dict, dict]]:
    pairs = []
    for round_index in range(args.rounds):
        bare = await one_side(args, label=f"bare-{round_index}", application="_sockets_asgi:application",
                              env=dict(env, CC_CHANNELS_PREFIX="cc-bench-bare"), cookies=cookies)
        project = await one_side(args, label=f"project-{round_index}", application="_sockets_project_asgi:application",
                                 env=dict(env, CC_CHANNELS_PREFIX="cc-bench-project"), cookies=cookies)
        print(f"round {round_index + 1}: project {fmt(project)}; bare {fmt(bare)}", flush=True)
        pairs.append((bare, project))
    return pairs


def fmt(side: dict) -> str:
    return (f"open {side['open_s']:.1f} s, {side['rss_per_socket_kib']:.1f} KiB/socket (RSS {side['rss_mib']:.0f} MiB), "
            f"reconnect {side['reconnect_s']:.1f} s ({side['resets']} resets), Redis connections {side['redis_clients']}, "
            f"leaked groups {side['leaked_groups']}, errors {side['errors']}, closed by server {len(side['closed'])}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--widgets", type=int, default=WIDGETS)
    parser.add_argument("--consoles", type=int, default=CONSOLES)
    parser.add_argument("--window", type=float, default=RECONNECT_WINDOW, help="seconds the reconnects spread over")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    open_files = raise_open_files_limit()

    import django

    django.setup()
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.CC_PRODUCTION:
        print("connections bench needs production mode (PostgreSQL + Redis, daphne): skipped")
        print(bench_line("connections", ratio=0.0, target=TARGET, db="sqlite", skipped=1))
        return 0

    flush_redis(os.environ["REDIS_URL"])
    database = f"test_{settings.DATABASES['default']['NAME']}_connections"
    with bench_database(database) as connection:
        cookies = populate()
        bench_dir = str(REPO / "bench")
        env = dict(os.environ, DATABASE_URL=database_url(connection), CC_EMBEDDED_WORKER="0",
                   ALLOWED_HOSTS="127.0.0.1,localhost", CC_DB_POOL=os.environ.get("CC_DB_POOL", "16"),
                   CC_DB_CONN_MAX_AGE="0", DJANGO_SETTINGS_MODULE="_sockets_settings",
                   PYTHONPATH=os.pathsep.join(p for p in (bench_dir, str(REPO), os.environ.get("PYTHONPATH", "")) if p))
        env.setdefault("SECRET_KEY", "bench-only-secret-key")
        try:
            pairs = asyncio.run(drive(args, env=env, cookies=cookies))
        finally:
            connection.close()
    flush_redis(os.environ["REDIS_URL"])

    reconnect = RoundRatios([b["reconnect_s"] for b, _p in pairs], [p["reconnect_s"] for _b, p in pairs],
                            label="reconnect storm, project / bare")
    rss = RoundRatios([max(b["rss_per_socket_kib"], 0.1) for b, _p in pairs],
                      [p["rss_per_socket_kib"] for _b, p in pairs], label="RSS per socket, project / bare")
    project = [p for _b, p in pairs]
    bound = (int(os.environ.get("CC_CACHE_MAX_CONNECTIONS", "50")) + 2 * int(os.environ.get("CC_CHANNELS_MAX_CONNECTIONS", "100"))
             + 4)
    redis_clients = max(p["redis_clients"] for p in project)
    errors = sum(p["errors"] for p in project)
    leaked = sum(p["leaked_groups"] for p in project)
    closed = sum(len(p["closed"]) for p in project)
    bare_errors = sum(b["errors"] + b["leaked_groups"] for b, _p in pairs)

    def median(key, sides):
        return statistics.median(side[key] for side in sides)

    print(f"database: postgresql ({database}); one daphne per side; {args.widgets} widget + {args.consoles} console "
          f"sockets; reconnects spread over {args.window:g} s; {args.rounds} rounds; open files limit {open_files}")
    print(reconnect.describe(unit="s"))
    print(rss.describe(unit="KiB"))
    print(f"project Redis connections at most {redis_clients} (bound {bound}) for {args.widgets + args.consoles} sockets; "
          f"errors {errors}, leaked groups {leaked}, closed by the server {closed}; bare errors+leaks {bare_errors}")
    print(bench_line(
        "connections", ratio=reconnect, target=TARGET, rss_ratio=rss.median, rss_target=RSS_TARGET,
        rss_per_socket_kib=median("rss_per_socket_kib", project),
        bare_rss_per_socket_kib=median("rss_per_socket_kib", [b for b, _p in pairs]),
        reconnect_s=median("reconnect_s", project), bare_reconnect_s=median("reconnect_s", [b for b, _p in pairs]),
        open_s=median("open_s", project), resets=sum(p["resets"] for p in project), redis_clients=redis_clients,
        sockets=args.widgets + args.consoles, errors=errors, leaked_groups=leaked, sockets_closed=closed,
        redis_over_bound=max(0, redis_clients - bound)))
    return 1 if errors or leaked or closed or redis_clients > bound else 0


if __name__ == "__main__":
    raise SystemExit(main())
