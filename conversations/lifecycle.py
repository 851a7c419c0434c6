"""Hooks other apps hang on a conversation's lifecycle (surveys: schedule after a resolve, cancel
when the customer is back, take a reply that answers a survey). The core calls these functions and
never imports the apps that register: they register from their ``AppConfig.ready()``.

When each hook runs, and what it may do:

- ``resolved(conversation_id)``: after the resolving transaction commits (a listener's failure
  never undoes a resolve; it is logged).
- ``reopened(conversation_id)`` and ``customer_message(customer_id, conversation_id, at)``: inside
  the caller's transaction, so what the listener writes (a canceled survey) commits with the reopen
  or the message, or not at all.
- ``inbound_claim(customer, inbox, text, at)``: inside the ingest's transaction, the customer's row
  locked. A claimer returns the id of the (resolved) conversation the message answers, having
  recorded the answer, or None; the first claim wins. A message nobody claims takes the ordinary
  path, so a reply that is not an answer is never swallowed.
- ``widget_answer(customer_id, payload)``: a widget's answer frame (the web chat's rating card);
  returns the result to send back, or None when nobody handles such frames.
  ``widget_pending_cards(customer_id)``: the rating cards still waiting for this customer (shown
  again when their widget connects).
- ``call_survey(conversation_id)``: the agent left a voice call and the caller is still on the line;
  a listener whose survey applies to the conversation (queue/inbox, fatigue, sampling) records it
  as sent and returns what to ask: ``{"token", "kind", "low", "high", "question": {"ja", "en"}}``;
  the first one wins, None when no survey applies (the call is then simply ended). Outside any
  transaction (the voice side redirects the call afterwards).
- ``call_survey_answer(token, digits)``: the keys the caller pressed for the survey ``token``;
  returns ``"recorded"``, ``"retry"`` (not a score on its scale) or ``"closed"``; None when no
  listener knows the token.

This module imports nothing of ours, so anything may use it.
"""

import logging
from collections.abc import Callable
from datetime import datetime

from django.db import transaction
from django.dispatch import Signal

logger = logging.getLogger(__name__)

# Sent by ``seed_demo`` once the demo's customers and history are written (in its transaction),
# with ``now``: other apps add their own demo data (surveys: weeks of answers) without the demo
# importing them.
demo_seeded = Signal()

# Sent by ``routing.presence_record`` inside the transaction that changes an agent's presence, after
# the agent's row is saved, with ``agent_id``, ``presence`` (a PresenceState), ``changed_at``,
# ``reason`` ("agent", "signed_out", "supervisor", "missed_offer", "disconnected" …) and
# ``by_agent_id`` (who made it when someone did on the agent's behalf: a supervisor), so a
# history kept elsewhere (supervisor: the agent status timeline) says who made each change.
presence_changed = Signal()

_resolved: list[Callable[[int], None]] = []
_reopened: list[Callable[[int], None]] = []
_customer_message: list[Callable[..., None]] = []
_inbound_claimers: list[Callable[..., int | None]] = []
_widget_answer: list[Callable[..., dict | None]] = []
_widget_pending: list[Callable[..., list[dict]]] = []
_call_survey: list[Callable[..., dict | None]] = []
_call_survey_answer: list[Callable[..., str | None]] = []


def _add(hooks: list, fn) -> None:
    if fn not in hooks:
        hooks.append(fn)


def on_resolved(fn: Callable[[int], None]) -> None:
    _add(_resolved, fn)


def on_reopened(fn: Callable[[int], None]) -> None:
    _add(_reopened, fn)


def on_customer_message(fn: Callable[..., None]) -> None:
    _add(_customer_message, fn)


def on_inbound_claim(fn: Callable[..., int | None]) -> None:
    _add(_inbound_claimers, fn)


def on_widget_answer(fn: Callable[..., dict | None]) -> None:
    _add(_widget_answer, fn)


def on_widget_pending(fn: Callable[..., list[dict]]) -> None:
    _add(_widget_pending, fn)


def on_call_survey(fn: Callable[..., dict | None]) -> None:
    _add(_call_survey, fn)


def on_call_survey_answer(fn: Callable[..., str | None]) -> None:
    _add(_call_survey_answer, fn)


def _resolved_now(conversation_id: int) -> None:
    for fn in _resolved:
        try:
            fn(conversation_id)
        except Exception:
            logger.exception("resolved hook %r failed for conversation %s", fn, conversation_id)


def resolved(conversation_id: int) -> None:
    """The conversation was resolved: the listeners run once the caller's transaction commits."""
    if _resolved:
        transaction.on_commit(lambda: _resolved_now(conversation_id))


def reopened(conversation_id: int) -> None:
    for fn in _reopened:
        fn(conversation_id)


def customer_message(*, customer_id: int, conversation_id: int, at: datetime) -> None:
    for fn in _customer_message:
        fn(customer_id=customer_id, conversation_id=conversation_id, at=at)


def inbound_claim(*, customer, inbox, text: str, at: datetime) -> int | None:
    for fn in _inbound_claimers:
        claimed = fn(customer=customer, inbox=inbox, text=text, at=at)
        if claimed is not None:
            return claimed
    return None


def widget_answer(*, customer_id: int | None, payload: dict) -> dict | None:
    for fn in _widget_answer:
        frame = fn(customer_id=customer_id, payload=payload)
        if frame is not None:
            return frame
    return None


def widget_pending_cards(*, customer_id: int) -> list[dict]:
    return [card for fn in list(_widget_pending) for card in fn(customer_id=customer_id)]


def call_survey(*, conversation_id: int) -> dict | None:
    for fn in _call_survey:
        survey = fn(conversation_id=conversation_id)
        if survey is not None:
            return survey
    return None


def call_survey_answer(*, token: str, digits: str) -> str | None:
    for fn in _call_survey_answer:
        result = fn(token=token, digits=digits)
        if result is not None:
            return result
    return None
