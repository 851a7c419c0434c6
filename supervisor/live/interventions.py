"""Supervisors' interventions from the wallboard (POST only, CSRF-checked, supervisors only).

Each calls one service of the core, which records it on the conversation's timeline with who did
it (the supervisor's agent profile): an assignment, a transfer to a queue, a private note. A
presence change goes through routing's ``agent_presence_set`` with the reason "supervisor", which
the agent's console and every wallboard are told. Thin: parse, check, call, answer.

The page posts with ``fetch`` and ``Accept: application/json`` and gets ``{"ok": true}`` or
``{"error": "<reason>"}``; without script the same forms redirect back with a flash message.
"""

import logging
from functools import wraps

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import redirect
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from contactcenter.decoding import UndecodableInput, database_integer
from contactcenter.permissions import supervisor_required
from contactcenter.storable import text_storable
from conversations.models import Agent, PresenceState, Queue
from conversations.routing.assignment import conversation_assign, conversation_transfer
from conversations.routing.presence import agent_presence_set
from conversations.selectors import access_conversation, agent_of
from conversations.services.agent_actions import note_add

logger = logging.getLogger(__name__)

JSON = "application/json"
CONFLICT_CODES = {"taken", "resolved"}


class InterventionError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _wants_json(request) -> bool:
    return JSON in request.headers.get("Accept", "")


def intervention(view):
    """POST, supervisors only (anonymous: 401 for fetch, else the login page; agents: 403)."""

    @require_POST
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated and _wants_json(request):
            return JsonResponse({"error": _("You were signed out. Sign in again."), "login": "/accounts/login/"},
                                status=401)
        return _answer(request, view, *args, **kwargs)

    return supervisor_required(wrapper)


def _answer(request, view, *args, **kwargs):
    try:
        done = view(request, *args, **kwargs)
    except ValidationError as exc:
        message = " ".join(exc.messages)
        status = 409 if getattr(exc, "code", "") in CONFLICT_CODES else 400
    except InterventionError as exc:
        message, status = exc.message, exc.status
    else:
        if _wants_json(request):
            return JsonResponse({"ok": True, "message": done})
        flash.success(request, done)
        return redirect("supervisor:wallboard")
    if _wants_json(request):
        return JsonResponse({"error": message}, status=status)
    flash.error(request, message)
    return redirect("supervisor:wallboard")


def _acting_agent(request) -> Agent:
    """The supervisor's agent profile: the timeline names it as who acted."""
    agent = agent_of(request.user)
    if agent is None:
        raise InterventionError(_("Interventions are recorded under your agent profile, and you have none."), 403)
    return agent


def _text(request, name: str) -> str:
    return text_storable(request.POST.get(name, ""))


def _id(request, name: str) -> int | None:
    try:
        return database_integer(request.POST.get(name))
    except (TypeError, ValueError, UndecodableInput):
        return None


@intervention
def assign(request, conversation_id: int) -> str:
    """Assign a waiting conversation, or reassign an active one, to an agent."""
    by = _acting_agent(request)
    conversation = access_conversation(user=request.user, conversation_id=conversation_id)
    to_agent = Agent.objects.filter(pk=_id(request, "agent")).first()
    if to_agent is None:
        raise InterventionError(_("Choose an agent."))
    conversation_assign(conversation_id=conversation.pk, agent=to_agent, by=by, note=_text(request, "note"),
                        via="manual")
    return _("Assigned to %(agent)s.") % {"agent": to_agent.display_name}


@intervention
def transfer(request, conversation_id: int) -> str:
    """Send a waiting or active conversation to another queue (or, with ``agent``, to an agent)."""
    by = _acting_agent(request)
    conversation = access_conversation(user=request.user, conversation_id=conversation_id)
    to_queue = Queue.objects.filter(pk=_id(request, "queue"), is_active=True).first()
    to_agent = Agent.objects.filter(pk=_id(request, "agent")).first() if to_queue is None else None
    if to_queue is None and to_agent is None:
        raise InterventionError(_("Choose a queue or an agent to transfer to."))
    conversation_transfer(conversation_id=conversation.pk, by=by, note=_text(request, "note"), to_agent=to_agent,
                          to_queue=to_queue, supervisor=True)
    return _("Transferred to %(target)s.") % {"target": (to_queue or to_agent)}


@intervention
def note(request, conversation_id: int) -> str:
    """A private note on the conversation for its agent (never sent to the customer)."""
    by = _acting_agent(request)
    conversation = access_conversation(user=request.user, conversation_id=conversation_id)
    note_add(conversation=conversation, agent=by, text=_text(request, "text"))
    return _("Note added.")


@intervention
def presence(request, agent_id: int) -> str:
    """Change an agent's presence, e.g. put an agent who left without signing out offline."""
    by = _acting_agent(request)
    agent = Agent.objects.filter(pk=agent_id).first()
    state = PresenceState.objects.filter(pk=_id(request, "presence")).first()
    if agent is None or state is None:
        raise InterventionError(_("Unknown agent or presence."), 404 if agent is None else 400)
    agent_presence_set(agent=agent, presence=state, reason="supervisor", by=by)
    logger.info("presence of agent %s set to %r by supervisor agent %s", agent.pk, state.name, by.pk)
    return _("%(agent)s is now %(presence)s.") % {"agent": agent.display_name, "presence": state.label}
