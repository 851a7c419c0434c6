"""bench/_harness.py's alternating rounds: the order they run in and the figure a bench reports."""

import importlib.util
import os
import sys
from pathlib import Path

import pytest

_spec = importlib.util.spec_from_file_location("bench_harness", Path(__file__).resolve().parents[2] / "bench" / "_harness.py")
harness = importlib.util.module_from_spec(_spec)
# The harness sets up a bench process (sys.path, environment defaults): none of it may outlive the import here.
_environ, _path = dict(os.environ), list(sys.path)
try:
    _spec.loader.exec_module(harness)
finally:
    os.environ.clear()
    os.environ.update(_environ)
    sys.path[:] = _path


def test_alternate_runs_baseline_then_subject_round_after_round():
    calls = []
    pairs = harness.alternate(3, lambda i: calls.append(("baseline", i)) or 10 + i,
                              lambda i: calls.append(("subject", i)) or 20 + i)
    assert calls == [("baseline", 0), ("subject", 0), ("baseline", 1), ("subject", 1), ("baseline", 2), ("subject", 2)]
    assert pairs == [(10, 20), (11, 21), (12, 22)]


async def test_alternate_async_keeps_the_same_order():
    calls = []

    async def side(name, i):
        calls.append((name, i))
        return i

    await harness.alternate_async(2, lambda i: side("baseline", i), lambda i: side("subject", i))
    assert calls == [("baseline", 0), ("subject", 0), ("baseline", 1), ("subject", 1)]


def test_one_noisy_baseline_round_does_not_decide_the_ratio():
    # The webhook's story: the baseline's p99 read 18 ms in one stretch and 6 ms in another.
    ratios = harness.RoundRatios([6.0, 6.0, 18.0, 6.0, 6.0], [12.0, 13.0, 12.0, 12.6, 11.4], label="p99")
    assert ratios.median == pytest.approx(2.0)
    assert (ratios.low, ratios.high) == (pytest.approx(12 / 18), pytest.approx(13 / 6))
    line = harness.bench_line("webhook", ratio=ratios, target=3, errors=0)
    assert line.startswith("BENCH webhook ratio=2.00 target=3 spread=0.67-2.17 rounds=5 ")
    assert line.endswith(" errors=0")


def test_the_worse_comparison_is_the_one_with_the_higher_median():
    first = harness.RoundRatios([1, 1, 1], [3, 1, 1], label="first")  # one bad round: median 1
    deep = harness.RoundRatios([1, 1, 1], [2, 2, 2], label="deep")
    assert harness.RoundRatios.worst(first, deep) is deep


def test_rounds_must_pair_up():
    with pytest.raises(ValueError):
        harness.RoundRatios([1.0, 2.0], [1.0])
