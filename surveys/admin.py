"""Admin for surveys: definitions and the policy validated when saved (``clean``), requests with
their skip reasons, answers, follow-ups."""

from django import forms
from django.contrib import admin
from django.utils.translation import gettext_lazy as _

from contactcenter.admin import ReadOnlyAdminMixin

from .models import (
    SurveyDefinition,
    SurveyFollowUp,
    SurveyPolicy,
    SurveyRequest,
    SurveyResponse,
)


class SurveyDefinitionForm(forms.ModelForm):
    """Which survey a conversation gets must not be a guess: two active surveys may not name the
    same queue or the same inbox, and only one may cover everything else (neither)."""

    class Meta:
        model = SurveyDefinition
        fields = "__all__"  # the admin's fieldsets choose what is shown

    def clean(self):
        cleaned = super().clean()
        if not cleaned.get("is_active"):
            return cleaned
        others = SurveyDefinition.objects.filter(is_active=True).exclude(pk=self.instance.pk)
        queues, inboxes = cleaned.get("queues"), cleaned.get("inboxes")
        for field, chosen in (("queues", queues), ("inboxes", inboxes)):
            if not chosen:
                continue
            clash = others.filter(**{f"{field}__in": chosen}).distinct()
            if clash.exists():
                self.add_error(field, _("Already covered by another active survey: %(names)s.") % {
                    "names": ", ".join(str(d) for d in clash)})
        if not queues and not inboxes:
            clash = others.filter(queues__isnull=True, inboxes__isnull=True)
            if clash.exists():
                self.add_error(None, _("Another active survey already covers every conversation without a more "
                                       "specific survey: %(names)s. Name queues or inboxes, or deactivate one.") % {
                    "names": ", ".join(str(d) for d in clash)})
        return cleaned


@admin.register(SurveyDefinition)
class SurveyDefinitionAdmin(admin.ModelAdmin):
    form = SurveyDefinitionForm
    list_display = ("name", "kind", "delay_seconds", "sampling_percent", "is_active")
    list_filter = ("kind", "is_active")
    filter_horizontal = ("queues", "inboxes")
    fieldsets = (
        (None, {"fields": ("name", "kind", "is_active")}),
        (_("Questions"), {"fields": ("question_en", "question_ja", "follow_up_en", "follow_up_ja")}),
        (_("Who gets it"), {"fields": ("queues", "inboxes", "sampling_percent", "delay_seconds")}),
    )


@admin.register(SurveyPolicy)
class SurveyPolicyAdmin(admin.ModelAdmin):
    list_display = ("__str__", "days_between", "quiet_start", "quiet_end", "answer_window_hours", "follow_up_queue")

    def has_add_permission(self, request) -> bool:
        # One policy: the first row is the one in force (SurveyPolicy.current).
        return not SurveyPolicy.objects.exists()


# Requests, answers and follow-ups are written by the services only (the tick, the answer paths):
# the admin shows them, with the skip reasons, and never edits a score or a status behind them.
@admin.register(SurveyRequest)
class SurveyRequestAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "conversation", "customer", "channel", "definition", "status", "skip_reason", "due_at",
                    "sent_at")
    list_filter = ("status", "skip_reason", "channel", "definition__kind")
    search_fields = ("=conversation__id", "customer__display_name")
    raw_id_fields = ("conversation", "customer", "agent", "queue", "sent_conversation")
    readonly_fields = ("token", "claimed_at", "sent_at", "sent_channel", "sent_mode", "created_at")
    date_hierarchy = "due_at"


@admin.register(SurveyResponse)
class SurveyResponseAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "kind", "score", "channel", "via", "conversation", "agent", "queue", "answered_at",
                    "changed_at")
    list_filter = ("kind", "channel", "via", "queue")
    raw_id_fields = ("request", "conversation", "customer", "agent", "queue")
    readonly_fields = ("answered_at", "changed_at", "previous_score")


@admin.register(SurveyFollowUp)
class SurveyFollowUpAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("id", "response", "conversation", "created_at")
    raw_id_fields = ("response", "conversation")
