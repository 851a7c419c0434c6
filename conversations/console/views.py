"""Agent console pages (server-rendered, read-only for now).

Every page is for contact-center staff only. Reads go through selectors (``profiles.selectors``,
``profiles.timeline``); these views add only the few fixed-count queries a page needs, so the
number of queries never depends on the size of a customer's history.
"""

from functools import wraps

from conversations.models import Conversation
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Prefetch, Q
from django.http import HttpResponseBadRequest
from django.shortcuts import render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET

from contactcenter.permissions import is_contact_center_staff
from profiles.models import Consent, Customer, CustomerNote, Identity, IdentityKind, MergeSuggestion, SuggestionStatus
from profiles.selectors import access_customer, customer_search
from profiles.timeline import customer_timeline

HOME_LIMIT = 50
TIMELINE_LIMIT = 50

# Why a merge suggestion exists, in words an agent understands (reason codes come from
# profiles.services.suggestions and profiles.services.identity).
SUGGESTION_REASONS = {
    "signature_phone": gettext_lazy("Phone number found in an email signature"),
    "same_name_same_domain": gettext_lazy("Same name and the same email domain"),
}


def console_staff_required(view):
    """Anonymous: redirect to the login page. Signed in without a contact-center role: 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_contact_center_staff(request.user):
            raise PermissionDenied(_("You need an agent, supervisor or admin account."))
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


@require_GET
@console_staff_required
def console_home(request):
    q = request.GET.get("q", "").strip()[:200]
    customers = list(customer_search(user=request.user, q=q).order_by("-updated_at", "-id")[:HOME_LIMIT])
    return render(request, "console/home.html", {"customers": customers, "q": q, "limit": HOME_LIMIT})


@require_GET
def customer_detail(request, customer_id: int):
    """One customer: profile and the cross-channel timeline, newest ``TIMELINE_LIMIT`` entries
    (or the ones before ``?before=<cursor>``), oldest first.

    A stranger (no role) and an unknown id both get 404: nobody learns which ids exist.
    """
    if not request.user.is_authenticated:
        return redirect_to_login(request.get_full_path())
    customer = access_customer(user=request.user, customer_id=customer_id)
    customer = (
        Customer.objects.select_related("merged_into")
        .prefetch_related(
            "tags",
            Prefetch("identities", queryset=Identity.objects.order_by("kind", "value")),
            Prefetch("consents", queryset=Consent.objects.order_by("channel", "address", "sender")),
            Prefetch("notes", queryset=CustomerNote.objects.select_related("author__agent").order_by("-created_at", "-id")),
        )
        .get(pk=customer.pk)
    )
    before = request.GET.get("before") or None
    after = request.GET.get("after") or None
    if before and after:
        after = None
    try:
        page = customer_timeline(customer_id=customer.pk, before=before, after=after, limit=TIMELINE_LIMIT)
    except ValidationError:
        return HttpResponseBadRequest(_("Invalid timeline cursor."), content_type="text/plain; charset=utf-8")
    messages = [entry.item for entry in page.entries if entry.type == "message"]
    # One query for the page's conversations (subjects), whatever the page size.
    conversations = Conversation.objects.in_bulk({m.conversation_id for m in messages})
    for message in messages:
        # Every message on this timeline belongs to this customer: hand over the rows we hold so
        # author labels and subjects cost no query per message.
        if message.customer_id == customer.pk:
            message.customer = customer
        message.conversation = conversations[message.conversation_id]

    suggestions = []
    rows = (
        MergeSuggestion.objects.filter(Q(customer=customer) | Q(candidate=customer), status=SuggestionStatus.PENDING)
        .select_related("customer", "candidate")
        .order_by("-created_at", "-id")
    )
    for suggestion in rows:
        other = suggestion.candidate if suggestion.customer_id == customer.pk else suggestion.customer
        suggestions.append(
            {
                "other": other,
                "reason": _suggestion_reason(suggestion.reason),
                "evidence": _pairs(suggestion.evidence),
                "created_at": suggestion.created_at,
            }
        )

    return render(
        request,
        "console/customer.html",
        {
            "customer": customer,
            "custom_attributes": _pairs(customer.custom_attributes),
            "suggestions": suggestions,
            "page": page,
            "paged": bool(before or after),
        },
    )
