"""Agent console pages: the workspace (work list, the customer's one timeline with the conversation
in it, the customer 360) and the fragments the page re-fetches when a live event says something
changed. Server-rendered: customer content is escaped by the template engine, never by script.

Every page is for contact-center staff only; a conversation or customer the user may not see is a
404 (never a 403: a stranger's ids tell nothing). Reads go through selectors with fixed query
counts, so nothing here grows with the size of a customer's history.
"""

import json
from functools import wraps

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ValidationError
from django.db.models import Prefetch, Q
from django.http import Http404, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.translation import get_language
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from contactcenter.decoding import database_integer, json_decode
from contactcenter.permissions import console_staff_required, is_contact_center_staff
from profiles.models import Consent, Customer, CustomerNote, Identity, IdentityKind, JourneyStage, MergeSuggestion, SuggestionStatus
from profiles.models import CustomerAccessDoor
from profiles.selectors import access_customer, customer_search
from profiles.services.access_log import customer_access_record
from profiles.timeline import customer_timeline

from ..channels.email.sanitize import with_inline_images
from ..channels.email.selectors import message_inline_images
from ..models import Agent, Conversation, Message, PresenceState, Queue
from ..selectors import access_conversation, agent_of, is_supervisor
from ..services.agent_actions import conversation_mark_read
from . import selectors

HOME_LIMIT = 50
TIMELINE_LIMIT = 50

# Why a merge suggestion exists, in words an agent understands (reason codes come from
# profiles.services.suggestions and profiles.services.identity).
SUGGESTION_REASONS = {
    "signature_phone": gettext_lazy("Phone number found in an email signature"),
    "same_name_same_domain": gettext_lazy("Same name and the same email domain"),
}


def console_login_required(view):
    """For object pages: anonymous → login; anyone without a role → 404 (from the access check)."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_contact_center_staff(request.user):
            raise Http404
        return view(request, *args, **kwargs)

    return wrapper


def _suggestion_reason(reason: str) -> str:
    if reason in SUGGESTION_REASONS:
        return str(SUGGESTION_REASONS[reason])
    if reason.startswith("claimed_"):
        kind = reason.removeprefix("claimed_")
        label = IdentityKind(kind).label if kind in IdentityKind.values else kind
        return _("Claimed %(kind)s, not verified") % {"kind": label}
    return reason


def _pairs(data) -> list[tuple[str, str]]:
    """A JSON object as sorted (key, text) pairs. Templates must not look keys up on customer
    data: a key named ``items`` would shadow ``dict.items`` in the template language."""
    if not isinstance(data, dict):
        return [("", str(data))] if data not in (None, "") else []
    return [(str(key), value if isinstance(value, str) else str(value)) for key, value in sorted(data.items())]


# --- building blocks -------------------------------------------------------------------------------------

def _customer_rows(customer_id: int) -> Customer:
    return (
        Customer.objects.select_related("merged_into")
        .prefetch_related(
            "tags",
            Prefetch("identities", queryset=Identity.objects.order_by("kind", "value")),
            Prefetch("consents", queryset=Consent.objects.order_by("channel", "address", "sender")),
            Prefetch("notes", queryset=CustomerNote.objects.select_related("author__agent").order_by("-created_at", "-id")),
        )
        .get(pk=customer_id)
    )


def _suggestions(customer: Customer) -> list[dict]:
    rows = (
        MergeSuggestion.objects.filter(Q(customer=customer) | Q(candidate=customer), status=SuggestionStatus.PENDING)
        .select_related("customer", "candidate").order_by("-created_at", "-id")
    )
    result = []
    for suggestion in rows:
        other = suggestion.candidate if suggestion.customer_id == customer.pk else suggestion.customer
        result.append({
            "id": suggestion.pk, "other": other, "reason": _suggestion_reason(suggestion.reason),
            "evidence": _pairs(suggestion.evidence), "created_at": suggestion.created_at,
        })
    return result


def _timeline(customer: Customer, *, before=None, after=None):
    page = customer_timeline(customer_id=customer.pk, before=before, after=after, limit=TIMELINE_LIMIT)
    _attach(customer, [entry.item for entry in page.entries if entry.type == "message"])
    return page


def _attach(customer: Customer, messages: list[Message]) -> None:
    """Hand the rows we hold to the messages so author labels and subjects cost no query each, and
    resolutions their wrap-up code's label (one query, only when the page holds such a code)."""
    conversations = Conversation.objects.in_bulk({m.conversation_id for m in messages})
    for message in messages:
        if message.customer_id == customer.pk:
            message.customer = customer
        message.conversation = conversations[message.conversation_id]
    selectors.label_wrap_up_codes(messages)


