"""Admin for channels, routing configuration, agents, and (read-mostly) conversations and messages.

Messages, delivery events and attachments are written by ingest, outbound delivery and provider
callbacks only: the admin shows them and never edits them. A conversation's customer, inbox and
state are owned by the services (ingest, routing, resolve), so only its routing knobs are editable.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.translation import gettext_lazy as _

from contactcenter.admin import ReadOnlyAdminMixin, ReadOnlyInlineMixin, recent_rows_formset

from .inbox_settings import stores_imap_password
from .models import (
    Call,
    CannedResponse,
    WrapUpCode,
    Offer,
    RoutingRule,
    ImapCursor,
    RawEmail,
    Agent,
    AgentSkill,
    Attachment,
    Conversation,
    Inbox,
    Message,
    MessageStatusEvent,
    PresenceState,
    Queue,
    QueueSkill,
    RecordedProviderRequest,
    Skill,
    TwilioInboundEvent,
)


def _admin_link(obj, label=None):
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else obj)


# --- configuration ----------------------------------------------------------------------------

@admin.register(CannedResponse)
class CannedResponseAdmin(admin.ModelAdmin):
    list_display = ("shortcode", "title", "language", "is_active")
    list_filter = ("is_active", "language")
    search_fields = ("shortcode", "title", "text")


@admin.register(WrapUpCode)
class WrapUpCodeAdmin(admin.ModelAdmin):
    list_display = ("label", "code", "ordering", "is_active")
    list_editable = ("ordering", "is_active")
    search_fields = ("label", "code")



@admin.register(Call)
class CallAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Phone calls as Twilio reported them: the caller's IVR choices, queue, answer, callback,
    voicemail. Written only by the voice webhooks."""

    list_display = ("call_sid", "from_address", "to_address", "status", "outcome", "language", "agent",
                    "callback_requested", "started_at", "duration")
    list_filter = ("status", "outcome", "direction", "callback_requested", "language")
    search_fields = ("call_sid__exact", "from_address", "to_address")
    raw_id_fields = ("conversation", "agent")
    list_select_related = ("agent",)
    date_hierarchy = "started_at"


@admin.register(Inbox)
class InboxAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "address", "default_queue", "reopen_window_days", "is_active", "created_at")
    list_filter = ("kind", "is_active", "default_queue")
    search_fields = ("name", "address")
    ordering = ("kind", "name")
    list_select_related = ("default_queue",)
    readonly_fields = ("created_at",)
    fields = ("name", "kind", "address", "default_queue", "reopen_window_days", "is_active", "secret", "settings",
              "created_at")

    def render_change_form(self, request, context, add=False, change=False, form_url="", obj=None):
        # A password stored before the admin refused it (Inbox.clean) is still what the poller logs
        # in with: whoever opens the inbox learns it is readable here, and what saving will ask.
        # On opening only: a refused save already says it, next to the field.
        if request.method == "GET" and obj is not None and stores_imap_password(obj.settings):
            self.message_user(request, _(
                'The IMAP settings of this inbox hold a mailbox password, which every admin who opens it can '
                'read. Put the password in an environment variable of the workers, name that variable in '
                '"password_env" and remove "password": the inbox cannot be saved until then.'), messages.WARNING)
        return super().render_change_form(request, context, add=add, change=change, form_url=form_url, obj=obj)


@admin.register(Skill)
class SkillAdmin(admin.ModelAdmin):
    list_display = ("name", "slug")
    search_fields = ("name", "slug")
    ordering = ("name",)
    prepopulated_fields = {"slug": ("name",)}


class RoutingRuleInline(admin.TabularInline):
    model = RoutingRule
    extra = 0
    fields = ("order", "name", "expression", "is_active")


class QueueSkillInline(admin.TabularInline):
    model = QueueSkill
    autocomplete_fields = ("skill",)
    extra = 0
    verbose_name_plural = _("required skills (agents need every one, at the level given or above)")


