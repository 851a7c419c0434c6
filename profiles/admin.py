"""Admin for customers, their identities and history, and merges.

Merges and unmerges are admin actions that call the merge services (never ``.save()`` here), and
need ``profiles.merge_customer``. Customer data is rendered through Django's escaping or
``format_html``; nothing here marks customer content safe.
"""

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import ValidationError
from django.db.models import Count, Q
from django.urls import reverse
from django.utils.html import format_html, format_html_join
from django.utils.text import Truncator
from django.utils.translation import gettext, ngettext
from django.utils.translation import gettext_lazy as _

from contactcenter.admin import ReadOnlyAdminMixin, ReadOnlyInlineMixin, recent_rows_formset

from . import addresses
from .models import (
    Consent,
    Customer,
    CustomerAccess,
    CustomerMerge,
    CustomerNote,
    Identity,
    IdentitySource,
    MergeSuggestion,
    Tag,
    Touchpoint,
)
from .services import MergeError, customer_merge, customer_merge_undo, merge_suggestion_decide

MERGE_PERMISSION = "profiles.merge_customer"


def _admin_link(obj, label=None):
    """A link to ``obj``'s admin change page (escaped), or "-" without an object."""
    if obj is None:
        return "-"
    url = reverse(f"admin:{obj._meta.app_label}_{obj._meta.model_name}_change", args=[obj.pk])
    return format_html('<a href="{}">{}</a>', url, label if label is not None else obj)


def _changelist_link(model, label, **filters):
    url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
    query = "&".join(f"{key}={value}" for key, value in filters.items())
    return format_html('<a href="{}?{}">{}</a>', url, query, label)


def _error_text(exc: ValidationError) -> str:
    return " ".join(exc.messages)


class MergePermissionMixin:
    """``@admin.action(permissions=["merge"])`` asks this."""

    def has_merge_permission(self, request) -> bool:
        return request.user.has_perm(MERGE_PERMISSION)


# --- identities -------------------------------------------------------------------------------


class IdentityForm(forms.ModelForm):
    """Stores the canonical value (E.164, lowercased email …) whatever the admin typed, so the
    unique (kind, value) constraint and identity resolution see the same string."""

    class Meta:
        model = Identity
        fields = ("customer", "kind", "value", "verified", "source", "last_seen_at")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not self.instance.pk and "source" in self.fields:
            self.fields["source"].initial = IdentitySource.AGENT

    def clean(self):
        cleaned = super().clean()
        kind, value = cleaned.get("kind"), cleaned.get("value")
        if kind and value:
            try:
                cleaned["value"] = addresses.normalize(kind, value)
            except ValidationError as exc:
                self.add_error("value", exc)
        return cleaned


class IdentityInline(admin.TabularInline):
    model = Identity
    form = IdentityForm
    fields = ("kind", "value", "verified", "source", "created_at", "last_seen_at")
    readonly_fields = ("created_at", "last_seen_at")
    extra = 0


class TouchpointInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = Touchpoint
    fields = ("occurred_at", "kind", "title", "channel", "device", "location")
    readonly_fields = fields
    formset = recent_rows_formset(20)
    verbose_name_plural = _("recent touchpoints")


class CustomerNoteInline(admin.TabularInline):
    """Notes are added here (author = the admin) but never rewritten: they are a record."""

    model = CustomerNote
    fields = ("created_at", "author", "text")
    readonly_fields = ("created_at", "author")
    formset = recent_rows_formset(20)
    extra = 0
    can_delete = False
    verbose_name_plural = _("recent notes")

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_add_permission(self, request, obj=None) -> bool:
        # A merged customer is read-only; notes go to the customer it was merged into.
        if obj is not None and obj.is_merged:
            return False
        return super().has_add_permission(request, obj)

    def get_queryset(self, request):
        return super().get_queryset(request).select_related("author")


class ConsentInline(ReadOnlyInlineMixin, admin.TabularInline):
    model = Consent
    fields = ("channel", "address", "sender", "status", "changed_at", "source")
    readonly_fields = fields


# --- customers --------------------------------------------------------------------------------


