"""Shared set-up for benchmarks: Django on a throwaway database, timing helpers, the BENCH line."""

import os
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings")
os.environ.setdefault("CC_EMBEDDED_WORKER", "0")


@contextmanager
def bench_database():
    """A fresh test database (``test_<name>``), migrated, destroyed afterwards."""
    import django

    django.setup()
    from django.db import connection
    from django.test.utils import setup_test_environment, teardown_test_environment

    setup_test_environment()
    old_name = connection.settings_dict["NAME"]
    connection.creation.create_test_db(verbosity=0, autoclobber=True, keepdb=False)
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


def bench_line(name: str, *, ratio: float, target: float, **figures) -> str:
    parts = [f"BENCH {name}", f"ratio={ratio:.2f}", f"target={target:g}"]
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


def free_port() -> int:
    """A TCP port on 127.0.0.1 nobody listens on right now (for a server a benchmark starts)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