@admin.register(Queue)
class QueueAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "channels", "priority", "sla_seconds", "is_default", "auto_accept", "is_active")
    list_filter = ("is_active", "is_default", "auto_accept", "required_skills")
    search_fields = ("name", "slug")
    ordering = ("name",)
    prepopulated_fields = {"slug": ("name",)}
    raw_id_fields = ("overflow_queue",)
    inlines = [QueueSkillInline, RoutingRuleInline]
    fieldsets = (
        (None, {"fields": ("name", "slug", "channels", "priority", "sla_seconds", "is_active",
                           "is_default")}),
        (_("Offers"), {"fields": ("auto_accept", "offer_timeout_seconds", "known_agent_window_days",
                                  "known_agent_timeout_seconds", "allow_pick", "wrap_up_required",
                                  "wrap_up_limit_seconds")}),
        (_("Business hours and overflow"), {"fields": ("business_hours", "after_hours_action", "after_hours_message",
                                                       "after_hours_fallback_queue",
                                                       "overflow_queue", "overflow_after_seconds")}),
        (_("Agents going offline"), {"fields": ("offline_policy", "offline_grace_seconds")}),
    )


@admin.register(RoutingRule)
class RoutingRuleAdmin(admin.ModelAdmin):
    """Ordered filters: the first active rule whose expression matches picks the queue. An
    invalid expression is refused on save with the reason (RoutingRule.clean)."""

    list_display = ("order", "name", "expression", "queue", "is_active")
    list_display_links = ("name",)
    list_editable = ("order", "is_active")
    list_filter = ("is_active", "queue")
    search_fields = ("name", "expression")
    list_select_related = ("queue",)


@admin.register(Offer)
class OfferAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("conversation", "agent", "queue", "channel", "step", "status", "created_at", "expires_at",
                    "decided_at")
    list_filter = ("status", "step", "channel", "queue", "agent")
    raw_id_fields = ("conversation", "agent", "queue")
    list_select_related = ("conversation", "agent", "queue")
    date_hierarchy = "created_at"


@admin.register(PresenceState)
class PresenceStateAdmin(admin.ModelAdmin):
    list_display = ("name", "is_available", "is_offline", "ordering")
    list_editable = ("ordering",)
    list_filter = ("is_available", "is_offline")
    search_fields = ("name",)
    ordering = ("ordering", "name")


class AgentSkillInline(admin.TabularInline):
    model = AgentSkill
    autocomplete_fields = ("skill",)
    extra = 0


class AgentAdminForm(forms.ModelForm):
    """The phone calls ring on when the agent answers on their phone: a valid number, stored E.164."""

    class Meta:
        model = Agent
        fields = "__all__"

    def clean(self):
        from .channels.twilio_voice.softphone.profile import agent_voice_settings_clean

        cleaned = super().clean()
        try:
            _answer_on, phone = agent_voice_settings_clean(cleaned.get("voice_answer_on") or "",
                                                          cleaned.get("voice_phone_number") or "")
        except ValidationError as exc:
            field = "voice_answer_on" if exc.code == "answer_on" else "voice_phone_number"
            self.add_error(field, exc)
        else:
            cleaned["voice_phone_number"] = phone
        return cleaned


@admin.register(Agent)
class AgentAdmin(admin.ModelAdmin):
    form = AgentAdminForm
    list_display = ("display_name", "user", "presence", "presence_changed_at", "last_assigned_at", "languages")
    list_filter = ("presence", "skills", "ui_language")
    search_fields = ("display_name", "user__username", "user__email")
    ordering = ("display_name",)
    autocomplete_fields = ("user",)
    list_select_related = ("user", "presence")
    readonly_fields = ("presence_changed_at", "last_assigned_at")
    inlines = (AgentSkillInline,)


@admin.register(AgentSkill)
class AgentSkillAdmin(admin.ModelAdmin):
    list_display = ("agent", "skill", "level")
    list_filter = ("skill", "level")
    search_fields = ("agent__display_name", "skill__name")
    ordering = ("agent__display_name", "skill__name")
    autocomplete_fields = ("agent", "skill")
    list_select_related = ("agent", "skill")


# --- conversations ----------------------------------------------------------------------------