def _workspace_context(request, *, customer: Customer | None, conversation: Conversation | None,
                       before=None, after=None) -> dict:
    agent = agent_of(request.user)
    supervisor = is_supervisor(request.user)
    if conversation is not None and agent is not None and conversation.assignee_id == agent.pk:
        # Before the work list is read: the page that opens a conversation shows it as read.
        conversation_mark_read(agent=agent, conversation=conversation)
    context = {
        "agent": agent,
        "supervisor": supervisor,
        "sidebar": selectors.sidebar(agent=agent, supervisor=supervisor),
        "presences": list(PresenceState.objects.all()),
        "now": timezone.now(),
        "customer": customer,
        "conversation": conversation,
        "sync_seconds": settings.CC_CONSOLE_SYNC_SECONDS,
    }
    if customer is not None:
        page = _timeline(customer, before=before, after=after)
        context |= {
            "page": page,
            "paged": bool(before or after),
            "seen_json": json.dumps(selectors.conversation_seen_map(customer_id=customer.pk)),
            "custom_attributes": _pairs(customer.custom_attributes),
            "suggestions": _suggestions(customer),
            "panel": selectors.customer_panel(customer=customer, conversation=conversation),
            "journey_stages": JourneyStage.choices,
        }
    if conversation is not None:
        agents = list(Agent.objects.select_related("presence").order_by("display_name"))
        context |= {
            "handoff": selectors.handoff_note(conversation),
            "reply_options": selectors.reply_options(conversation=conversation, customer=customer),
            "wrap_up_codes": selectors.wrap_up_codes(),
            "transfer_agents": [a for a in agents if agent is None or a.pk != agent.pk],
            # Supervisors assign to anyone, themselves included (console:assign).
            "assign_agents": agents if supervisor else [],
            "transfer_queues": list(Queue.objects.filter(is_active=True).order_by("name")),
            "is_mine": agent is not None and conversation.assignee_id == agent.pk,
            # "Take it" only where it works: agents pick where the queue allows it (conversation_pick),
            # supervisors take from any queue (actions.pick).
            "can_take": agent is not None and (supervisor or conversation.queue is None
                                               or conversation.queue.allow_pick),
            "offer": conversation.offers.filter(agent=agent, status="pending").first() if agent else None,
        }
    return context


# --- pages -----------------------------------------------------------------------------------------------

@require_GET
@console_staff_required
def workspace(request):
    """The console with no conversation open: the work list, and a hint to pick one."""
    context = _workspace_context(request, customer=None, conversation=None)
    if request.GET.get("fragment") == "panes":
        # The page leaving a conversation (transferred away, access ended) swaps in the panes only:
        # the whole page there would nest a second work list and softphone inside the first.
        return render(request, "console/_panes.html", context)
    return render(request, "console/workspace.html", context)


