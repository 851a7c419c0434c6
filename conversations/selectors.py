"""Reads on conversations, with fixed query counts (STYLE.md habit 6)."""

from django.db.models import Prefetch, QuerySet

from .models import Attachment, Message


class MessageTimelineSource:
    """Messages, private notes and system events of every conversation of a customer."""

    type = "message"
    rank = 0
    time_field = "created_at"

    def queryset(self, *, customer_id: int) -> QuerySet:
        return (
            Message.objects.filter(customer_id=customer_id)
            .select_related("conversation", "author_agent", "inbox", "customer")
            .prefetch_related(Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
        )