class MessageInline(ReadOnlyInlineMixin, admin.TabularInline):
    """The latest messages of a conversation, read-only; each links to its own page."""

    model = Message
    fields = ("created_at", "direction", "kind", "author", "excerpt", "delivery_status")
    readonly_fields = fields
    ordering = ("-created_at", "-id")
    formset = recent_rows_formset(50)
    verbose_name_plural = _("latest messages")

    def get_queryset(self, request):
        # ``author_label`` reads the agent or the customer of each row.
        return super().get_queryset(request).select_related("author_agent", "customer")

    @admin.display(description=_("author"))
    def author(self, obj):
        return obj.author_label or "-"

    @admin.display(description=_("text"))
    def excerpt(self, obj):
        return Truncator(obj.text or obj.get_event_type_display()).chars(120)


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = (
        "id", "customer", "channel", "inbox", "status", "queue", "assignee", "priority", "subject_excerpt",
        "last_message_at", "created_at",
    )
    list_display_links = ("id",)
    list_filter = ("status", "channel", "inbox", "queue", "assignee", "created_at")
    search_fields = ("subject", "customer__display_name", "customer__identities__value", "id__exact")
    ordering = ("-last_message_at", "-id")
    date_hierarchy = "created_at"
    list_select_related = ("customer", "inbox", "queue", "assignee")
    list_per_page = 50
    readonly_fields = (
        "customer_link", "inbox", "channel", "status", "assignee", "created_at", "first_response_at", "waiting_since",
        "last_message_at", "snoozed_until", "resolved_at", "updated_at", "all_messages", "queue_reason", "queued_at",
        "routing_note",
    )
    fieldsets = (
        (None, {"fields": ("customer_link", "inbox", "channel", "status", "assignee", "subject")}),
        (_("Routing"), {"fields": ("queue", "priority", "queue_reason", "queued_at", "routing_note")}),
        (_("Times"), {"fields": ("created_at", "first_response_at", "waiting_since", "last_message_at",
                                 "snoozed_until", "resolved_at", "updated_at")}),
        (_("Messages"), {"fields": ("all_messages",)}),
    )
    inlines = (MessageInline,)

    def has_add_permission(self, request) -> bool:
        # Conversations open through ingest (or the console), which also routes and notifies.
        return False

    @admin.display(description=_("subject"))
    def subject_excerpt(self, obj):
        return Truncator(obj.subject).chars(60)

    @admin.display(description=_("customer"))
    def customer_link(self, obj):
        return _admin_link(obj.customer)

    @admin.display(description=_("all messages"))
    def all_messages(self, obj):
        url = reverse("admin:conversations_message_changelist")
        return format_html('<a href="{}?conversation__id__exact={}">{}</a>', url, obj.pk, _("Show all messages"))


class MessageStatusEventInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = MessageStatusEvent
    fields = ("received_at", "status", "error_code", "provider_id")
    readonly_fields = fields


class AttachmentInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = Attachment
    fields = ("filename", "content_type", "size", "state", "state_reason", "file")
    readonly_fields = fields


@admin.register(Message)
class MessageAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Messages are a record of what was said: never added, edited or deleted by hand."""

    list_display = (
        "id", "conversation_link", "customer", "channel", "direction", "kind", "excerpt", "delivery_status",
        "created_at",
    )
    list_display_links = ("id",)
    list_filter = ("channel", "direction", "kind", "delivery_status", "inbox", "created_at")
    search_fields = ("text", "provider_id", "customer__display_name")
    ordering = ("-created_at", "-id")
    date_hierarchy = "created_at"
    list_select_related = ("customer",)
    list_per_page = 50
    show_full_result_count = False
    inlines = (MessageStatusEventInline, AttachmentInline)

    @admin.display(description=_("conversation"), ordering="conversation")
    def conversation_link(self, obj):
        url = reverse("admin:conversations_conversation_change", args=[obj.conversation_id])
        return format_html('<a href="{}">#{}</a>', url, obj.conversation_id)

    @admin.display(description=_("text"))
    def excerpt(self, obj):
        return Truncator(obj.text or obj.get_event_type_display()).chars(80)


@admin.register(MessageStatusEvent)
class MessageStatusEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("provider_id", "status", "error_code", "message_link", "received_at")
    list_filter = ("status", "received_at")
    search_fields = ("provider_id", "error_code")
    ordering = ("-received_at", "-id")
    date_hierarchy = "received_at"
    show_full_result_count = False

    @admin.display(description=_("message"), ordering="message")
    def message_link(self, obj):
        # The id is on the row: no join needed to link it.
        if obj.message_id is None:
            return "-"
        url = reverse("admin:conversations_message_change", args=[obj.message_id])
        return format_html('<a href="{}">#{}</a>', url, obj.message_id)


@admin.register(Attachment)
class AttachmentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("filename", "content_type", "size", "state", "message_link", "created_at")
    list_filter = ("state", "created_at")
    search_fields = ("filename", "content_type", "source_url")
    ordering = ("-created_at", "-id")

    @admin.display(description=_("message"), ordering="message")
    def message_link(self, obj):
        url = reverse("admin:conversations_message_change", args=[obj.message_id])
        return format_html('<a href="{}">#{}</a>', url, obj.message_id)


@admin.register(RecordedProviderRequest)
class RecordedProviderRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """What would have gone to Twilio or an SMTP server without credentials (dev/tests)."""

    list_display = ("created_at", "provider", "method", "to", "from_address", "sid", "status_code", "body_excerpt")
    list_filter = ("provider", "method", "status_code")
    search_fields = ("to", "from_address", "sid", "body")
    ordering = ("-created_at", "-id")
    date_hierarchy = "created_at"

    @admin.display(description=_("body"))
    def body_excerpt(self, obj):
        return Truncator(obj.body).chars(80)


@admin.register(RawEmail)
class RawEmailAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The byte-for-byte mail as received; shown by size and hash, never rendered."""

    list_display = ("message", "source", "envelope_from", "size", "sha256", "received_at")
    list_filter = ("source",)
    search_fields = ("sha256", "envelope_from", "message__provider_id")
    raw_id_fields = ("message",)
    exclude = ("raw",)
    list_select_related = ("message",)
    date_hierarchy = "received_at"


