"""Writes on conversations. Every function owns its transaction (STYLE.md habit 1)."""

from .ingest import InboundAttachment, InboundMessage, IngestResult, message_receive

__all__ = ["InboundAttachment", "InboundMessage", "IngestResult", "message_receive"]
