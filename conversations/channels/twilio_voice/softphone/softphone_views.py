"""The console's doors to the softphone: its token, the call's state, the controls (POST
actions), click-to-call, the agent's settings and the recordings.

Thin: every conversation is fetched through ``access_conversation`` (404 for anyone who may not see
it), every customer through ``access_customer``, then one service does the work.
"""

import mimetypes

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import FileResponse, Http404, JsonResponse
from django.templatetags.static import static
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from profiles.selectors import access_customer

from ....console.actions import ActionError, console_action
from ....console.views import console_login_required, int_or_none
from ....models import (
    Agent,
    Attachment,
    AttachmentState,
    Channel,
    Conversation,
    ConversationStatus,
    Inbox,
    Queue,
)
from ....selectors import access_conversation, agent_of
from . import controls
from .calls import CallState, call_of
from .outbound import call_place
from .profile import agent_voice_settings_update
from .token import agent_identity, softphone_live, voice_access_token

SDK_URL = "vendor/twilio-voice/twilio.min.js"

# Recordings are played in the page from our own origin: only these types, never sniffed.
AUDIO_TYPES = {"audio/mpeg", "audio/mp3", "audio/wav", "audio/x-wav", "audio/ogg", "audio/webm", "audio/mp4"}


def _no_store(response):
    response["Cache-Control"] = "no-store"
    return response


def _agent_or_403(request) -> Agent:
    agent = agent_of(request.user) if request.user.is_authenticated else None
    if agent is None:
        raise PermissionDenied
    return agent


@require_GET
@never_cache
def token(request):
    """The Voice SDK token for the signed-in agent (403 for anyone else). Without Twilio API
    credentials there is no token: the softphone connects to the simulated call."""
    try:
        agent = _agent_or_403(request)
    except PermissionDenied:
        return _no_store(JsonResponse({"error": _("Only agents have a softphone.")}, status=403))
    body = {"identity": agent_identity(agent.pk), "mode": "live" if softphone_live() else "simulated",
            "enabled": Inbox.objects.filter(kind=Channel.VOICE, is_active=True).exists(),
            "sdk": static(SDK_URL), "answer_on": agent.voice_answer_on, "phone": agent.voice_phone_number}
    if softphone_live():
        body |= {"token": voice_access_token(agent.pk), "ttl": settings.CC_SOFTPHONE_TOKEN_TTL_SECONDS}
    return _no_store(JsonResponse(body))


def _transfer_targets(conversation: Conversation, agent: Agent | None) -> dict:
    agents = Agent.objects.exclude(pk=agent.pk if agent else None).select_related("presence").order_by("display_name")
    queues = [queue for queue in Queue.objects.filter(is_active=True).order_by("name")
              if queue.takes(conversation.channel)]
    return {"agents": [{"id": a.pk, "name": a.display_name, "presence": a.presence.label if a.presence else ""}
                       for a in agents[:200]],
            "queues": [{"id": q.pk, "name": q.name} for q in queues]}


def _call_json(conversation: Conversation, agent: Agent | None = None) -> dict:
    call = call_of(conversation)
    return {"conversation": conversation.pk, "customer": conversation.customer_id,
            "customer_name": str(conversation.customer), "channel": conversation.channel,
            "status": conversation.status, "assignee": conversation.assignee_id,
            "url": f"/console/conversations/{conversation.pk}/", "call": call.as_json(),
            "targets": _transfer_targets(conversation, agent)}


@require_GET
@console_login_required
def call_state(request, conversation_id: int):
    conversation = access_conversation(user=request.user, conversation_id=conversation_id)
    return _no_store(JsonResponse(_call_json(conversation, agent_of(request.user))))


@require_GET
@console_login_required
def current_call(request):
    """The agent's call after a reload: a voice conversation of theirs whose call is on, or ended
    and not resolved yet (wrap-up)."""
    agent = agent_of(request.user)
    if agent is None:
        return _no_store(JsonResponse({"call": None}))
    rows = (Conversation.objects.filter(assignee=agent, channel=Channel.VOICE,
                                        status__in=[ConversationStatus.OPEN, ConversationStatus.PENDING])
            .select_related("customer").order_by("-assigned_at", "-id")[:5])
    for conversation in rows:
        call = call_of(conversation)
        if call.state not in (CallState.NONE, CallState.WAITING):
            return _no_store(JsonResponse({"call": _call_json(conversation, agent)}))
    return _no_store(JsonResponse({"call": None}))


