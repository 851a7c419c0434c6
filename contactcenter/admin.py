"""Admin building blocks shared by the apps' admin modules, and the project's own models."""

from django.contrib import admin
from django.forms.models import BaseInlineFormSet

from .models import WorkerHeartbeat


class ReadOnlyAdminMixin:
    """Rows written only by services, providers or workers: the admin may look, never touch.

    Without change permission Django renders the change page as a view page, and without delete
    permission the "delete selected" action disappears.
    """

    def has_add_permission(self, request, obj=None) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False

    def has_delete_permission(self, request, obj=None) -> bool:
        return False


class ReadOnlyInlineMixin(ReadOnlyAdminMixin):
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True


class RecentRowsInlineFormSet(BaseInlineFormSet):
    """An inline formset showing only the first ``limit`` rows of the inline's ordering.

    A customer's touchpoints or a conversation's messages can run to thousands of rows; the
    change page shows the most recent ones and links to the filtered changelist for the rest.
    The slice is taken last because the inline formset still has to filter by the parent.
    """

    limit = 25

    def get_queryset(self):
        if not hasattr(self, "_queryset"):
            self._queryset = super().get_queryset()[: self.limit]
        return self._queryset


def recent_rows_formset(limit: int) -> type[RecentRowsInlineFormSet]:
    return type("RecentRowsInlineFormSet", (RecentRowsInlineFormSet,), {"limit": limit})


@admin.register(WorkerHeartbeat)
class WorkerHeartbeatAdmin(ReadOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("token", "seen_at")
    search_fields = ("token",)
    ordering = ("-seen_at",)
    date_hierarchy = "seen_at"

    def has_delete_permission(self, request, obj=None) -> bool:
        # Heartbeats are disposable health-check rows; clearing old ones is harmless.
        return super(ReadOnlyAdminMixin, self).has_delete_permission(request, obj)
