"""PostgreSQL connection options: server-side binding everywhere, prepared statements only on
connections that live on (workers, the pool), where PostgreSQL can then skip planning a statement
it has run before (bench/routing)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

REPO = Path(__file__).resolve().parents[2]


def _database_options(**env) -> dict:
    """The OPTIONS the settings module gives the default database under ``env`` (a fresh process:
    settings are read once)."""
    environment = {key: value for key, value in os.environ.items()
                   if not key.startswith(("CC_DB_", "DATABASE_URL"))}
    environment |= {"DATABASE_URL": "postgres://postgres@127.0.0.1:5432/unused", "SECRET_KEY": "x",
                    "DJANGO_SETTINGS_MODULE": "contactcenter.settings", **env}
    code = ("import json, django; django.setup(); from django.conf import settings; "
            "print(json.dumps(settings.DATABASES['default'].get('OPTIONS', {})))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=environment, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_database_url_that_is_not_postgresql_is_refused_with_the_way_to_sqlite():
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("CC_DB_", "DATABASE_URL"))}
    environment |= {"DATABASE_URL": "sqlite:////tmp/cc.sqlite3", "SECRET_KEY": "x",
                    "DJANGO_SETTINGS_MODULE": "contactcenter.settings"}
    out = subprocess.run([sys.executable, "-c", "import django; django.setup()"], cwd=REPO, env=environment,
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "ImproperlyConfigured: DATABASE_URL must be a PostgreSQL URL (postgres://…), not sqlite://" in out.stderr
    assert "CC_SQLITE_PATH" in out.stderr


def test_a_worker_connection_prepares_statements_it_runs_again():
    options = _database_options(CC_DB_CONN_MAX_AGE="60")
    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] == 1


def test_a_pooled_connection_prepares_too():
    options = _database_options(CC_DB_POOL="8")
    assert options["prepare_threshold"] == 1
    assert options["pool"]["max_size"] == 8


def test_a_connection_closed_after_each_request_prepares_nothing():
    options = _database_options(CC_DB_CONN_MAX_AGE="0")
    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] is None


def test_both_can_be_turned_off_for_a_pooler_that_cannot_keep_prepared_statements():
    options = _database_options(CC_DB_CONN_MAX_AGE="60", CC_DB_SERVER_SIDE_BINDING="0")
    assert "server_side_binding" not in options and "prepare_threshold" not in options


@pytest.mark.django_db(transaction=True)
def test_a_kept_connection_runs_a_routing_statement_prepared_the_second_time(monkeypatch):
    if connection.vendor != "postgresql":
        pytest.skip("production mode only (PostgreSQL + Redis): run by `make test`")
    from django.utils import timezone

    from conversations.models import Queue
    from conversations.routing.eligibility import eligible_agents

    queue = Queue.objects.create(name="Prepared", slug="prepared")
    # What the settings give a worker (CC_DB_CONN_MAX_AGE > 0): the test suite's own connections
    # close after each test, so they are opened without preparing (scripts/test.sh).
    connection.close()
    monkeypatch.setitem(connection.settings_dict["OPTIONS"], "prepare_threshold", 1)
    try:
        for _ in range(2):
            eligible_agents(queue=queue, channel="sms", conversation_id=0, now=timezone.now())
        with connection.cursor() as cursor:
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row[0] for row in cursor.fetchall()]
    finally:
        connection.close()
    assert any("SELECT x.id, x.load, x.room, x.rank" in statement for statement in prepared), prepared