class MergedFilter(admin.SimpleListFilter):
    title = _("merged")
    parameter_name = "merged"

    def lookups(self, request, model_admin):
        return (("no", _("Active (not merged)")), ("yes", _("Merged into another customer")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(merged_into__isnull=False)
        if self.value() == "no":
            return queryset.filter(merged_into__isnull=True)
        return queryset


@admin.register(Customer)
class CustomerAdmin(MergePermissionMixin, admin.ModelAdmin):
    list_display = (
        "__str__", "id", "journey_stage", "language", "identity_list", "tag_list", "merged_into_link", "created_at",
    )
    list_display_links = ("__str__", "id")
    list_filter = ("journey_stage", "language", "tags", MergedFilter, "created_at")
    search_fields = ("display_name", "identities__value")
    search_help_text = _("Name, or part of a phone number, email or other identity (090-1234-5678 works too).")
    ordering = ("-created_at", "-id")
    date_hierarchy = "created_at"
    list_select_related = ("merged_into",)
    list_per_page = 50
    filter_horizontal = ("tags",)
    readonly_fields = ("merged_into_link", "history_links", "created_at", "updated_at")
    fieldsets = (
        (None, {"fields": ("display_name", "language", "time_zone", "journey_stage", "tags")}),
        (_("More"), {"fields": ("custom_attributes",)}),
        (_("Record"), {"fields": ("merged_into_link", "history_links", "created_at", "updated_at")}),
    )
    inlines = (IdentityInline, CustomerNoteInline, TouchpointInline, ConsentInline)
    actions = ("merge_into_oldest",)

    def get_queryset(self, request):
        # One query each for the identities and tags of the whole page, however many rows.
        return super().get_queryset(request).prefetch_related("identities", "tags")

    def get_search_results(self, request, queryset, search_term):
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        extra = Q()
        # Identities are stored normalised (+819012345678, lowercased email); accept what people type.
        try:
            _kind, normalized = addresses.parse_address(search_term)
        except ValidationError:
            pass
        else:
            extra |= Q(identities__value=normalized)
        term = search_term.strip().lstrip("#")
        if term.isdigit():
            extra |= Q(pk=int(term))
        if extra:
            results = results | queryset.filter(extra)
            may_have_duplicates = True
        return results, may_have_duplicates

    def has_change_permission(self, request, obj=None) -> bool:
        # A merged customer is a tombstone pointing at its target: edits belong on the target, and
        # the undo restores this row as the merge recorded it.
        if obj is not None and obj.is_merged:
            return False
        return super().has_change_permission(request, obj)

    def save_formset(self, request, form, formset, change):
        instances = formset.save(commit=False)
        for instance in instances:
            if isinstance(instance, CustomerNote) and instance.author_id is None:
                instance.author = request.user
            instance.save()
        for obj in formset.deleted_objects:
            obj.delete()
        formset.save_m2m()

    @admin.display(description=_("identities"))
    def identity_list(self, obj):
        identities = list(obj.identities.all())
        shown = format_html_join(", ", "{}", ((identity.value,) for identity in identities[:3]))
        if len(identities) > 3:
            return format_html("{} (+{})", shown, len(identities) - 3)
        return shown or "-"

    @admin.display(description=_("tags"))
    def tag_list(self, obj):
        return ", ".join(tag.name for tag in obj.tags.all()) or "-"

    @admin.display(description=_("merged into"), ordering="merged_into")
    def merged_into_link(self, obj):
        return _admin_link(obj.merged_into)

    @admin.display(description=_("history"))
    def history_links(self, obj):
        if obj.pk is None:
            return "-"
        links = [
            _changelist_link(Touchpoint, gettext("All touchpoints"), customer__id__exact=obj.pk),
            _changelist_link(CustomerNote, gettext("All notes"), customer__id__exact=obj.pk),
            _changelist_link(CustomerMerge, gettext("Merges into this customer"), target__id__exact=obj.pk),
            _changelist_link(MergeSuggestion, gettext("Merge suggestions"), customer__id__exact=obj.pk),
        ]
        return format_html_join(" · ", "{}", ((link,) for link in links))

    @admin.action(description=_("Merge selected customers into the oldest one"), permissions=["merge"])
    def merge_into_oldest(self, request, queryset):
        customers = list(queryset.order_by("created_at", "id"))
        if len(customers) < 2:
            self.message_user(request, gettext("Select at least two customers to merge."), level=messages.WARNING)
            return
        target, sources = customers[0], customers[1:]
        merged = 0
        for source in sources:
            # Each pair is its own transaction inside the service: a refused pair leaves no trace
            # and does not stop the others.
            try:
                record = customer_merge(source=source, target=target, actor=request.user)
            except MergeError as exc:
                self.message_user(
                    request,
                    gettext("Could not merge %(source)s into %(target)s: %(reason)s")
                    % {"source": source, "target": target, "reason": _error_text(exc)},
                    level=messages.ERROR,
                )
                continue
            merged += 1
            self.log_change(request, target, gettext("Merged customer #%(source)s into this one (merge #%(merge)s).")
                            % {"source": source.pk, "merge": record.pk})
        if merged:
            self.message_user(
                request,
                ngettext(
                    "Merged %(count)d customer into %(target)s.", "Merged %(count)d customers into %(target)s.", merged
                ) % {"count": merged, "target": target},
                level=messages.SUCCESS,
            )


@admin.register(Tag)
class TagAdmin(admin.ModelAdmin):
    list_display = ("name", "customer_count")
    search_fields = ("name",)
    ordering = ("name",)

    def get_queryset(self, request):
        return super().get_queryset(request).annotate(customer_count=Count("customers"))

    @admin.display(description=_("customers"), ordering="customer_count")
    def customer_count(self, obj):
        return obj.customer_count


@admin.register(Identity)
class IdentityAdmin(admin.ModelAdmin):
    form = IdentityForm
    list_display = ("value", "kind", "customer", "verified", "source", "created_at", "last_seen_at")
    list_filter = ("kind", "verified", "source")
    search_fields = ("value", "customer__display_name")
    ordering = ("kind", "value")
    autocomplete_fields = ("customer",)
    list_select_related = ("customer",)
    readonly_fields = ("created_at",)


@admin.register(Touchpoint)
class TouchpointAdmin(admin.ModelAdmin):
    list_display = ("title", "kind", "customer", "channel", "device", "location", "occurred_at")
    list_filter = ("kind", "channel", "occurred_at")
    search_fields = ("title", "url", "customer__display_name")
    ordering = ("-occurred_at", "-id")
    date_hierarchy = "occurred_at"
    autocomplete_fields = ("customer",)
    list_select_related = ("customer",)


@admin.register(CustomerNote)
class CustomerNoteAdmin(admin.ModelAdmin):
    list_display = ("excerpt", "customer", "author", "created_at")
    list_filter = ("created_at",)
    search_fields = ("text", "customer__display_name")
    ordering = ("-created_at", "-id")
    autocomplete_fields = ("customer",)
    readonly_fields = ("author", "created_at")
    list_select_related = ("customer", "author")

    @admin.display(description=_("text"))
    def excerpt(self, obj):
        return Truncator(obj.text).chars(80)

    def save_model(self, request, obj, form, change):
        if not change and obj.author_id is None:
            obj.author = request.user
        super().save_model(request, obj, form, change)


@admin.register(Consent)
class ConsentAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """Consent changes carry evidence and come from keywords, providers and agents through
    ``consent_record``; the admin shows them."""

    list_display = ("address", "channel", "sender", "status", "customer", "changed_at", "source")
    list_filter = ("status", "channel")
    search_fields = ("address", "sender", "customer__display_name")
    ordering = ("-changed_at", "-id")
    date_hierarchy = "changed_at"
    list_select_related = ("customer",)


# --- merges -----------------------------------------------------------------------------------


class UndoneFilter(admin.SimpleListFilter):
    title = _("state")
    parameter_name = "undone"

    def lookups(self, request, model_admin):
        return (("no", _("Active")), ("yes", _("Undone")))

    def queryset(self, request, queryset):
        if self.value() == "yes":
            return queryset.filter(undone_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(undone_at__isnull=True)
        return queryset


@admin.register(CustomerMerge)
class CustomerMergeAdmin(MergePermissionMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Merge records are the undo log: never edited or deleted by hand."""

    list_display = ("id", "source", "target", "moved_summary", "performed_by", "created_at", "undone_at", "undone_by")
    list_display_links = ("id",)
    list_filter = (UndoneFilter, "created_at")
    search_fields = ("source__display_name", "target__display_name", "source__id__exact", "target__id__exact")
    ordering = ("-created_at", "-id")
    date_hierarchy = "created_at"
    list_select_related = ("source", "target", "performed_by", "undone_by")
    actions = ("undo_merges",)

    @admin.display(description=_("moved"))
    def moved_summary(self, obj):
        return ", ".join(f"{label.rsplit('.', 1)[-1]}: {len(ids)}" for label, ids in sorted(obj.moved.items())) or "-"

    @admin.action(description=_("Undo selected merges"), permissions=["merge"])
    def undo_merges(self, request, queryset):
        undone = 0
        # Newest first: a later merge into an earlier merge's target must be undone before it.
        for merge in queryset.order_by("-created_at", "-id"):
            try:
                customer_merge_undo(merge=merge, actor=request.user)
            except MergeError as exc:
                self.message_user(
                    request,
                    gettext("Could not undo merge %(merge)s: %(reason)s")
                    % {"merge": merge, "reason": _error_text(exc)},
                    level=messages.ERROR,
                )
                continue
            undone += 1
        if undone:
            self.message_user(
                request,
                ngettext("Undid %(count)d merge.", "Undid %(count)d merges.", undone) % {"count": undone},
                level=messages.SUCCESS,
            )


@admin.register(MergeSuggestion)
class MergeSuggestionAdmin(MergePermissionMixin, ReadOnlyAdminMixin, admin.ModelAdmin):
    """Suggestions are recorded by services and decided with the actions below."""

    list_display = ("__str__", "customer", "candidate", "reason", "status", "created_at", "decided_at", "decided_by")
    list_filter = ("status", "reason", "created_at")
    search_fields = ("customer__display_name", "candidate__display_name", "customer__id__exact", "candidate__id__exact")
    ordering = ("-created_at", "-id")
    date_hierarchy = "created_at"
    list_select_related = ("customer", "candidate", "decided_by")
    actions = ("confirm_suggestions", "dismiss_suggestions")

    def _decide(self, request, queryset, *, confirm: bool) -> None:
        done = 0
        for suggestion in queryset.order_by("created_at", "id"):
            try:
                merge_suggestion_decide(suggestion=suggestion, confirm=confirm, actor=request.user)
            except MergeError as exc:
                self.message_user(
                    request,
                    gettext("Suggestion %(suggestion)s: %(reason)s")
                    % {"suggestion": suggestion, "reason": _error_text(exc)},
                    level=messages.ERROR,
                )
                continue
            done += 1
        if done:
            message = (
                ngettext(
                    "Confirmed and merged %(count)d suggestion.", "Confirmed and merged %(count)d suggestions.", done
                )
                if confirm
                else ngettext("Dismissed %(count)d suggestion.", "Dismissed %(count)d suggestions.", done)
            )
            self.message_user(request, message % {"count": done}, level=messages.SUCCESS)

    @admin.action(description=_("Confirm (merge)"), permissions=["merge"])
    def confirm_suggestions(self, request, queryset):
        self._decide(request, queryset, confirm=True)

    @admin.action(description=_("Dismiss"), permissions=["merge"])
    def dismiss_suggestions(self, request, queryset):
        self._decide(request, queryset, confirm=False)


@admin.register(CustomerAccess)
class CustomerAccessAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    """The access log: who viewed which customer, when, through which door. Read-only for everyone
    (rows are written by ``customer_access_record`` only); visible with
    ``profiles.view_customeraccess``, which supervisors and admins have and agents do not."""

    list_display = ("accessed_at", "username", "customer_link", "door")
    list_filter = ("door", "accessed_at")
    search_fields = ("username", "customer__display_name", "=customer__id")
    date_hierarchy = "accessed_at"
    list_select_related = ("customer",)
    fields = ("accessed_at", "username", "user", "customer", "door")
    raw_id_fields = ("customer", "user")

    @admin.display(description=_("customer"), ordering="customer__display_name")
    def customer_link(self, obj):
        return _admin_link(obj.customer)
