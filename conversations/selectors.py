"""Reads on conversations, with fixed query counts (STYLE.md habit 6)."""

from django.db.models import Prefetch, QuerySet, prefetch_related_objects

from .models import Attachment, Message


class MessageTimelineSource:
    """Messages, private notes and system events of every conversation of a customer.

    Only the author is joined: the entry carries its own channel, conversation id and customer id,
    and building three more model instances per row was most of the page's cost (bench/timeline).
    """

    type = "message"
    rank = 0
    time_field = "created_at"

    def queryset(self, *, customer_id: int) -> QuerySet:
        return (
            Message.objects.filter(customer_id=customer_id)
            .select_related("author_agent")
            # Provider payloads and mail headers can be large and no timeline view reads them.
            .defer("metadata")
        )

    def hydrate(self, messages: list[Message]) -> None:
        prefetch_related_objects(messages, Prefetch("attachments", queryset=Attachment.objects.order_by("id")))
