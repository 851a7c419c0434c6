"""Callables that model fields name (defaults, upload paths); migrations refer to them as
``conversations.models.<name>``, which the package re-exports."""

from django.utils import timezone

DEFAULT_CAPACITY = {"voice": 1, "webchat": 3, "sms": 5, "whatsapp": 5, "email": 5}


def default_capacity() -> dict[str, int]:
    return dict(DEFAULT_CAPACITY)


def attachment_path(instance, filename: str) -> str:
    return f"attachments/{timezone.now():%Y/%m}/{instance.message_id or 'new'}/{filename}"
