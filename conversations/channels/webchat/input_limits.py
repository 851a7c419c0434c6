"""What a visitor may send and how often: rate limits (sliding windows; a refusal costs nothing) and
the cleaning of typed text, names and addresses.
"""

import re
import unicodedata

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.utils import timezone

from contactcenter.redis_pools import cache_redis_client
from profiles import addresses

_CLIENT_ID = re.compile(r"^[A-Za-z0-9-]{8,64}$")


# C0/C1 controls other than tab and newline are dropped; bidi and zero-width characters are kept
# (they are legitimate in Japanese/Arabic text) and every client renders them as plain text.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


DEFAULT_LIMITS = {
    "max_text": 4000,  # characters of one message
    "max_frame": 64 * 1024,  # bytes of one websocket frame
    "history": 200,  # messages sent on (re)connect
    "message_per_visitor": (20, 10),  # (count, seconds)
    "message_per_ip": (120, 10),
    # New chats: a generous allowance per client address (many real customers share one office
    # or carrier address) that still stops floods, and a tighter one per visitor token.
    "conversation_per_ip": (60, 600),
    "conversation_per_visitor": (5, 600),
    "hello_per_ip": (60, 60),
    "offline_per_ip": (5, 3600),
    "typing_per_visitor": (20, 10),
    "queue_per_visitor": (30, 60),  # queue-position requests (the widget polls every ~20 s per tab)
    "status_per_visitor": (30, 60),  # status requests (the widget asks each time it is opened)
}


def limits() -> dict:
    return {**DEFAULT_LIMITS, **getattr(settings, "CC_WIDGET_LIMITS", {})}


class WidgetError(Exception):
    """A refusal the widget shows the visitor: ``code`` is HTTP-like (400, 403, 404, 409, 413, 429)."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.client_id: str | None = None  # the refused message's id: the widget marks that message

    def frame(self) -> dict:
        frame = {"type": "error", "code": self.code, "reason": self.reason}
        if self.client_id is not None:
            frame["id"] = self.client_id
        return frame


def rate_allow(key: str, count: int, seconds: int) -> bool:
    """At most about ``count`` accepted hits in any ``seconds`` for ``key``, a sliding window
    estimated from two fixed windows in the shared cache (the previous window's hits weighted by
    how much of it still lies inside the sliding one): no doubled burst at a window boundary, and
    ``count`` at once is the burst allowance. ``incr``/``decr`` are atomic in Redis and locmem, so
    concurrent daphne processes agree.

    A refused hit is taken back: refusals do not count, so someone who waits is let in again
    instead of being locked out by their own retries (issue 22)."""
    now = timezone.now().timestamp()
    window = int(now // seconds)
    elapsed = (now % seconds) / seconds
    current_key = f"cc:widget:rate:{key}:{seconds}:{window}"
    previous_key = f"cc:widget:rate:{key}:{seconds}:{window - 1}"
    client = cache_redis_client()
    if client is not None:
        # One round trip instead of three (every hello and message asks): the same keys and
        # values as the cache API's, which reads them back (it stores integers as they are).
        pipe = client.pipeline(transaction=False)
        pipe.get(cache.make_key(previous_key))
        pipe.set(cache.make_key(current_key), 0, ex=2 * seconds + 1, nx=True)
        pipe.incr(cache.make_key(current_key))
        raw_previous, _added, hits = pipe.execute()
        previous = int(raw_previous or 0)
    else:
        previous = cache.get(previous_key) or 0
        cache.add(current_key, 0, timeout=2 * seconds + 1)
        try:
            hits = cache.incr(current_key)
        except ValueError:  # expired between add and incr
            cache.add(current_key, 1, timeout=2 * seconds + 1)
            hits = 1
    if previous * (1 - elapsed) + hits <= count:
        return True
    try:
        cache.decr(current_key)
    except ValueError:
        pass
    return False


def _require_rate(key: str, limit: tuple[int, int]) -> None:
    if not rate_allow(key, *limit):
        raise WidgetError(429, "rate_limited")


def _require_rates(checks: list[tuple[str, tuple[int, int]]]) -> None:
    """Every limit of ``checks`` or none: when one refuses, the hits already taken by the ones
    before it are given back, so a refused attempt counts against no limit."""
    taken = []
    for key, (count, seconds) in checks:
        if not rate_allow(key, count, seconds):
            for done_key, done_seconds in taken:
                _rate_give_back(done_key, done_seconds)
            raise WidgetError(429, "rate_limited")
        taken.append((key, seconds))


def _rate_give_back(key: str, seconds: int) -> None:
    window = int(timezone.now().timestamp() // seconds)
    try:
        cache.decr(f"cc:widget:rate:{key}:{seconds}:{window}")
    except ValueError:
        pass


def clean_text(raw, *, max_chars: int) -> str:
    """Visitor text as stored: controls dropped, everything else (markup, bidi, zero-width) kept as
    text. Raises ``WidgetError(413)`` past the limit and ``WidgetError(400)`` when empty."""
    if not isinstance(raw, str):
        raise WidgetError(400, "bad_frame")
    if len(raw) > max_chars:
        raise WidgetError(413, "too_long")
    text = _CONTROL.sub("", unicodedata.normalize("NFC", raw)).strip()
    if not text:
        raise WidgetError(400, "empty")
    return text


def _clean_name(raw) -> str:
    if not isinstance(raw, str):
        return ""
    return _CONTROL.sub("", raw).strip()[:100]


def _clean_email(raw) -> str:
    if not isinstance(raw, str) or len(raw) > 320:
        raise WidgetError(400, "bad_email")
    try:
        return addresses.normalize_email(raw)
    except ValidationError as exc:
        raise WidgetError(400, "bad_email") from exc


def _client_id(raw) -> str:
    if not isinstance(raw, str) or not _CLIENT_ID.fullmatch(raw):
        raise WidgetError(400, "bad_id")
    return raw