def _agent(request) -> Agent:
    agent = agent_of(request.user)
    if agent is None:
        raise ActionError(_("You have no agent profile."), 403)
    return agent


def _control(name: str):
    """A POST action driving the call of a conversation the user may see."""

    @console_action
    def view(request, conversation_id: int):
        conversation = access_conversation(user=request.user, conversation_id=conversation_id)
        agent = _agent(request)
        if name == "answer":
            controls.call_answer(conversation=conversation, agent=agent)
        elif name == "hold":
            controls.call_hold(conversation=conversation, agent=agent)
        elif name == "resume":
            controls.call_resume(conversation=conversation, agent=agent)
        elif name == "hangup":
            controls.call_hang_up(conversation=conversation, agent=agent)
        elif name == "transfer":
            kind, _sep, ident = request.POST.get("target", "").partition(":")
            to_agent = Agent.objects.filter(pk=int_or_none(ident)).first() if kind == "agent" else None
            to_queue = Queue.objects.filter(pk=int_or_none(ident), is_active=True).first() if kind == "queue" else None
            if to_agent is None and to_queue is None:
                raise ActionError(_("Choose an agent or a queue to transfer to."))
            controls.call_transfer_cold(conversation=conversation, agent=agent, note=request.POST.get("note", ""),
                                        to_agent=to_agent, to_queue=to_queue)
        elif name == "consult":
            colleague = Agent.objects.filter(pk=int_or_none(request.POST.get("agent"))).first()
            if colleague is None:
                raise ActionError(_("Choose a colleague to consult."))
            controls.call_consult(conversation=conversation, agent=agent, colleague=colleague)
        elif name == "join":
            controls.call_consult_join(conversation=conversation, agent=agent)
        elif name == "leave":
            controls.call_consult_leave(conversation=conversation, agent=agent, note=request.POST.get("note", ""))
        conversation.refresh_from_db()
        return {"json": _call_json(conversation, agent), "next": f"/console/conversations/{conversation.pk}/"}

    view.__name__ = f"call_{name}"
    return view


CONTROLS = {name: _control(name) for name in ("answer", "hold", "resume", "hangup", "transfer", "consult", "join",
                                               "leave")}


@console_action
def click_to_call(request, customer_id: int):
    customer = access_customer(user=request.user, customer_id=customer_id)
    agent = _agent(request)
    conversation, _call = call_place(customer=customer, agent=agent)
    conversation.refresh_from_db()
    return {"json": _call_json(conversation, agent), "next": f"/console/conversations/{conversation.pk}/"}


@console_action
def voice_settings(request):
    agent = agent_voice_settings_update(agent=_agent(request), answer_on=request.POST.get("answer_on", ""),
                                        phone=request.POST.get("phone", ""))
    return {"json": {"answer_on": agent.voice_answer_on, "phone": agent.voice_phone_number},
            "flash": _("Softphone settings saved.")}


@require_GET
@console_login_required
def recording(request, attachment_id: int):
    """A call recording, streamed from our storage after the conversation's access check: the
    page never holds Twilio's URL."""
    attachment = Attachment.objects.select_related("message").filter(pk=int_or_none(attachment_id)).first()
    if attachment is None:
        raise Http404
    access_conversation(user=request.user, conversation_id=attachment.message.conversation_id)
    content_type = (attachment.content_type or mimetypes.guess_type(attachment.filename)[0] or "").lower()
    if attachment.state != AttachmentState.STORED or not attachment.file or content_type not in AUDIO_TYPES:
        raise Http404
    response = FileResponse(attachment.file.open("rb"), content_type=content_type)
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = "default-src 'none'; sandbox"
    response["Cache-Control"] = "private, no-store"
    return response

