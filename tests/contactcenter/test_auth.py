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

from contactcenter import login_throttle
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


@pytest.fixture
def no_slowdown(settings):
    """Isolates the per-(username, address) and per-address limits from the per-username slow-down."""
    settings.CC_LOGIN_SLOWDOWN_AFTER = 10_000


def test_attacker_hammering_one_address_does_not_keep_the_owner_out(agent):
    """Issue 21, defect 7: five wrong passwords used to lock the username from every address."""
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    answers = [attempt(attacker, "alice", f"guess-{number}").status_code for number in range(50)]
    assert set(answers) == {200, 429}
    # The attacker's address is stopped for this username, even with the right password, and says so.
    response = attempt(attacker, "alice", PASSWORD)
    assert response.status_code == 429
    assert THROTTLED in response.content.decode()
    assert int(response["Retry-After"]) > 0
    assert not is_signed_in(attacker)
    # The owner, from their own address, gets in at once.
    owner = Client(REMOTE_ADDR="198.51.100.20")
    assert attempt(owner, "alice", PASSWORD).status_code == 302
    assert is_signed_in(owner)


def test_the_username_is_slowed_down_from_an_address_that_failed_not_locked(agent, monkeypatch):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    answers = [attempt(attacker, "alice", f"guess-{number}").status_code for number in range(10)]
    # Only the answered tries count (a slow-down starts after the third failure; five stop the
    # address); the rest were refused without a check.
    checked = answers.count(200)
    assert 3 <= checked <= 5 and answers.count(429) == 10 - checked
    owner = Client(REMOTE_ADDR="198.51.100.20")
    typo = attempt(owner, "alice", "alice-typo")
    assert typo.status_code == 200 and BAD_CREDENTIALS in typo.content.decode()
    # The username has failed once more, from the owner's address: that address now waits.
    expected_wait = login_throttle.slowdown_delay(checked + 1)
    assert expected_wait >= 2
    retry = attempt(owner, "alice", PASSWORD)
    assert retry.status_code == 429
    assert "slow down" in retry.content.decode()
    assert f"wait {expected_wait} seconds" in alert(retry), alert(retry)
    assert retry["Retry-After"] == str(expected_wait)
    assert not is_signed_in(owner)
    # Once the delay has passed (the clock moved, not the test), the owner gets in.
    now = time.time()
    monkeypatch.setattr(login_throttle.time, "time", lambda: now + expected_wait + 0.1)
    assert attempt(owner, "alice", PASSWORD).status_code == 302


def test_slowdown_delay_doubles_from_the_threshold_up_to_the_cap(settings):
    settings.CC_LOGIN_SLOWDOWN_AFTER = 3
    settings.CC_LOGIN_MAX_DELAY = 60
    assert [login_throttle.slowdown_delay(n) for n in range(9)] == [0, 0, 0, 1, 2, 4, 8, 16, 32]
    assert login_throttle.slowdown_delay(9) == login_throttle.slowdown_delay(500) == 60


def test_five_failures_stop_that_address_for_that_username_only(agent, supervisor, no_slowdown):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(5):
        assert attempt(attacker, "alice", "wrong-password").status_code == 200
    response = attempt(attacker, "alice", PASSWORD)
    assert response.status_code == 429
    assert THROTTLED in response.content.decode()
    assert not is_signed_in(attacker)
    # Matching ignores case; another username from the same address is still checked.
    assert attempt(attacker, "ALICE", PASSWORD).status_code == 429
    assert attempt(attacker, "carol", PASSWORD).status_code == 302
    assert attempt(Client(REMOTE_ADDR="10.0.0.9"), "alice", PASSWORD).status_code == 302


