"""Console actions (POST only). Thin: parse the form, check access, call one service, answer.

The page posts with ``fetch`` and ``Accept: application/json`` and gets ``{"ok": true, …}`` or
``{"error": "<reason>"}`` with 400/409; without script the same forms work as plain posts that
redirect back with the outcome in a flash message. A refusal (opted out, WhatsApp window,
wrap-up required, someone else took it) comes back in words and loses nothing: the composer keeps
the text.
"""

from datetime import datetime, timedelta
from functools import wraps

from django.contrib import messages as flash
from django.core.exceptions import ValidationError
from django.http import Http404, JsonResponse
from django.shortcuts import redirect
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_POST

from contactcenter.storable import NUL, text_storable
from profiles.models import CustomerMerge, MergeSuggestion, SuggestionStatus
from profiles.selectors import access_customer, access_customer_merge
from profiles.services.merge import customer_merge, customer_merge_undo
from profiles.services.profile import customer_update
from profiles.services.suggestions import merge_suggestion_decide

from ..models import Agent, Message, Offer, PresenceState, Queue, WrapUpCode
from ..routing.assignment import (
    conversation_assign,
    conversation_pick,
    conversation_resolve,
    conversation_transfer,
)
from ..routing.offers import offer_accept, offer_reject
from ..routing.presence import agent_presence_set
from ..selectors import access_conversation, agent_of, is_supervisor
from ..services import agent_actions
from .views import console_login_required, int_or_none

JSON = "application/json"


