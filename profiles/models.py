"""Customers and everything we know about them outside conversations.

``profiles`` never imports ``conversations`` (DESIGN.md); conversations plug their rows into the
merge and the timeline through ``merge_registry`` and ``timeline.register_source``.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.utils.translation import pgettext_lazy


class JourneyStage(models.TextChoices):
    INTEREST = "interest", _("Interest")
    INFORMATION_GATHERING = "information_gathering", _("Information gathering")
    COMPARISON = "comparison", _("Comparison")
    PURCHASE_DECISION = "purchase_decision", _("Purchase decision")
    PURCHASE = "purchase", _("Purchase")
    AFTER_SALES_SUPPORT = "after_sales_support", _("After-sales support")
    REPEAT_PURCHASE = "repeat_purchase", _("Repeat purchase")
    FEEDBACK = "feedback", _("Feedback")


class Tag(models.Model):
    name = models.CharField(_("name"), max_length=50, unique=True)

    class Meta:
        verbose_name = _("tag")
        verbose_name_plural = _("tags")
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Customer(models.Model):
    display_name = models.CharField(_("display name"), max_length=200, blank=True)
    language = models.CharField(_("language"), max_length=16, blank=True, help_text=_("BCP 47, e.g. ja or en"))
    time_zone = models.CharField(_("time zone"), max_length=64, blank=True)
    journey_stage = models.CharField(
        _("journey stage"), max_length=32, choices=JourneyStage.choices, default=JourneyStage.INTEREST
    )
    tags = models.ManyToManyField(Tag, verbose_name=_("tags"), blank=True, related_name="customers")
    custom_attributes = models.JSONField(_("custom attributes"), default=dict, blank=True)
    merged_into = models.ForeignKey(
        "self", verbose_name=_("merged into"),
        null=True, blank=True, on_delete=models.PROTECT, related_name="merged_customers",
        help_text=_("Set while this customer is merged into another one."),
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now, db_index=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)

    class Meta:
        verbose_name = _("customer")
        verbose_name_plural = _("customers")
        ordering = ["-created_at", "-id"]
        permissions = [("merge_customer", "Can merge and unmerge customers")]
        indexes = [models.Index(fields=["display_name"], name="customer_name_idx")]

    def __str__(self) -> str:
        return self.display_name or f"Customer #{self.pk}"

    @property
    def is_merged(self) -> bool:
        return self.merged_into_id is not None


class IdentityKind(models.TextChoices):
    PHONE = "phone", _("Phone")
    WHATSAPP = "whatsapp", _("WhatsApp")
    EMAIL = "email", _("Email")
    WEB_VISITOR = "web_visitor", _("Web visitor")
    EXTERNAL_ID = "external_id", _("External id")


class IdentitySource(models.TextChoices):
    """How we learned an address; decides whether it may link customers on its own."""

    INBOUND = "inbound", _("Inbound message from this address")
    PROVIDER = "provider", _("Verified by the provider")
    SIGNED = "signed", _("Signed by the customer's site")
    CLAIMED = "claimed", _("Claimed by the customer (typed, unverified)")
    SIGNATURE = "signature", _("Found in an email signature")
    AGENT = "agent", _("Entered by an agent")
    IMPORT = "import", _("Imported")
    MERGE = "merge", _("Confirmed merge suggestion")


class Identity(models.Model):
    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="identities")
    kind = models.CharField(_("kind"), max_length=16, choices=IdentityKind.choices)
    value = models.CharField(_("value"), max_length=320, help_text=_("Normalized: E.164 phone, lowercased email, …"))
    verified = models.BooleanField(_("verified"), default=False)
    source = models.CharField(
        _("source"), max_length=16, choices=IdentitySource.choices, default=IdentitySource.INBOUND)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    last_seen_at = models.DateTimeField(_("last seen at"), null=True, blank=True)

    class Meta:
        verbose_name = _("identity")
        verbose_name_plural = _("identities")
        ordering = ["kind", "value"]
        constraints = [models.UniqueConstraint(fields=["kind", "value"], name="identity_unique_kind_value")]
        indexes = [models.Index(fields=["customer", "kind"], name="identity_customer_kind_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.value}"


class TouchpointKind(models.TextChoices):
    PAGE_VIEW = "page_view", _("Page viewed")
    PRODUCT_VIEW = "product_view", _("Product viewed")
    PURCHASE = "purchase", _("Purchase")
    APP_EVENT = "app_event", _("App event")
    STORE_VISIT = "store_visit", _("Store visit")
    OTHER = "other", _("Other")


class Touchpoint(models.Model):
    """Something the customer did outside a conversation: what, when, where, on which device."""

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="touchpoints")
    kind = models.CharField(_("kind"), max_length=16, choices=TouchpointKind.choices)
    title = models.CharField(_("title"), max_length=300, help_text=_("What: page title, product, order, event name"))
    url = models.CharField(_("url"), max_length=2000, blank=True, help_text=_("Where: page URL, store, app screen"))
    location = models.CharField(_("location"), max_length=200, blank=True, help_text=_("Where the customer was"))
    device = models.CharField(_("device"), max_length=100, blank=True)
    channel = models.CharField(_("channel"), max_length=32, blank=True, help_text=_("web, app, store, …"))
    data = models.JSONField(_("data"), default=dict, blank=True)
    occurred_at = models.DateTimeField(_("occurred at"), default=timezone.now)

    class Meta:
        verbose_name = _("touchpoint")
        verbose_name_plural = _("touchpoints")
        ordering = ["-occurred_at", "-id"]
        indexes = [models.Index(fields=["customer", "occurred_at", "id"], name="touchpoint_timeline_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.title}"


class CustomerNote(models.Model):
    customer = models.ForeignKey(Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="notes")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("author"), null=True, blank=True, on_delete=models.SET_NULL)
    text = models.TextField(_("text"))
    created_at = models.DateTimeField(_("created at"), default=timezone.now)

    class Meta:
        verbose_name = _("customer note")
        verbose_name_plural = _("customer notes")
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.text[:60]


class ConsentStatus(models.TextChoices):
    OPTED_IN = "opted_in", _("Opted in")
    OPTED_OUT = "opted_out", _("Opted out")


class Consent(models.Model):
    """Consent of one customer address towards one of our senders (blank sender: all of them)."""

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="consents")
    channel = models.CharField(_("channel"), max_length=16)
    address = models.CharField(_("address"), max_length=320)
    sender = models.CharField(_("sender"), max_length=320, blank=True, default="")
    status = models.CharField(_("status"), max_length=16, choices=ConsentStatus.choices)
    changed_at = models.DateTimeField(_("changed at"), default=timezone.now)
    source = models.CharField(
        _("source"), max_length=64, blank=True, help_text=_("How: keyword, OptOutType, error 21610, agent…"))
    evidence = models.TextField(_("evidence"), blank=True)

    class Meta:
        verbose_name = _("consent")
        verbose_name_plural = _("consents")
        constraints = [
            models.UniqueConstraint(fields=["channel", "address", "sender"], name="consent_unique_address_sender")
        ]
        indexes = [models.Index(fields=["customer", "channel"], name="consent_customer_idx")]

    def __str__(self) -> str:
        return f"{self.channel} {self.address} → {self.sender or '*'}: {self.status}"


class CustomerMerge(models.Model):
    """One merge of ``source`` into ``target``, with exactly what moved so it can be undone."""

    target = models.ForeignKey(Customer, verbose_name=_("target"), on_delete=models.PROTECT, related_name="merges_in")
    # "source" alone is where an identity or a consent came from; here it is a customer.
    source = models.ForeignKey(Customer, verbose_name=pgettext_lazy("customer merge", "source"), on_delete=models.PROTECT,
                               related_name="merges_out")
    performed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("performed by"),
        null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    # {"<app_label.model>": [ids moved from source to target], "tags": [tag ids added to target]}
    moved = models.JSONField(_("moved"), default=dict)
    # Field values of both customers before the merge, restored on undo.
    target_before = models.JSONField(_("target before"), default=dict)
    source_before = models.JSONField(_("source before"), default=dict)
    suggestion = models.ForeignKey(
        "MergeSuggestion", verbose_name=_("suggestion"),
        null=True, blank=True, on_delete=models.SET_NULL, related_name="merges"
    )
    undone_at = models.DateTimeField(_("undone at"), null=True, blank=True)
    undone_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("undone by"),
        null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("customer merge")
        verbose_name_plural = _("customer merges")
        ordering = ["-created_at", "-id"]
        constraints = [
            # A customer can be the source of at most one active merge at a time.
            models.UniqueConstraint(fields=["source"], condition=Q(undone_at__isnull=True), name="merge_one_active_per_source")
        ]

    def __str__(self) -> str:
        return f"#{self.source_id} → #{self.target_id}{' (undone)' if self.undone_at else ''}"


class SuggestionStatus(models.TextChoices):
    PENDING = "pending", _("Pending")
    CONFIRMED = "confirmed", _("Confirmed")
    DISMISSED = "dismissed", _("Dismissed")


class MergeSuggestion(models.Model):
    """An unverified hint that ``candidate`` is the same person as ``customer``; an agent decides."""

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="merge_suggestions")
    candidate = models.ForeignKey(
        Customer, verbose_name=_("candidate"), on_delete=models.CASCADE, related_name="suggested_for")
    reason = models.CharField(_("reason"), max_length=32)
    evidence = models.JSONField(_("evidence"), default=dict)
    status = models.CharField(
        _("status"), max_length=16, choices=SuggestionStatus.choices, default=SuggestionStatus.PENDING)
    created_at = models.DateTimeField(_("created at"), default=timezone.now)
    decided_at = models.DateTimeField(_("decided at"), null=True, blank=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("decided by"),
        null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        verbose_name = _("merge suggestion")
        verbose_name_plural = _("merge suggestions")
        ordering = ["-created_at", "-id"]
        constraints = [
            models.UniqueConstraint(
                fields=["customer", "candidate", "reason"],
                condition=Q(status="pending"),
                name="suggestion_one_pending_per_pair_reason",
            ),
            models.CheckConstraint(condition=~Q(customer=models.F("candidate")), name="suggestion_not_self"),
        ]

    def __str__(self) -> str:
        return f"#{self.candidate_id} may be #{self.customer_id} ({self.reason})"


class CustomerAccessDoor(models.TextChoices):
    CONSOLE_CONVERSATION = "console_conversation", _("Console: conversation")
    CONSOLE_CUSTOMER = "console_customer", _("Console: customer")
    CONSOLE_TIMELINE = "console_timeline", _("Console: timeline")
    API_CUSTOMER = "api_customer", _("API: customer")
    API_TIMELINE = "api_timeline", _("API: timeline")


class CustomerAccess(models.Model):
    """One view of a customer's 360 or timeline: who, when, through which door (Japan's APPI expects
    a business to know who accessed personal data). Written by ``customer_access_record`` only, at
    most once per viewer, customer and door kind within a short window; read by supervisors and
    admins."""

    customer = models.ForeignKey(
        Customer, verbose_name=_("customer"), on_delete=models.CASCADE, related_name="accesses")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, verbose_name=_("user"), null=True, on_delete=models.SET_NULL, related_name="+")
    # The name at the time: the row stays readable after the account is renamed or deleted.
    username = models.CharField(_("username"), max_length=150)
    door = models.CharField(_("door"), max_length=32, choices=CustomerAccessDoor.choices)
    accessed_at = models.DateTimeField(_("accessed at"), default=timezone.now)

    class Meta:
        verbose_name = _("customer access")
        verbose_name_plural = _("customer access log")
        ordering = ["-accessed_at", "-id"]
        indexes = [
            models.Index(fields=["customer", "accessed_at"], name="customer_access_customer_idx"),
            models.Index(fields=["user", "accessed_at"], name="customer_access_user_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.username} → #{self.customer_id} ({self.door})"
