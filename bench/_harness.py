"""Shared set-up for benchmarks: Django on a throwaway database, timing helpers, the BENCH line,
baseline and subject measured in alternating rounds, and the smoke mode.

Smoke mode (``BENCH_SMOKE=1``, run by ``make test`` in production mode through
``tests/bench/test_bench_smoke.py``): every bench runs its whole path at tiny sizes in a few
seconds, still checks its correctness figures (lost, duplicates, double assignments …) and exits 1
when they are wrong, still prints its ``BENCH`` line (with ``smoke=1``), but its ratio judges
nothing: sizes that small measure nothing worth comparing.
"""

import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings")
os.environ.setdefault("CC_EMBEDDED_WORKER", "0")

SMOKE = os.environ.get("BENCH_SMOKE", "") not in ("", "0")
# Short alternating rounds: one noisy phase (another process's burst, the hypervisor taking the CPUs)
# moves one round's ratio, not the median of ROUNDS of them.
ROUNDS = 2 if SMOKE else 5


@contextmanager
def bench_database(name: str | None = None):
    """A fresh test database (``test_<name>``, or ``name`` when given), migrated, destroyed afterwards."""
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    if name:
        connection.settings_dict.setdefault("TEST", {})["NAME"] = name
    # serialize=False: nothing here rolls back to the migrated state, so its JSON dump is wasted time.
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False, serialize=False)
    try:
        yield connection
    finally:
        connection.creation.destroy_test_db(old_name, verbosity=0)
        teardown_test_environment()


def median_ms(fn: Callable[[], object], *, repeat: int = 40, warmup: int = 5) -> float:
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


class RoundRatios:
    """Per-round ratios subject / baseline of a bench measured in alternating rounds: the figure a
    bench reports is their median, with their spread (min-max), so one noisy round cannot decide
    a run. ``label`` names what was compared (``first page``, ``arrivals`` …)."""

    def __init__(self, baselines: list[float], subjects: list[float], label: str = ""):
        if not baselines or len(baselines) != len(subjects):
            raise ValueError(f"need as many baseline as subject rounds, at least one ({len(baselines)}, {len(subjects)})")
        self.baselines, self.subjects, self.label = list(baselines), list(subjects), label
        self.ratios = [s / b if b else float("inf") for b, s in zip(self.baselines, self.subjects, strict=True)]

    @property
    def median(self) -> float:
        return statistics.median(self.ratios)

    @property
    def low(self) -> float:
        return min(self.ratios)

    @property
    def high(self) -> float:
        return max(self.ratios)

    @property
    def spread(self) -> str:
        return f"{self.low:.2f}-{self.high:.2f}"

    def describe(self, unit: str = "ms") -> str:
        rounds = ", ".join(f"{s:.1f}/{b:.1f} {unit}" for b, s in zip(self.baselines, self.subjects, strict=True))
        return (f"{self.label + ': ' if self.label else ''}x{self.median:.2f} median of {len(self.ratios)} rounds "
                f"(spread {self.spread}; subject/baseline per round: {rounds})")

    @staticmethod
    def worst(*many: "RoundRatios") -> "RoundRatios":
        """The comparison with the highest median (a bench whose ratio is the worse of two)."""
        return max(many, key=lambda r: r.median)


def alternate(rounds: int, baseline: Callable[[int], object], subject: Callable[[int], object]) -> list[tuple]:
    """Run ``baseline(i)`` then ``subject(i)`` for each round ``i`` (baseline, subject, baseline,
    subject …) and return the ``(baseline result, subject result)`` pairs: both sides see the same
    stretches of the machine's time, so a slow minute lands on both instead of on one phase."""
    pairs = []
    for i in range(rounds):
        pairs.append((baseline(i), subject(i)))
    return pairs


async def alternate_async(rounds: int, baseline, subject) -> list[tuple]:
    """``alternate`` for coroutines (a bench whose client is one event loop): ``await baseline(i)``
    then ``await subject(i)``, round after round."""
    pairs = []
    for i in range(rounds):
        pairs.append((await baseline(i), await subject(i)))
    return pairs


def bench_line(name: str, *, ratio: "float | RoundRatios", target: float, **figures) -> str:
    """``BENCH <name> ratio=<r> target=<t> [spread=<min>-<max> rounds=<n>] <figure>=<value> … [smoke=1]``;
    given a ``RoundRatios``, ratio is the median of the per-round ratios and spread their range."""
    if isinstance(ratio, RoundRatios):
        parts = [f"BENCH {name}", f"ratio={ratio.median:.2f}", f"target={target:g}", f"spread={ratio.spread}",
                 f"rounds={len(ratio.ratios)}"]
    else:
        parts = [f"BENCH {name}", f"ratio={ratio:.2f}", f"target={target:g}"]
    if SMOKE:
        figures = {**figures, "smoke": 1}
    for key, value in figures.items():
        parts.append(f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}")
    return " ".join(parts)


def database_url(connection) -> str:
    """A ``DATABASE_URL`` for the database ``connection`` is on now (e.g. the bench test database),
    for worker processes started by a benchmark; "" on SQLite (same as tests/conftest.py)."""
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return ""
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..100) of a non-empty sequence."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), -(-len(ordered) * q // 100)))
    return ordered[int(rank) - 1]