@admin.register(ImapCursor)
class ImapCursorAdmin(admin.ModelAdmin):
    """Where IMAP polling of each mailbox stands; editable so an admin can re-read a mailbox."""

    list_display = ("inbox", "mailbox", "uidvalidity", "last_uid", "last_polled_at", "failures", "last_error")
    list_filter = ("inbox",)
    list_select_related = ("inbox",)
    readonly_fields = ("last_polled_at", "last_error", "failing_uid", "failures")


# --- Twilio inbound events ------------------------------------------------------------------------


class TwilioInboundStateFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return (("pending", _("pending")), ("processed", _("processed")), ("failed", _("failed")))

    def queryset(self, request, queryset):
        if self.value() == "pending":
            return queryset.filter(processed_at__isnull=True, failed_at__isnull=True)
        if self.value() == "processed":
            return queryset.filter(processed_at__isnull=False)
        if self.value() == "failed":
            return queryset.filter(failed_at__isnull=False)
        return queryset


@admin.register(TwilioInboundEvent)
class TwilioInboundEventAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Inbound SMS/WhatsApp webhooks as Twilio posted them. One that could not be ingested (bad
    input, or still failing after every retry) stays here with its error; once the cause is fixed,
    "Process again" gives it another try."""

    list_display = ("message_sid", "sender", "recipient", "state", "attempts", "error_excerpt", "received_at",
                    "processed_at")
    list_filter = (TwilioInboundStateFilter,)
    search_fields = ("message_sid__exact", "sender", "recipient")
    ordering = ("-id",)
    list_per_page = 50
    show_full_result_count = False
    readonly_fields = ("message_link",)
    actions = ("process_again",)

    @admin.display(description=_("state"))
    def state(self, obj):
        if obj.processed_at:
            return _("processed")
        return _("failed") if obj.failed_at else _("pending")

    @admin.display(description=_("last error"))
    def error_excerpt(self, obj):
        lines = obj.last_error.strip().splitlines()
        return Truncator(lines[-1]).chars(80) if lines else ""

    @admin.display(description=_("message"))
    def message_link(self, obj):
        message = Message.objects.filter(provider_id=obj.message_sid).only("id").first()
        return _admin_link(message, f"#{message.pk}") if message else "-"

    def has_process_permission(self, request) -> bool:
        # Re-running processing writes through the ingest service: for those allowed to change events.
        return request.user.has_perm("conversations.change_twilioinboundevent")

    @admin.action(description=_("Process again"), permissions=["process"])
    def process_again(self, request, queryset):
        from .channels.twilio_messaging.ingest import twilio_inbound_events_retry

        count = twilio_inbound_events_retry(event_ids=list(queryset.values_list("pk", flat=True)[:500]))
        self.message_user(request, _("%(count)d event(s) queued for processing.") % {"count": count})
