"""daphne's start-up freezes what it built and raises the collector's thresholds
(contactcenter.gc_tuning; bench/widget measures what it does for active chats beside idle sockets)."""

import gc

import pytest

from contactcenter.gc_tuning import GC_THRESHOLDS, tune_gc_after_start_up


@pytest.fixture
def restored_gc():
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_start_up_objects_are_frozen_out_of_full_collections(restored_gc, monkeypatch):
    monkeypatch.delenv("CC_GC_TUNING", raising=False)
    gc.unfreeze()
    assert tune_gc_after_start_up() is True
    assert gc.get_freeze_count() > 10_000  # Django, the URLconf, the models: never garbage
    assert gc.get_threshold() == GC_THRESHOLDS


def test_cc_gc_tuning_0_leaves_the_collector_alone(restored_gc, monkeypatch):
    monkeypatch.setenv("CC_GC_TUNING", "0")
    gc.unfreeze()
    before = gc.get_threshold()
    assert tune_gc_after_start_up() is False
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_asgi_application_tunes_the_collector_once_started():
    """As daphne imports it: a fresh interpreter, nothing frozen before."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    probe = ("import gc, json, contactcenter.asgi; "
             "print(json.dumps([gc.get_threshold(), gc.get_freeze_count()]))")
    env = {key: value for key, value in os.environ.items() if key != "CC_GC_TUNING"}
    env["CC_EMBEDDED_WORKER"] = "0"
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, timeout=120,
                         cwd=Path(__file__).resolve().parents[2], check=True)
    thresholds, frozen = json.loads(run.stdout.strip().splitlines()[-1])
    assert tuple(thresholds) == GC_THRESHOLDS
    assert frozen > 10_000