@require_GET
@console_login_required
def conversation_detail(request, conversation_id: int):
    conversation = access_conversation(user=request.user, conversation_id=conversation_id)
    # The page shows the customer's 360 and timeline: a view of the customer, logged.
    customer_access_record(customer_id=conversation.customer_id, user=request.user,
                           door=CustomerAccessDoor.CONSOLE_CONVERSATION)
    customer = _customer_rows(conversation.customer_id)
    conversation.customer = customer
    context = _workspace_context(request, customer=customer, conversation=conversation)
    # ``?watch=1`` (a supervisor's "watch live" from the wallboard): the same live page without the
    # composer and the actions, until they choose to take part (the link drops the parameter).
    context["watching"] = request.GET.get("watch") == "1"
    if request.GET.get("fragment") == "panes":
        return render(request, "console/_panes.html", context)
    return render(request, "console/workspace.html", context)


@require_GET
def customer_detail(request, customer_id: int):
    """One customer: the 360 and the cross-channel timeline, newest ``TIMELINE_LIMIT`` entries (or
    the ones before ``?before=<cursor>`` / after ``?after=``), oldest first."""
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    customer = _customer_rows(access_customer(user=request.user, customer_id=customer_id).pk)
    customer_access_record(customer_id=customer.pk, user=request.user, door=CustomerAccessDoor.CONSOLE_CUSTOMER)
    before = request.GET.get("before") or None
    after = request.GET.get("after") or None
    if before and after:
        after = None
    try:
        context = _workspace_context(request, customer=customer, conversation=None, before=before, after=after)
    except ValidationError:
        return HttpResponseBadRequest(_("Invalid timeline cursor."), content_type="text/plain; charset=utf-8")
    if request.GET.get("fragment") == "panes":
        return render(request, "console/_panes.html", context)
    return render(request, "console/workspace.html", context)


@require_GET
@console_staff_required
def customer_list(request):
    q = request.GET.get("q", "").strip()[:200]
    customers = list(customer_search(user=request.user, q=q).prefetch_related("tags", "identities")
                     .order_by("-updated_at", "-id")[:HOME_LIMIT])
    return render(request, "console/home.html", {"customers": customers, "q": q, "limit": HOME_LIMIT})


# --- fragments for live updates ----------------------------------------------------------------------------

@require_GET
@console_staff_required
def sidebar_fragment(request):
    agent = agent_of(request.user)
    supervisor = is_supervisor(request.user)
    return render(request, "console/_sidebar.html", {
        "sidebar": selectors.sidebar(agent=agent, supervisor=supervisor), "agent": agent, "supervisor": supervisor,
        "presences": list(PresenceState.objects.all()), "now": timezone.now(),
        "current_id": int_or_none(request.GET.get("current")),
    })


@require_GET
@console_staff_required
def work_sync(request):
    """The agent's work as stored (selectors.work_sync): polled by the console after a reconnect
    and on a timer, so an event lost on the way is noticed within a period."""
    return JsonResponse(selectors.work_sync(agent=agent_of(request.user)))


