"""Shared fixtures: named users, factories, and a real Celery worker for either runtime mode."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings

from .factories import *  # noqa: F401,F403 - fixtures re-exported for every test module

REPO = Path(__file__).resolve().parent.parent
PRODUCTION = settings.CC_PRODUCTION


@pytest.fixture(scope="session", autouse=True)
def fast_password_hashing():
    """PBKDF2 at Django's production cost takes about a second per hash on this machine; tests
    that create users do not test the hasher."""
    from django.test import override_settings

    with override_settings(PASSWORD_HASHERS=["django.contrib.auth.hashers.MD5PasswordHasher"]):
        yield


@pytest.fixture(autouse=True)
def _clear_cache():
    """Throttles and rate limits live in the cache: no test inherits another's counters."""
    from django.core.cache import cache

    cache.clear()
    yield


@pytest.fixture(autouse=True)
def _english_after_each_test():
    """A request in Japanese leaves the thread's language active; the next test starts in English."""
    from django.utils import translation

    yield
    translation.activate(settings.LANGUAGE_CODE)


def pytest_collection_modifyitems(config, items):
    skip_prod = pytest.mark.skip(reason="production mode only (PostgreSQL + Redis): run by `make test`")
    skip_emb = pytest.mark.skip(reason="embedded mode only")
    for item in items:
        if "production" in item.keywords and not PRODUCTION:
            item.add_marker(skip_prod)
        if "embedded" in item.keywords and PRODUCTION:
            item.add_marker(skip_emb)


def pytest_report_header(config):
    return f"contact center runtime mode: {settings.CC_MODE}"


def _database_url_for_test_db() -> str:
    from django.db import connection

    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        return ""
    user = db.get("USER") or "postgres"
    password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
    host = db.get("HOST") or "127.0.0.1"
    port = db.get("PORT") or 5432
    return f"postgres://{user}{password}@{host}:{port}/{db['NAME']}"


# The test worker consumes its own queue: tasks that other tests enqueue as a side effect (routing
# after every ingested message …) stay on the default queue, so a worker started for one test
# never works on another test's rows or races the database flush between tests.
WORKER_QUEUE = "cc-test-worker"


class EmbeddedWorker:
    """The same in-process worker thread ``make run`` uses (contactcenter.embedded)."""

    def __init__(self):
        from contactcenter import embedded

        self._embedded = embedded
        self.worker = embedded.start_worker(with_beat=False, queues=[WORKER_QUEUE])
        self.nodename = None

    def stop(self):
        self._embedded.stop_worker()


class ProcessWorker:
    """A real ``celery worker`` process on Redis, pointed at the test database."""

    def __init__(self):
        env = dict(os.environ)
        env["DATABASE_URL"] = _database_url_for_test_db()
        env["CC_EMBEDDED_WORKER"] = "0"
        self.log = open(REPO / "var" / f"test-worker-{os.getpid()}.log", "w")  # noqa: SIM115
        self.process = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "contactcenter", "worker", "-P", "threads", "-c", "4",
             "--without-gossip", "--without-mingle", "--without-heartbeat", "-l", "WARNING",
             "-Q", WORKER_QUEUE, "-n", f"test-{os.getpid()}@%h"],
            cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT,
        )

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
        self.log.close()


@pytest.fixture(scope="session")
def _session_worker(django_db_setup, django_db_blocker):
    (REPO / "var").mkdir(exist_ok=True)
    worker = ProcessWorker() if PRODUCTION else EmbeddedWorker()
    yield worker
    worker.stop()


@pytest.fixture
def celery_worker(_session_worker):
    """A worker consuming the broker of the current mode. Tests using it need
    ``@pytest.mark.django_db(transaction=True)`` so the worker sees committed rows. Tasks sent
    during the test go to the worker's queue; afterwards the queue is purged and the worker is
    given time to finish what it holds before the database is flushed."""
    from contactcenter.celery import app

    previous = app.conf.task_default_queue
    app.conf.task_default_queue = WORKER_QUEUE
    try:
        yield _session_worker
    finally:
        app.conf.task_default_queue = previous
        _drain_worker_queue(app)


def _drain_worker_queue(app) -> None:
    with app.connection_for_write() as connection:
        try:
            connection.default_channel.queue_purge(WORKER_QUEUE)
        except Exception:  # noqa: BLE001 - queue not declared yet
            pass
    # Tasks already taken by the worker finish within their own (short) run time.
    time.sleep(1.0 if PRODUCTION else 0.3)


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.05):
    """Poll ``predicate`` until it is truthy; return its value or fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s")
        time.sleep(interval)