class ActionError(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message, self.status = message, status


def _wants_json(request) -> bool:
    return JSON in request.headers.get("Accept", "")


def _back(request, fallback: str):
    target = request.POST.get("next") or request.headers.get("Referer") or fallback
    if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        target = fallback
    return redirect(target)


def _json_sign_in_required(view):
    """The page's fetches get a 401 they can act on (not the login page's HTML) once the session
    has expired; the text typed stays in the composer."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated and _wants_json(request):
            return JsonResponse({"error": _("You were signed out. Sign in again; nothing you typed is lost."),
                                 "login": "/accounts/login/"}, status=401)
        return view(request, *args, **kwargs)

    return wrapper


def console_action(view):
    """POST only, staff only; turns ``ValidationError``/``ActionError`` into a clear answer."""

    @require_POST
    @_json_sign_in_required
    @console_login_required
    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if any(NUL in value for values in request.POST.lists() for value in values[1]):
            # Every action's text (a reply, a note, a handoff note) without NUL, which PostgreSQL
            # refuses (contactcenter.storable): what the agent typed is stored, never a 500.
            cleaned = request.POST.copy()
            for name, values in request.POST.lists():
                cleaned.setlist(name, [text_storable(value) for value in values])
            cleaned._mutable = False
            request.POST = cleaned
        try:
            result = view(request, *args, **kwargs) or {}
        except ValidationError as exc:
            code = getattr(exc, "code", "")
            status = 409 if code in CONFLICT_CODES else 403 if code in FORBIDDEN_CODES else 400
            message = " ".join(exc.messages)
        except ActionError as exc:
            message, status = exc.message, exc.status
        else:
            if _wants_json(request):
                return JsonResponse({"ok": True, **result.get("json", {})})
            if result.get("flash"):
                flash.success(request, result["flash"])
            return _back(request, result.get("next", "/console/"))
        if _wants_json(request):
            return JsonResponse({"error": message}, status=status)
        flash.error(request, message)
        return _back(request, "/console/")

    return wrapper


CONFLICT_CODES = {"taken", "offer_closed", "not_pending", "suggestion_decided", "wrap_up_required"}
FORBIDDEN_CODES = {"transfer_not_allowed"}


def _agent(request) -> Agent:
    agent = agent_of(request.user)
    if agent is None:
        raise ActionError(_("You have no agent profile."), 403)
    return agent


def _conversation(request, conversation_id):
    return access_conversation(user=request.user, conversation_id=conversation_id)


def _where(conversation) -> str:
    return f"/console/conversations/{conversation.pk}/"


# --- conversation -----------------------------------------------------------------------------------------

@console_action
def reply(request, conversation_id: int):
    conversation = _conversation(request, conversation_id)
    agent = _agent(request)
    template = None
    if request.POST.get("template"):
        template = {"content_sid": request.POST["template"][:64]}
    message = agent_actions.reply_send(
        conversation=conversation, agent=agent, text=request.POST.get("text", ""),
        channel=request.POST.get("channel") or None, template=template,
    )
    return {"json": {"message": message.pk, "conversation": message.conversation_id, "seq": message.seq},
            "next": _where(conversation)}


@console_action
def message_retry(request, message_id: int):
    """Send a failed reply again: the same access as any action on its conversation."""
    from ..services.outbound import delivery_retry

    message = Message.objects.filter(pk=int_or_none(message_id) or 0).only("conversation_id").first()
    if message is None or message.conversation_id is None:
        raise Http404
    conversation = _conversation(request, message.conversation_id)
    message = Message.objects.select_related("conversation").get(pk=message.pk)
    message = delivery_retry(message=message, agent=_agent(request))
    return {"json": {"message": message.pk, "conversation": conversation.pk, "delivery_status": message.delivery_status},
            "flash": _("Sending again."), "next": _where(conversation)}


@console_action
def note(request, conversation_id: int):
    conversation = _conversation(request, conversation_id)
    message = agent_actions.note_add(conversation=conversation, agent=_agent(request), text=request.POST.get("text", ""))
    return {"json": {"message": message.pk, "seq": message.seq}, "next": _where(conversation)}


@console_action
def resolve(request, conversation_id: int):
    conversation = _conversation(request, conversation_id)
    code = request.POST.get("wrap_up_code", "").strip()
    if code and not WrapUpCode.objects.filter(code=code, is_active=True).exists():
        raise ActionError(_("Unknown wrap-up code."))
    conversation_resolve(conversation_id=conversation.pk, by=agent_of(request.user), wrap_up_code=code,
                                 note=request.POST.get("note", ""))
    return {"flash": _("Resolved."), "next": _where(conversation)}


@console_action
def mark_read(request, conversation_id: int):
    """The page shows the conversation up to ``seq`` to an agent who is looking at it: a live
    message there is read, not unread in their work list."""
    conversation = _conversation(request, conversation_id)
    seq = int_or_none(request.POST.get("seq"))
    if seq is None or seq < 0:
        raise ActionError(_("Say how far the conversation was read."))
    agent_actions.conversation_mark_read(agent=_agent(request), conversation=conversation, up_to_seq=seq)
    return {"json": {"conversation": conversation.pk}, "next": _where(conversation)}


@console_action
def snooze(request, conversation_id: int):
    conversation = _conversation(request, conversation_id)
    until = _parse_until(request.POST.get("until", ""), request.POST.get("preset", ""))
    agent_actions.conversation_snooze(conversation=conversation, agent=agent_of(request.user), until=until)
    return {"flash": _("Snoozed."), "next": _where(conversation)}


def _parse_until(raw: str, preset: str) -> datetime:
    now = timezone.localtime()
    presets = {"1h": timedelta(hours=1), "4h": timedelta(hours=4), "3d": timedelta(days=3)}
    if preset in presets:
        return now + presets[preset]
    if preset == "tomorrow":
        return (now + timedelta(days=1)).replace(hour=9, minute=0, second=0, microsecond=0)
    try:
        value = datetime.fromisoformat(raw)
    except ValueError:
        raise ActionError(_("Give a date and time to snooze until.")) from None
    if value.tzinfo is None:
        value = timezone.make_aware(value)  # the agent's own time zone (UserTimezoneMiddleware)
    return value


@console_action
def reopen(request, conversation_id: int):
    conversation = _conversation(request, conversation_id)
    agent_actions.conversation_reopen(conversation=conversation, agent=agent_of(request.user))
    return {"flash": _("Reopened."), "next": _where(conversation)}


@console_action
def transfer(request, conversation_id: int):
    conversation = _conversation(request, conversation_id)
    agent = _agent(request)
    target = request.POST.get("target", "")
    kind, _sep, ident = target.partition(":")
    to_agent = to_queue = None
    if kind == "agent":
        to_agent = Agent.objects.filter(pk=int_or_none(ident)).first()
    elif kind == "queue":
        to_queue = Queue.objects.filter(pk=int_or_none(ident), is_active=True).first()
    if to_agent is None and to_queue is None:
        raise ActionError(_("Choose an agent or a queue to transfer to."))
    conversation = conversation_transfer(
        conversation_id=conversation.pk, by=agent, note=request.POST.get("note", ""), to_agent=to_agent,
        to_queue=to_queue, supervisor=is_supervisor(request.user))
    if to_agent is not None and to_agent.pk == agent.pk:  # a pick: the page goes on with it, as pick's does
        return {"json": {"conversation": conversation.pk}, "next": _where(conversation)}
    return {"flash": _("Transferred."), "next": "/console/"}


@console_action
def pick(request, conversation_id: int):
    """Take a waiting conversation. Agents pick where the queue allows it; a supervisor takes it
    from any queue, as an assignment to themselves."""
    conversation = _conversation(request, conversation_id)
    conversation_pick(conversation_id=conversation.pk, agent=_agent(request),
                              supervisor=is_supervisor(request.user))
    return {"json": {"conversation": conversation.pk}, "next": _where(conversation)}


@console_action
def assign(request, conversation_id: int):
    """Supervisors assign or reassign a conversation to any agent."""
    if not is_supervisor(request.user):
        raise Http404
    conversation = _conversation(request, conversation_id)
    to_agent = Agent.objects.filter(pk=int_or_none(request.POST.get("agent"))).first()
    if to_agent is None:
        raise ActionError(_("Choose an agent."))
    conversation_assign(conversation_id=conversation.pk, agent=to_agent, by=agent_of(request.user),
                                note=request.POST.get("note", ""), via="manual")
    return {"flash": _("Assigned."), "next": _where(conversation)}


# --- offers and presence ------------------------------------------------------------------------------------

@console_action
def offer_decide(request, offer_id: int, decision: str):
    agent = _agent(request)
    offer = Offer.objects.filter(pk=offer_id, agent=agent).first()
    if offer is None:
        raise Http404
    action = offer_accept if decision == "accept" else offer_reject
    offer = action(offer_id=offer.pk, agent=agent)
    return {"json": {"offer": offer.pk, "status": offer.status, "conversation": offer.conversation_id},
            "next": f"/console/conversations/{offer.conversation_id}/" if decision == "accept" else "/console/"}


@console_action
def presence(request):
    agent = _agent(request)
    state = PresenceState.objects.filter(pk=int_or_none(request.POST.get("presence"))).first()
    if state is None:
        raise ActionError(_("Unknown presence."))
    agent_presence_set(agent=agent, presence=state)
    return {"json": {"presence": state.pk, "name": state.name, "available": state.is_available}}


# --- customer -------------------------------------------------------------------------------------------------

@console_action
def customer_edit(request, customer_id: int):
    """Tags (comma-separated) and journey stage, from the 360 pane."""
    customer = access_customer(user=request.user, customer_id=customer_id)
    data = {}
    if "tags" in request.POST:
        data["tags"] = [t.strip() for t in request.POST["tags"].replace("、", ",").split(",") if t.strip()]
    if request.POST.get("journey_stage"):
        data["journey_stage"] = request.POST["journey_stage"]
    customer = customer_update(customer=customer, data=data, actor=request.user)
    return {"json": {"customer": customer.pk, "tags": sorted(t.name for t in customer.tags.all()),
                     "journey_stage": customer.journey_stage}, "flash": _("Saved.")}


@console_action
def customer_merge_view(request, customer_id: int):
    """Merge ``other`` into this customer (from a suggestion, or by id)."""
    target = access_customer(user=request.user, customer_id=customer_id)
    suggestion = None
    if request.POST.get("suggestion"):
        suggestion = MergeSuggestion.objects.filter(pk=int_or_none(request.POST["suggestion"]),
                                                    status=SuggestionStatus.PENDING).first()
        if suggestion is None or target.pk not in (suggestion.customer_id, suggestion.candidate_id):
            raise Http404
        source = suggestion.candidate if suggestion.customer_id == target.pk else suggestion.customer
    else:
        source = access_customer(user=request.user, customer_id=request.POST.get("other"))
    if suggestion is not None and suggestion.customer_id == target.pk:
        merge = merge_suggestion_decide(suggestion=suggestion, confirm=True, actor=request.user)
    else:
        merge = customer_merge(source=source, target=target, actor=request.user, suggestion=suggestion)
    return {"json": {"merge": getattr(merge, "pk", None), "customer": target.pk}, "flash": _("Merged."),
            "next": f"/console/customers/{target.pk}/"}


@console_action
def suggestion_dismiss(request, suggestion_id: int):
    suggestion = MergeSuggestion.objects.filter(pk=suggestion_id).first()
    if suggestion is None:
        raise Http404
    access_customer(user=request.user, customer_id=suggestion.customer_id)
    merge_suggestion_decide(suggestion=suggestion, confirm=False, actor=request.user)
    return {"flash": _("Dismissed.")}


@console_action
def merge_undo(request, merge_id: int):
    merge: CustomerMerge = access_customer_merge(user=request.user, merge_id=merge_id)
    customer_merge_undo(merge=merge, actor=request.user)
    return {"json": {"source": merge.source_id, "target": merge.target_id}, "flash": _("Unmerged."),
            "next": f"/console/customers/{merge.target_id}/"}