def int_or_none(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


MAX_SEEN_CONVERSATIONS = 500


def _parse_seen(raw: str) -> dict[int, int]:
    """``{"conversation id": last seq}`` from the query string: decoded as any client JSON is
    (bounded nesting, finite numbers), ids and numbers that fit the database."""
    try:
        data = json_decode(raw or "{}")
        if not isinstance(data, dict) or len(data) > MAX_SEEN_CONVERSATIONS:
            raise ValueError("not a map of conversations")
        return {database_integer(k): database_integer(v) for k, v in data.items()}
    except (ValueError, TypeError, OverflowError):
        raise ValidationError("bad seen map") from None


def _render_entry(request, message: Message, *, current_id: int | None) -> str:
    from profiles.timeline import Position, TimelineEntry

    from ..selectors import MessageTimelineSource

    # The same position the timeline gives the row, so the page sorts it in the same place.
    source = MessageTimelineSource
    entry = TimelineEntry(source.type, Position(message.created_at, source.rank, message.pk), message)
    return render_to_string("console/_timeline_entry.html", {"entry": entry, "current_id": current_id}, request=request)


@require_GET
@console_login_required
def timeline_catchup(request, customer_id: int):
    """Entries of the customer's timeline the page has not seen, by per-conversation sequence
    number (``seen`` = {"conversation id": last seq}), plus fresh renderings of the messages in
    ``refresh`` (delivery states). The client inserts by key, so a repeat is never shown twice."""
    customer = access_customer(user=request.user, customer_id=customer_id)
    try:
        seen = _parse_seen(request.GET.get("seen", "{}"))
    except ValidationError:
        return JsonResponse({"error": _("Invalid catch-up position.")}, status=400)
    customer_access_record(customer_id=customer.pk, user=request.user, door=CustomerAccessDoor.CONSOLE_TIMELINE)
    current_id = int_or_none(request.GET.get("current"))
    rows, new_seen, complete = selectors.timeline_catchup(customer_id=customer.pk, seen=seen)
    refresh_ids = [i for i in (int_or_none(x) for x in request.GET.get("refresh", "").split(",")[:100]) if i]
    refreshed = []
    if refresh_ids:
        from ..selectors import MessageTimelineSource

        source = MessageTimelineSource()
        refreshed = list(source.queryset(customer_id=customer.pk).filter(pk__in=refresh_ids))
        source.hydrate(refreshed)
    _attach(customer, rows + refreshed)
    return JsonResponse({
        "complete": complete,
        "seen": {str(k): v for k, v in new_seen.items()},
        "entries": [
            {"key": f"m-{m.pk}", "conversation": m.conversation_id, "seq": m.seq,
             "html": _render_entry(request, m, current_id=current_id)}
            for m in rows + refreshed
        ],
    })


@require_GET
@console_login_required
def timeline_older(request, customer_id: int):
    """The page of entries before ``before``, as list items (scrolling up loads older history)."""
    customer = access_customer(user=request.user, customer_id=customer_id)
    try:
        page = _timeline(customer, before=request.GET.get("before") or None)
    except ValidationError:
        return HttpResponseBadRequest(_("Invalid timeline cursor."), content_type="text/plain; charset=utf-8")
    customer_access_record(customer_id=customer.pk, user=request.user, door=CustomerAccessDoor.CONSOLE_TIMELINE)
    return render(request, "console/_timeline_page.html", {
        "page": page, "current_id": int_or_none(request.GET.get("current")), "customer": customer,
    })


@require_GET
@console_login_required
def message_html(request, message_id: int):
    """An email's sanitized HTML, for a sandboxed frame (no script, no same-origin, its own CSP:
    no network access at all, so a tracking pixel never reports the agent's visit)."""
    message = Message.objects.filter(pk=message_id).exclude(html="").only("pk", "html", "customer_id").first()
    if message is None:
        raise Http404
    access_customer(user=request.user, customer_id=message.customer_id)
    customer_access_record(customer_id=message.customer_id, user=request.user, door=CustomerAccessDoor.CONSOLE_TIMELINE)
    # Its own inline images (cid:) inside the page: the frame may load nothing from anywhere.
    markup = with_inline_images(message.html, message_inline_images(message_id=message.pk))
    body = ("<!DOCTYPE html><html><head><meta charset=\"utf-8\"><base target=\"_blank\"></head>"
            f"<body>{markup}</body></html>")
    response = HttpResponse(body, content_type="text/html; charset=utf-8")
    response["Content-Security-Policy"] = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; font-src data:; frame-ancestors 'self'; "
        "sandbox allow-popups allow-popups-to-escape-sandbox"
    )
    response["X-Frame-Options"] = "SAMEORIGIN"
    return response


@require_GET
@console_login_required
def canned_list(request):
    conversation = None
    if request.GET.get("conversation"):
        conversation = access_conversation(user=request.user, conversation_id=request.GET["conversation"])
    agent = agent_of(request.user)
    return JsonResponse({"responses": selectors.canned_responses(conversation=conversation, agent=agent,
                                                                 language=get_language() or "")})