def test_refusals_read_the_same_for_unknown_and_existing_users(agent):
    def run(username: str, address: str):
        client = Client(REMOTE_ADDR=address)
        return [attempt(client, username, "wrong-password") for _ in range(8)]

    existing = run("alice", "10.0.0.1")
    unknown = run("ghost", "10.0.0.2")
    assert [r.status_code for r in existing] == [r.status_code for r in unknown]
    assert [alert(r) for r in existing] == [alert(r) for r in unknown]
    assert [r.get("Retry-After") for r in existing] == [r.get("Retry-After") for r in unknown]
    kinds = [alert(r) for r in existing]
    assert any("slow down" in text for text in kinds)
    assert any(THROTTLED in text for text in kinds)


def test_many_usernames_from_one_address_stop_that_address_only(agent, supervisor, settings):
    settings.CC_LOGIN_MAX_FAILURES_PER_ADDRESS = 20
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for number in range(20):
        attempt(attacker, f"user{number}", "guess")
    response = attempt(attacker, "carol", PASSWORD)
    assert response.status_code == 429
    assert not is_signed_in(attacker)
    colleague = Client(REMOTE_ADDR="198.51.100.1")
    assert attempt(colleague, "carol", PASSWORD).status_code == 302


@pytest.mark.parametrize("failures", [3, 5])  # 3: slowed down; 5: stopped at this address
def test_refused_attempt_does_not_check_the_password(client, agent, monkeypatch, failures):
    for _ in range(failures):
        attempt(client, "alice", "wrong-password")
    calls = []
    monkeypatch.setattr("django.contrib.auth.forms.authenticate", lambda *a, **k: calls.append(1))
    now = time.time()
    monkeypatch.setattr(login_throttle.time, "time", lambda: now)
    assert attempt(client, "alice", PASSWORD).status_code == 429
    assert calls == []


def test_the_window_expires(client, agent, settings, no_slowdown):
    settings.CC_LOGIN_FAILURE_WINDOW = 2
    started = time.monotonic()
    for _ in range(5):
        attempt(client, "alice", "wrong-password")
    assert attempt(client, "alice", PASSWORD).status_code == 429
    time.sleep(max(0.0, started + 2.5 - time.monotonic()))
    assert attempt(client, "alice", PASSWORD).status_code == 302


def test_success_ends_the_username_slowdown(client, agent):
    for number in range(4):
        attempt(client, "alice", "wrong-password", REMOTE_ADDR=f"10.1.0.{number}")
    assert attempt(client, "alice", PASSWORD, REMOTE_ADDR="10.1.1.1").status_code == 302
    client.logout()
    # Counting starts again: the first failures after a success are not slowed down.
    first = attempt(client, "alice", "wrong-password", REMOTE_ADDR="10.2.0.1")
    assert login_throttle.slowdown_delay(1) == 0
    assert first.status_code == 200
    assert attempt(client, "alice", PASSWORD, REMOTE_ADDR="10.2.0.1").status_code == 302


def test_admin_login_is_throttled_the_same_way(admin_user, monkeypatch, no_slowdown):
    attacker = Client(REMOTE_ADDR="203.0.113.7")
    for _ in range(5):
        assert attacker.post("/admin/login/", {"username": "admin", "password": "guess"}).status_code == 200
    calls = []
    monkeypatch.setattr("django.contrib.auth.forms.authenticate", lambda *a, **k: calls.append(1))
    refused = attacker.post("/admin/login/", {"username": "admin", "password": PASSWORD})
    assert refused.status_code == 429 and THROTTLED in refused.content.decode()
    assert calls == [] and not is_signed_in(attacker)
    monkeypatch.undo()
    # The console's form shares the counters; the owner's own address is not affected.
    assert attempt(attacker, "admin", PASSWORD).status_code == 429
    owner = Client(REMOTE_ADDR="198.51.100.20")
    response = owner.post("/admin/login/?next=/admin/", {"username": "admin", "password": PASSWORD, "next": "/admin/"})
    assert response.status_code == 302 and is_signed_in(owner)
    assert owner.get("/admin/login/").status_code == 302


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
