"""PostgreSQL unreachable: requests fail at once with 503 and Retry-After instead of each waiting
for a connection (contactcenter/postgresql: a breaker on opening connections). Runs in both modes:
the unreachable database is a PostgreSQL wrapper of this project's backend whose driver refuses
every connection and counts the attempts (no network, no clock: a fake one)."""

import psycopg
import pytest
from django.db import connections
from django.db.utils import ConnectionHandler
from django.test import Client

from contactcenter.postgresql.base import Breaker, DatabaseUnavailable
from tests.conversations.twilio_helpers import MESSAGING_PATH, signed_post, sms_params

pytestmark = pytest.mark.django_db


class FakeClock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def attempts(monkeypatch):
    """Every connection attempt the driver sees; each is refused as by a stopped server."""
    seen: list[dict] = []

    def refuse(*args, **kwargs):
        seen.append(kwargs)
        raise psycopg.OperationalError("connection refused (fake: the server is down)")

    monkeypatch.setattr(psycopg, "connect", refuse)
    monkeypatch.setattr(psycopg.Connection, "connect", classmethod(lambda cls, *a, **k: refuse(*a, **k)))
    return seen


@pytest.fixture
def database_down(clock, attempts, settings):
    """The default database replaced, for the requests of the test, by an unreachable PostgreSQL
    behind this project's backend with a breaker of its own on the fake clock."""
    settings.CC_DB_OUTAGE_SECONDS = 1
    unreachable = ConnectionHandler({"default": {
        "ENGINE": "contactcenter.postgresql", "NAME": "contactcenter", "USER": "postgres", "HOST": "127.0.0.1",
        "PORT": "1", "OPTIONS": {"connect_timeout": 3}}})["default"]
    unreachable.breaker = Breaker(clock=clock)
    original = connections["default"]
    connections["default"] = unreachable
    try:
        yield unreachable
    finally:
        connections["default"] = original


def _healthz(client):
    response = client.get("/healthz")
    return response.status_code, response.json(), response.headers.get("Retry-After")


def test_healthz_says_503_naming_the_database_and_tries_to_connect_once_per_outage_window(
        database_down, attempts, clock):
    client = Client()
    answers = [_healthz(client) for _ in range(5)]
    assert len(attempts) == 1, "only the first request may try to connect while the breaker is open"
    for status, body, retry_after in answers:
        assert status == 503
        assert body["checks"]["database"]["status"] == "down"
        assert "database" in body["down"]
        assert retry_after and int(retry_after) > 0
    assert "database unavailable (retrying shortly)" in answers[-1][1]["checks"]["database"]["error"]

    clock.now += 1.5  # the window is over: one request probes again, the next ones fail at once
    assert [_healthz(client)[0] for _ in range(3)] == [503, 503, 503]
    assert len(attempts) == 2


def test_an_sms_webhook_answers_503_with_retry_after_while_the_database_is_down(database_down, attempts):
    client = Client(raise_request_exception=False)
    responses = [signed_post(client, MESSAGING_PATH, sms_params(f"SM{'d' * 31}{n}")) for n in range(4)]
    assert [r.status_code for r in responses] == [503] * 4, "Twilio retries a 5xx; a 200 would lose the message"
    assert all(int(r.headers["Retry-After"]) > 0 for r in responses)
    assert len(attempts) == 1


def test_the_breaker_lets_one_probe_through_per_window_and_closes_on_success(clock, settings):
    settings.CC_DB_OUTAGE_SECONDS = 1
    breaker = Breaker(clock=clock)
    breaker.before_connect()  # closed: go ahead
    breaker.failed(psycopg.OperationalError("refused"))
    with pytest.raises(DatabaseUnavailable, match="refused"):
        breaker.before_connect()
    clock.now += 1.01
    breaker.before_connect()  # this one probes
    with pytest.raises(DatabaseUnavailable):
        breaker.before_connect()  # the others still fail fast while it does
    breaker.succeeded()
    breaker.before_connect()
    assert not breaker.is_open


def test_a_database_error_that_is_a_bug_stays_a_500(database_down):
    from django.db import ProgrammingError

    from contactcenter.views import _database_down

    try:
        raise ProgrammingError("syntax error")
    except ProgrammingError as exc:
        assert not _database_down(exc)
    try:
        raise DatabaseUnavailable("down")
    except DatabaseUnavailable as exc:
        from django.db import OperationalError

        try:
            raise OperationalError("wrapped") from exc
        except OperationalError as wrapped:
            assert _database_down(wrapped)


def test_a_pooled_request_gives_up_as_soon_as_the_pool_cannot_connect(attempts, clock, settings):
    """With CC_DB_POOL a waiter must not sit out the pool's timeout (here 60 s) while the pool's
    own attempts to connect are refused: it gives up after the first refusal, and the breaker
    makes the requests after it fail without waiting at all."""
    from django.db import OperationalError

    from contactcenter.postgresql.base import PoolCannotConnect

    settings.CC_DB_OUTAGE_SECONDS = 1
    pooled = ConnectionHandler({"default": {
        "ENGINE": "contactcenter.postgresql", "NAME": "contactcenter", "USER": "postgres", "HOST": "127.0.0.1",
        "PORT": "1", "OPTIONS": {"pool": {"min_size": 1, "max_size": 2, "timeout": 60}}}})["default"]
    pooled.breaker = Breaker(clock=clock)
    try:
        with pytest.raises(OperationalError) as first:
            pooled.ensure_connection()
        assert isinstance(first.value.__cause__, PoolCannotConnect), first.value.__cause__
        refused = len(attempts)
        assert refused >= 1
        for _ in range(3):
            with pytest.raises(OperationalError, match="retrying shortly"):
                pooled.ensure_connection()
    finally:
        pooled.close_pool()
