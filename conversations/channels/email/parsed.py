"""The structure ``parse`` returns, and the limits it walks within."""

from dataclasses import dataclass, field
from datetime import datetime

MAX_DEPTH = 12  # MIME nesting we walk; deeper parts are reported as a defect, never recursed into
MAX_PARTS = 500
MAX_REFS = 50


@dataclass
class ParsedAttachment:
    filename: str
    content_type: str
    content: bytes | None
    size: int = 0
    unavailable_reason: str = ""
    content_id: str = ""
    inline: bool = False


@dataclass
class ParsedEmail:
    message_id: str = ""
    subject: str = ""
    from_address: str = ""
    from_name: str = ""
    from_count: int = 0
    reply_to: list[str] = field(default_factory=list)
    sender: str = ""
    to: list[str] = field(default_factory=list)
    cc: list[str] = field(default_factory=list)
    delivered_to: list[str] = field(default_factory=list)
    in_reply_to: list[str] = field(default_factory=list)
    references: list[str] = field(default_factory=list)
    date: datetime | None = None
    language: str = ""  # the first plausible tag of Content-Language (BCP 47), else ""
    text: str = ""
    html: str = ""
    html_not_rendered: str = ""  # why the HTML part was not sanitized and shown (too big, deep or slow)
    quote_start: int | None = None
    quote_marker: str = ""
    attachments: list[ParsedAttachment] = field(default_factory=list)
    automated: list[str] = field(default_factory=list)  # why it is an auto-reply/bounce/list mail
    identity_doubts: list[str] = field(default_factory=list)
    defects: list[str] = field(default_factory=list)
    charsets: list[str] = field(default_factory=list)
    bounce: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)

    @property
    def thread_refs(self) -> list[str]:
        refs = []
        for ref in self.in_reply_to + list(reversed(self.references)):
            if ref not in refs:
                refs.append(ref)
        return refs[:MAX_REFS]

    @property
    def own_text(self) -> str:
        """What the sender wrote above the quoted history."""
        return self.text[: self.quote_start] if self.quote_start is not None else self.text