class MachineCpu:
    """What the whole machine's CPUs did between ``start()`` and ``stop()`` (Linux ``/proc/stat``),
    so a report can say whether a slow phase had the CPUs to itself: ``busy_pct`` is every
    process's share (the bench's own included), ``steal_pct`` the time the hypervisor gave the
    virtual CPUs to someone else, which no code of ours can win back. Both in percent of all
    CPUs; None where ``/proc/stat`` is missing."""

    def __init__(self):
        self._start = self._read()
        self.busy_pct: float | None = None
        self.steal_pct: float | None = None

    @staticmethod
    def _read() -> list[int] | None:
        try:
            with open("/proc/stat") as stat:
                fields = stat.readline().split()
        except OSError:
            return None
        if not fields or fields[0] != "cpu":
            return None
        # user nice system idle iowait irq softirq steal (guest time is already in user/nice).
        return [int(value) for value in fields[1:9]] + [0] * max(0, 9 - len(fields))

    def stop(self) -> "MachineCpu":
        end = self._read()
        if self._start is not None and end is not None:
            delta = [b - a for a, b in zip(self._start, end, strict=False)]
            total = sum(delta)
            if total > 0:
                idle = delta[3] + delta[4]
                self.steal_pct = 100 * delta[7] / total
                self.busy_pct = 100 * (total - idle - delta[7]) / total
        return self

    @classmethod
    def average(cls, parts: list["MachineCpu"]) -> "MachineCpu":
        """The mean of several measured stretches (a phase run in rounds), each weighing the same."""
        whole = cls.__new__(cls)
        whole._start = None
        measured = [part for part in parts if part.busy_pct is not None]
        whole.busy_pct = statistics.mean(p.busy_pct for p in measured) if measured else None
        whole.steal_pct = statistics.mean(p.steal_pct for p in measured) if measured else None
        return whole

    def describe(self) -> str:
        if self.busy_pct is None:
            return "machine CPU n/a"
        return f"machine CPU busy {self.busy_pct:.0f}%, stolen by the hypervisor {self.steal_pct:.1f}%"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (for a server a benchmark starts)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- child processes (daphne, celery worker) -------------------------------------------------------

def with_redis_db(url: str, db: int) -> str:
    """``url`` (``redis://host:port/n``) pointed at database ``db`` instead: a benchmark's own keys."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, f"/{db}", parts.query, parts.fragment))


def celery_queues(app) -> list[str]:
    """Every queue the project's tasks can be sent to: the default queue, declared queues, routed
    queues and per-task ``queue=`` options, so a worker started with ``-Q`` consumes them all
    (``-Q`` is needed: a queue only named in ``task_routes`` is not consumed by default)."""
    app.loader.import_default_modules()
    names = {app.conf.task_default_queue}
    names.update(queue.name for queue in app.conf.task_queues or ())
    routes = app.conf.task_routes or ()
    for table in [routes] if isinstance(routes, dict) else routes:
        if isinstance(table, dict):
            for route in table.values():
                queue = route.get("queue") if isinstance(route, dict) else route if isinstance(route, str) else None
                names.add(getattr(queue, "name", queue))
    names.update(task.queue for task in app.tasks.values() if getattr(task, "queue", None))
    return sorted(str(name) for name in names if name)


class Processes:
    """Child processes a benchmark starts, each logging to ``var/bench-<log>.log``; ``stop()`` ends them."""

    def __init__(self):
        self.procs: list[tuple[str, subprocess.Popen, object]] = []

    def start(self, log: str, argv: list[str], env: dict) -> subprocess.Popen:
        (REPO / "var").mkdir(exist_ok=True)
        out = open(REPO / "var" / f"bench-{log}.log", "w")  # noqa: SIM115 - closed in stop()
        proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        self.procs.append((log, proc, out))
        return proc

    def daphne(self, log: str, *, port: int, application: str, env: dict) -> subprocess.Popen:
        return self.start(log, [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), application], env)

    def celery_worker(self, log: str, *, node: str, env: dict, concurrency: int, queues: list[str],
                      pool: str = "threads", prefix: tuple[str, ...] = ()) -> subprocess.Popen:
        """A worker as the Procfile runs one, minus beat and the gossip it does not need here.
        ``prefix``: a command it runs under (``chrt --idle 0``, ``nice -n 19``)."""
        return self.start(log, [
            *prefix, sys.executable, "-m", "celery", "-A", "contactcenter", "worker", "-P", pool, "-c", str(concurrency),
            "-Q", ",".join(queues), "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
            "-n", f"{node}@%h",
        ], env)

    def log_text(self, log: str) -> str:
        return (REPO / "var" / f"bench-{log}.log").read_text(errors="replace")

    def tracebacks(self, log: str) -> int:
        return self.log_text(log).count("Traceback (most recent call last)")

    def _check(self, proc, log: str) -> None:
        if proc.poll() is not None:
            raise RuntimeError(f"{log} exited with {proc.returncode}; see var/bench-{log}.log")

    def wait_http(self, proc, log: str, url: str, timeout: float = 60) -> None:
        """Until ``url`` gives any HTTP answer (Django is serving)."""
        from urllib.error import HTTPError, URLError
        from urllib.request import urlopen

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check(proc, log)
            try:
                urlopen(url, timeout=2).close()  # noqa: S310 - a local server this benchmark started
                return
            except HTTPError:
                return
            except (URLError, OSError):
                time.sleep(0.2)
        raise RuntimeError(f"{log} did not answer in {timeout:g} s; see var/bench-{log}.log")

    def wait_celery(self, proc, log: str, app, node: str, timeout: float = 60) -> None:
        """Until the worker named ``node`` answers a broadcast ping."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._check(proc, log)
            replies = app.control.ping(timeout=1.0) or []
            if any(name.split("@")[0] == node for reply in replies for name in reply):
                return
        raise RuntimeError(f"{log} did not answer ping in {timeout:g} s; see var/bench-{log}.log")

    def stop(self) -> None:
        for _log, proc, _out in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for _log, proc, out in self.procs:
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            out.close()
        self.procs.clear()
