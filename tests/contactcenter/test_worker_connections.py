"""Workers keep their database connection between tasks (CC_DB_CONN_MAX_AGE), as Django keeps it
between requests: Celery's Django fixup would otherwise close it before and after every task."""

import time

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.db import connection

from contactcenter.celery import app, close_old_database_connections

pytestmark = pytest.mark.django_db(transaction=True)


def _open_connection():
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    assert connection.connection is not None


def test_celerys_fixup_leaves_the_connection_to_djangos_rule():
    _open_connection()
    DjangoWorkerFixup(app).close_database()  # what the worker runs before and after each task
    assert connection.connection is not None


def test_a_connection_is_kept_for_conn_max_age_and_closed_after(monkeypatch):
    _open_connection()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    connection.close_at = time.monotonic() + 60
    close_old_database_connections()
    assert connection.connection is not None
    connection.close_at = time.monotonic() - 1  # CONN_MAX_AGE is over
    close_old_database_connections()
    assert connection.connection is None


def test_a_connection_broken_by_an_error_is_replaced(monkeypatch):
    _open_connection()
    connection.close_at = time.monotonic() + 60
    connection.errors_occurred = True
    monkeypatch.setattr(connection, "is_usable", lambda: False)
    close_old_database_connections()
    assert connection.connection is None
