"""Attachment state changes after ingest (media fetched later, or refused)."""

import mimetypes

from django.core.files.base import ContentFile

from ..models import Attachment, AttachmentState


def attachment_store(*, attachment: Attachment, content: bytes, content_type: str) -> Attachment:
    content_type = (content_type or attachment.content_type or "application/octet-stream").split(";")[0].strip()
    filename = attachment.filename
    if "." not in filename:
        filename += mimetypes.guess_extension(content_type) or ""
    attachment.filename = filename[:255]
    attachment.content_type = content_type[:255]
    attachment.size = len(content)
    attachment.file.save(attachment.filename, ContentFile(content), save=False)
    attachment.state = AttachmentState.STORED
    attachment.state_reason = ""
    attachment.save(update_fields=["filename", "content_type", "size", "file", "state", "state_reason"])
    return attachment


def attachment_mark_unavailable(*, attachment: Attachment, reason: str) -> Attachment:
    attachment.state = AttachmentState.UNAVAILABLE
    attachment.state_reason = reason[:300]
    attachment.save(update_fields=["state", "state_reason"])
    return attachment
