"""Every benchmark under bench/ runs in smoke mode in production-mode CI, so a change that breaks
a bench fails ``make test`` instead of being found weeks later by whoever runs ``make bench``.

Each bench runs as ``make bench`` runs it (a subprocess of ``bench/<name>.py``) with
``BENCH_SMOKE=1``: tiny sizes, two short rounds, its own throwaway databases. Its exit code must be
0 (a bench exits 1 when its correctness figures fail: lost or duplicate messages, double
assignments …) and its last word the ``BENCH <name> ratio=… target=… spread=…`` line, whose
correctness figures are checked here too. The ratio itself is not judged: sizes this small
measure nothing worth comparing.

Isolation from the test run: the benches' PostgreSQL databases are named after the run's
(``test_<db>_bench_smoke`` …; created and dropped by the bench), and they use their own Redis
database (``CC_BENCH_SMOKE_REDIS_URL``, else the run's Redis with the database number below it),
since the benches flush and purge theirs and the test run's worker lives on the run's.
"""

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

pytestmark = pytest.mark.production

REPO = Path(__file__).resolve().parents[2]
BENCHES = sorted(path.stem for path in (REPO / "bench").glob("*.py") if not path.stem.startswith("_"))
CHROMIUM = Path("/usr/bin/chromium")
# Figures a bench's BENCH line must report as zero: what it checks besides its ratio.
MUST_BE_ZERO = {
    "timeline": (),
    "webhook": ("errors", "duplicates", "missing", "failed"),
    "delivery": ("lost", "duplicates", "misrouted", "sockets_closed", "http_errors"),
    "routing": ("double_assignments", "waited", "unserved"),
    "voice": ("errors", "same_position", "wrong_position"),
    "wallboard": ("lost", "floor_lost", "sockets_closed", "tracebacks"),
    "surveys": ("duplicates", "missing"),
    "reports": ("mismatches",),
    "connections": ("errors", "leaked_groups", "sockets_closed", "redis_over_bound"),
    "widget": ("missing", "duplicates", "sockets_closed", "errors"),
}
LINE = re.compile(r"^BENCH (?P<name>\S+) ratio=(?P<ratio>\S+) target=\S+ spread=(?P<low>[\d.]+)-(?P<high>[\d.]+) "
                  r"rounds=(?P<rounds>\d+)(?P<rest>.*)$")


def smoke_environment() -> dict:
    url = urlsplit(os.environ["DATABASE_URL"])
    database = url.path.lstrip("/") or "contactcenter"
    redis_url = os.environ.get("CC_BENCH_SMOKE_REDIS_URL")
    if not redis_url:
        redis = urlsplit(os.environ["REDIS_URL"])
        number = int(redis.path.lstrip("/") or 0)
        redis_url = urlunsplit((redis.scheme, redis.netloc, f"/{(number - 1) % 16}", redis.query, redis.fragment))
    env = dict(os.environ, BENCH_SMOKE="1", REDIS_URL=redis_url, CC_CHANNELS_PREFIX="cc-bench-smoke",
               DATABASE_URL=urlunsplit((url.scheme, url.netloc, f"/{database}_bench_smoke", url.query, url.fragment)),
               BENCH_DELIVERY_REDIS_DB=urlsplit(redis_url).path.lstrip("/") or "0")
    # As `make bench` runs them: each bench chooses its connections' lifetime (routing keeps them).
    env.pop("CC_DB_CONN_MAX_AGE", None)
    return env


def test_the_benches_are_found():
    assert set(BENCHES) >= {"timeline", "routing", "webhook", "delivery", "voice", "reports"}
    assert set(MUST_BE_ZERO) == set(BENCHES), "a new bench: say here which of its figures must be zero"


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", BENCHES)
def test_bench_runs_in_smoke_mode(name):
    run = subprocess.run([sys.executable, f"bench/{name}.py"], check=False, cwd=REPO, env=smoke_environment(),
                         capture_output=True, text=True, timeout=280)
    output = f"--- stdout\n{run.stdout[-6000:]}\n--- stderr\n{run.stderr[-6000:]}"
    assert run.returncode == 0, output
    lines = [line for line in run.stdout.splitlines() if line.startswith("BENCH ")]
    assert len(lines) == 1, output
    match = LINE.match(lines[0])
    assert match and match["name"] == name, output
    figures = dict(part.split("=", 1) for part in match["rest"].split())
    assert figures.get("smoke") == "1" and "skipped" not in figures, output
    assert int(match["rounds"]) >= 2, output
    assert float(match["low"]) <= float(match["ratio"]) <= float(match["high"]), output
    for figure in MUST_BE_ZERO[name]:
        assert figures.get(figure) == "0", f"{figure}={figures.get(figure)}\n{output}"
    if name == "delivery":
        # The first paint needs chromium; without it the bench says NA instead of failing.
        assert (figures["first_paint_ms"] == "NA") is not CHROMIUM.exists(), output
