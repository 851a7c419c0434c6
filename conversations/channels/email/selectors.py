"""Reads of the email channel for the console: the inline images of one formatted email."""

import base64

from ...models import Attachment, AttachmentState
from .sanitize import INLINE_IMAGE_TYPES, cid_key

# What one formatted email may carry inline: its images travel inside the page (data: URIs), so
# a mail with a hundred large pictures must not make a page of hundreds of megabytes.
INLINE_IMAGE_MAX_BYTES = 5 * 1024 * 1024
INLINE_IMAGES_MAX_TOTAL_BYTES = 20 * 1024 * 1024


def message_inline_images(*, message_id: int) -> dict[str, str]:
    """The message's stored inline images (email parts with a Content-ID), as data: URIs by
    ``cid_key``, for ``with_inline_images``: one statement, then their files. Only this message's
    parts: a cid: never reaches another message's (or customer's) attachment."""
    images: dict[str, str] = {}
    total = 0
    rows = (Attachment.objects.filter(message_id=message_id, state=AttachmentState.STORED,
                                      content_type__in=INLINE_IMAGE_TYPES, size__lte=INLINE_IMAGE_MAX_BYTES)
            .exclude(content_id="").exclude(file="").order_by("id"))
    for attachment in rows:
        key = cid_key(attachment.content_id)
        if key in images or total + attachment.size > INLINE_IMAGES_MAX_TOTAL_BYTES:
            continue
        try:
            with attachment.file.open("rb") as handle:
                data = handle.read(INLINE_IMAGE_MAX_BYTES + 1)
        except OSError:
            continue  # a file gone from storage shows as a missing image, not an error page
        if len(data) > INLINE_IMAGE_MAX_BYTES:
            continue
        total += len(data)
        images[key] = f"data:{attachment.content_type};base64,{base64.b64encode(data).decode('ascii')}"
    return images
