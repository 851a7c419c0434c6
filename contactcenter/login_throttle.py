"""Brute-force throttling for sign-in that cannot be turned against the account's owner.

Three counters of failed attempts, all in the cache (Redis in production, so every daphne process
shares them), all counting the username as typed whether or not the account exists:

* per (username, address): ``CC_LOGIN_MAX_FAILURES`` failures within ``CC_LOGIN_FAILURE_WINDOW``
  seconds stop that address for that username until the window ends. This is the only hard stop
  for a username, and it only stops the address that failed.
* per address: ``CC_LOGIN_MAX_FAILURES_PER_ADDRESS`` failures for any usernames stop the address
  (password spraying: one guess for many accounts).
* per username: never a lock, a slow-down. Once the username has failed
  ``CC_LOGIN_SLOWDOWN_AFTER`` times from anywhere, an address that has itself just failed for it
  must wait before its next try, twice as long for every further failure up to
  ``CC_LOGIN_MAX_DELAY`` seconds. An address with no failure for the username is not slowed down,
  so the owner signs in at once from their own address while someone hammers the account from
  another one (issue 21: five failures used to lock the user out from every address).

The refusals read the same for every username, so neither the counters nor the messages tell an
attacker which accounts exist; a refused attempt never checks the password.
"""

import hashlib
import math
import time
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache

from contactcenter.client_address import request_client_address

_PREFIX = "cc:login"


def max_failures_per_user_address() -> int:
    return settings.CC_LOGIN_MAX_FAILURES


def max_failures_per_address() -> int:
    return settings.CC_LOGIN_MAX_FAILURES_PER_ADDRESS


def failure_window() -> int:
    return settings.CC_LOGIN_FAILURE_WINDOW


def slowdown_after() -> int:
    return settings.CC_LOGIN_SLOWDOWN_AFTER


def max_delay() -> int:
    return settings.CC_LOGIN_MAX_DELAY


def client_address(request) -> str:
    """The address every login counter is keyed by: the project's one rule (X-Forwarded-For only
    behind our proxies, and then the entry they wrote, never the one a client can forge)."""
    return request_client_address(request)


def slowdown_delay(user_failures: int) -> int:
    """Seconds an address that just failed for a username waits before its next try, given how
    many times that username has failed from anywhere (this failure included)."""
    if user_failures < slowdown_after():
        return 0
    return min(max_delay(), 2 ** (user_failures - slowdown_after()))


@dataclass(frozen=True)
class Refusal:
    """Why an attempt is refused before its password is checked, and for how long."""

    kind: str  # "blocked": this address is stopped for the window; "slow-down": wait retry_after
    retry_after: int


def _digest(value: str) -> str:
    # Hashed: usernames are arbitrary client input and cache keys have a restricted alphabet.
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _normal_username(username: str) -> str:
    return username.strip().casefold()


def _keys(request, username: str) -> dict[str, str]:
    user = _digest(_normal_username(username))
    address = _digest(client_address(request))
    return {
        "user": f"{_PREFIX}:user:{user}",
        "address": f"{_PREFIX}:address:{address}",
        "pair": f"{_PREFIX}:pair:{user}:{address}",
        # Holds the time before which this address may not try this username again.
        "wait": f"{_PREFIX}:wait:{user}:{address}",
    }


def _count_failure(key: str, window: int) -> int:
    # The window starts at the first failure (add) and is not extended by later ones (incr).
    if cache.add(key, 1, window):
        return 1
    try:
        return cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, window)
        return 1


def login_refusal(request, username: str) -> Refusal | None:
    """The reason to refuse this attempt without checking its password, or None to check it."""
    keys = _keys(request, username)
    counts = cache.get_many([keys["pair"], keys["address"], keys["wait"]])
    if int(counts.get(keys["pair"], 0)) >= max_failures_per_user_address() or int(
        counts.get(keys["address"], 0)
    ) >= max_failures_per_address():
        return Refusal(kind="blocked", retry_after=failure_window())
    wait_until = counts.get(keys["wait"])
    if wait_until is not None:
        remaining = math.ceil(float(wait_until) - time.time())
        if remaining > 0:
            return Refusal(kind="slow-down", retry_after=remaining)
    return None


def login_failed(request, username: str) -> int:
    """Count a failed attempt; returns the seconds this address must now wait for this username."""
    keys = _keys(request, username)
    window = failure_window()
    _count_failure(keys["pair"], window)
    _count_failure(keys["address"], window)
    delay = slowdown_delay(_count_failure(keys["user"], window))
    if delay:
        cache.set(keys["wait"], time.time() + delay, delay)
    return delay


def login_succeeded(request, username: str) -> None:
    """The owner got in: their username's slow-down and this address's counters for it end. The
    address counter stays, so one client cannot reset its budget by signing in to an account it
    owns between guesses at others."""
    keys = _keys(request, username)
    cache.delete_many([keys["user"], keys["pair"], keys["wait"]])
