"""Sign-in, sign-out and sessions: brute-force throttling without account enumeration, and
sessions that do not survive a logout or a password change (threats.md: Chatwoot CVE-2021-3740,
CVE-2022-3741)."""

import re
import time

import pytest
from django.contrib.auth import SESSION_KEY
from django.core.cache import cache
from django.test import Client
from django.urls import resolve, reverse

from contactcenter import auth_views
from contactcenter.auth_views import ThrottledLoginView

from ..factories import PASSWORD

pytestmark = pytest.mark.django_db

LOGIN = "/console/login/"
BAD_CREDENTIALS = "Please enter a correct username and password"
THROTTLED = "Too many failed sign-in attempts"


@pytest.fixture(autouse=True)
def _fast_hasher(settings):
    # Autouse fixtures run first, so the named users' passwords are hashed with this too.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _fresh_counters():
    cache.clear()
    yield
    cache.clear()


def attempt(client, username, password, **extra):
    return client.post(LOGIN, {"username": username, "password": password}, **extra)


def alert(response) -> str:
    return re.search(r'<div class="alert.*?</div>', response.content.decode(), re.S).group(0)


def is_signed_in(client) -> bool:
    return SESSION_KEY in client.session


def test_login_page_renders_styled_form(client):
    response = client.get(LOGIN)
    assert response.status_code == 200
    body = response.content.decode()
    assert 'name="csrfmiddlewaretoken"' in body
    assert 'autocomplete="current-password"' in body
    assert "/static/css/console.css" in body
    assert "unsafe-inline" not in response["Content-Security-Policy"]


def test_accounts_login_is_the_throttled_view():
    """The contract URL (DESIGN.md: login at /accounts/login/) must be the throttled view."""
    assert resolve("/accounts/login/").func.view_class is ThrottledLoginView


def test_successful_login_reaches_the_console(client, agent):
    response = attempt(client, "alice", PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == "/console/"
    assert client.get("/console/").status_code == 200


def test_login_honours_a_safe_next_and_ignores_a_foreign_one(client, agent, customer):
    target = reverse("console:customer", args=[customer.pk])
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": target})
    assert response["Location"] == target
    other = Client()
    response = other.post(LOGIN, {"username": "alice", "password": PASSWORD, "next": "https://evil.example/"})
    assert response["Location"] == "/console/"


def test_unknown_user_and_bad_password_read_the_same(client, agent):
    unknown = attempt(client, "nobody-here", "whatever-123")
    wrong = attempt(client, "alice", "wrong-password")
    assert unknown.status_code == wrong.status_code == 200
    assert BAD_CREDENTIALS in unknown.content.decode()
    assert alert(unknown) == alert(wrong)


def test_five_failures_for_a_username_lock_it_even_with_the_right_password(client, agent):
    for _ in range(5):
        assert attempt(client, "alice", "wrong-password").status_code == 200
    response = attempt(client, "alice", PASSWORD)
    assert response.status_code == 429
    assert THROTTLED in response.content.decode()
    assert not is_signed_in(client)
    # The username is locked from anywhere, and matching ignores case.
    response = attempt(Client(REMOTE_ADDR="10.0.0.9"), "ALICE", PASSWORD)
    assert response.status_code == 429


def test_lockout_reads_the_same_for_unknown_and_existing_users(client, agent):
    for _ in range(5):
        attempt(client, "alice", "wrong-password", REMOTE_ADDR="10.0.0.1")
        attempt(client, "ghost", "wrong-password", REMOTE_ADDR="10.0.0.2")
    existing = attempt(client, "alice", "wrong-password", REMOTE_ADDR="10.0.0.3")
    unknown = attempt(client, "ghost", "wrong-password", REMOTE_ADDR="10.0.0.4")
    assert existing.status_code == unknown.status_code == 429
    assert THROTTLED in existing.content.decode()
    assert alert(existing) == alert(unknown)


def test_five_failures_from_one_address_lock_that_address_only(agent, supervisor):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for number in range(5):
        attempt(attacker, f"user{number}", "guess")
    response = attempt(attacker, "carol", PASSWORD)
    assert response.status_code == 429
    assert not is_signed_in(attacker)
    colleague = Client(REMOTE_ADDR="198.51.100.1")
    assert attempt(colleague, "carol", PASSWORD).status_code == 302


def test_throttled_attempt_does_not_check_the_password(client, agent, monkeypatch):
    for _ in range(5):
        attempt(client, "alice", "wrong-password")
    calls = []
    monkeypatch.setattr("django.contrib.auth.forms.authenticate", lambda *a, **k: calls.append(1))
    assert attempt(client, "alice", PASSWORD).status_code == 429
    assert calls == []


def test_the_window_expires(client, agent, monkeypatch):
    monkeypatch.setattr(auth_views, "FAILURE_WINDOW", 2)
    started = time.monotonic()
    for _ in range(5):
        attempt(client, "alice", "wrong-password")
    assert attempt(client, "alice", PASSWORD).status_code == 429
    time.sleep(max(0.0, started + 2.5 - time.monotonic()))
    assert attempt(client, "alice", PASSWORD).status_code == 302


def test_success_resets_the_username_counter(client, agent):
    for _ in range(4):
        attempt(client, "alice", "wrong-password", REMOTE_ADDR=f"10.1.0.{_}")
    assert attempt(client, "alice", PASSWORD, REMOTE_ADDR="10.1.1.1").status_code == 302
    client.logout()
    for _ in range(4):
        attempt(client, "alice", "wrong-password", REMOTE_ADDR=f"10.2.0.{_}")
    assert attempt(client, "alice", PASSWORD, REMOTE_ADDR="10.2.1.1").status_code == 302


def test_login_post_without_csrf_is_refused(agent):
    client = Client(enforce_csrf_checks=True)
    response = client.post(LOGIN, {"username": "alice", "password": PASSWORD})
    assert response.status_code == 403
    assert not is_signed_in(client)


def test_logout_is_post_only_and_kills_the_session(client, agent):
    attempt(client, "alice", PASSWORD)
    old_cookie = client.cookies["sessionid"].value
    assert client.get("/accounts/logout/").status_code == 405
    response = client.post("/accounts/logout/")
    assert response.status_code == 302
    replay = Client()
    replay.cookies["sessionid"] = old_cookie
    response = replay.get("/console/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_password_change_invalidates_existing_sessions(client, agent):
    attempt(client, "alice", PASSWORD)
    old_cookie = client.cookies["sessionid"].value
    assert client.get("/console/").status_code == 200
    user = agent.user
    user.set_password("a-brand-new-password-2026")
    user.save()
    replay = Client()
    replay.cookies["sessionid"] = old_cookie
    response = replay.get("/console/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.get("/console/").status_code == 302
    # The new password works.
    assert attempt(Client(), "alice", "a-brand-new-password-2026").status_code == 302


def test_base_layout_shows_user_language_switch_and_logout(client, agent):
    client.force_login(agent.user)
    body = client.get("/console/").content.decode()
    assert "Alice" in body
    assert 'action="/accounts/logout/" method="post"' in body
    assert 'value="ja"' in body and "日本語" in body
    assert 'action="/i18n/setlang/" method="post"' in body
