"""The runtime modes: tasks travel through a real broker to a real worker, and beat ticks."""

import os
import subprocess
import sys
import uuid

import pytest
from django.conf import settings
from django.db import transaction

from contactcenter.celery import app
from contactcenter.models import WorkerHeartbeat
from contactcenter.tasks import record_heartbeat, tick

from ..conftest import REPO, _database_url_for_test_db, wait_for

pytestmark = pytest.mark.django_db(transaction=True)


def test_mode_matches_environment():
    if os.environ.get("DATABASE_URL") and os.environ.get("REDIS_URL"):
        assert settings.CC_MODE == "production"
        assert settings.DATABASES["default"]["ENGINE"].endswith("postgresql")
        assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "contactcenter.redis_pools.BoundedRedisChannelLayer"
        assert app.conf.broker_url.startswith("redis://")
    else:
        assert settings.CC_MODE == "embedded"
        assert settings.DATABASES["default"]["ENGINE"].endswith("sqlite3")
        assert settings.CHANNEL_LAYERS["default"]["BACKEND"] == "channels.layers.InMemoryChannelLayer"
        assert app.conf.broker_url == "memory://"


def test_queued_task_runs_through_a_worker_not_eagerly(celery_worker):
    assert not app.conf.task_always_eager
    token = uuid.uuid4().hex
    result = record_heartbeat.delay(token=token)
    # Nothing ran in this thread: the task is a message on the broker until a worker takes it.
    assert result.id
    wait_for(lambda: WorkerHeartbeat.objects.filter(token=token).exists())


def test_task_from_a_rolled_back_transaction_is_never_sent(celery_worker):
    dropped, kept = uuid.uuid4().hex, uuid.uuid4().hex
    with pytest.raises(RuntimeError):
        with transaction.atomic():
            record_heartbeat.delay_on_commit(token=dropped)
            raise RuntimeError("rollback")
    with transaction.atomic():
        record_heartbeat.delay_on_commit(token=kept)
    wait_for(lambda: WorkerHeartbeat.objects.filter(token=kept).exists())
    assert not WorkerHeartbeat.objects.filter(token=dropped).exists()


def test_tick_task_runs_registered_jobs(celery_worker):
    tick.delay()
    wait_for(lambda: WorkerHeartbeat.objects.filter(token="tick").exists())


def test_beat_schedules_tick_every_few_seconds():
    entry = settings.CELERY_BEAT_SCHEDULE["tick"]
    assert entry["task"] == "contactcenter.tick"
    assert 0 < entry["schedule"] <= 10


@pytest.mark.embedded
def test_embedded_beat_thread_sends_tick_to_the_embedded_worker(celery_worker):
    from celery import beat

    app.conf.beat_schedule = {"tick": {"task": "contactcenter.tick", "schedule": 0.5}}
    service = beat.EmbeddedService(app, thread=True, scheduler_cls="celery.beat:Scheduler")
    service.start()
    try:
        wait_for(lambda: WorkerHeartbeat.objects.filter(token="tick").exists())
    finally:
        service.stop()
        app.conf.beat_schedule = settings.CELERY_BEAT_SCHEDULE


@pytest.mark.production
def test_beat_process_drives_tick_through_the_worker_process(celery_worker, tmp_path):
    from ..conftest import WORKER_QUEUE

    env = dict(os.environ, DATABASE_URL=_database_url_for_test_db(), CC_TICK_SECONDS="1", CC_CELERY_QUEUE=WORKER_QUEUE)
    beat = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "contactcenter", "beat", "-l", "WARNING",
         "-s", str(tmp_path / "beat-schedule")],
        cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        wait_for(lambda: WorkerHeartbeat.objects.filter(token="tick").exists(), timeout=30)
    finally:
        beat.terminate()
        beat.wait(timeout=10)


@pytest.mark.django_db(transaction=False)
def test_procfile_declares_every_production_process_and_honcho_accepts_it():
    procfile = (REPO / "Procfile").read_text()
    processes = dict(line.split(":", 1) for line in procfile.splitlines() if line.strip())
    assert set(processes) == {"web", "worker", "beat", "smtp"}
    assert "daphne" in processes["web"] and "contactcenter.asgi:application" in processes["web"]
    assert "celery -A contactcenter worker" in processes["worker"]
    assert "celery -A contactcenter beat" in processes["beat"]
    assert "manage.py smtpd" in processes["smtp"]
    # daphne never rewrites the client's address (its --proxy-headers takes the left-most, forgeable
    # X-Forwarded-For entry): behind a proxy, contactcenter.client_address picks the proxy's own hop.
    for proxied in (True, False):
        env = {"PATH": "/usr/bin:/bin", **({"CC_PROXY_HEADERS": "1"} if proxied else {})}
        expanded = subprocess.run(["sh", "-c", f"echo {processes['web'].strip()}"], capture_output=True, text=True,
                                  env=env, check=True).stdout
        assert "--proxy-headers" not in expanded.split(), expanded
    checked = subprocess.run([sys.executable, "-m", "honcho", "-f", str(REPO / "Procfile"), "check"],
                             capture_output=True, text=True, cwd=REPO)
    assert checked.returncode == 0, checked.stderr
