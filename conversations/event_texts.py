"""How an event of another app reads on the timeline, in the viewer's language (surveys: why a
survey was not sent, how it went out, its answer).

The app registers one function per event type from its ``AppConfig.ready()``; the timeline calls
it while rendering, with the viewer's language active, so the words are translated when they are
shown instead of being frozen in the language of whatever process wrote the event (a webhook, a
worker, a customer's link page). The function reads only the event's data (ids and codes), never
the database. An event type nobody registered reads as its stored text.

This module imports nothing of ours, so anything may use it.
"""

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_texts: dict[str, Callable[[dict], str]] = {}


def register(event_type: str, describe: Callable[[dict], str]) -> None:
    _texts[event_type] = describe


def event_text(*, event_type: str, data: dict | None, stored: str) -> str:
    describe = _texts.get(event_type or "")
    if describe is None:
        return stored
    try:
        return describe(data or {})
    except Exception:  # an odd row must not break the timeline: it reads as stored
        logger.exception("event text for %s failed", event_type)
        return stored
