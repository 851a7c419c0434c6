"""Email: parse raw RFC 5322 bytes, sanitize, classify, build and send outbound mail.

Inbound mail is hostile and often broken, so ``parse`` never raises: whatever goes wrong, it
returns best-effort text, the defects it met, and the caller keeps the raw bytes. Japanese mail is
decoded the way Japanese mail clients really write it: "ISO-2022-JP" that carries CP932 (NEC row 13
①, Ⅰ, ㈱ and the IBM extensions), Shift_JIS that is really CP932, mislabelled or missing charsets,
RFC 2047/2231 encoded subjects and file names.

What we rely on for identity (threats.md "Spoofed or ambiguous From"): the From address is an
inbound identity like a caller id, not a proof. We never link by Reply-To or Sender; a mail whose
From is ambiguous (several From addresses, a Reply-To or Sender naming someone else, a failed
DMARC/SPF/DKIM verdict from an Authentication-Results header our own MTA added — only the
authserv-ids in ``CC_EMAIL_AUTHSERV_IDS`` are trusted, anyone can write that header) is flagged
in ``identity_doubts``; ``ingest.py`` then keeps it off a known customer's history.
"""

from .adapter import build_outbound, outbound_message_id, send
from .charsets import decode_bytes, decode_iso2022jp
from .headers import decode_header_value, normalize_message_id
from .parse import parse
from .parsed import MAX_DEPTH, MAX_PARTS, MAX_REFS, ParsedAttachment, ParsedEmail
from .quoting import find_quote_start
from .sanitize import (
    ALLOWED_ATTRIBUTES,
    ALLOWED_CLASSES,
    ALLOWED_TAGS,
    REMOVED_WITH_CONTENT,
    html_to_text,
    sanitize_html,
)


def ready() -> None:
    from contactcenter import tick

    from .imap import imap_poll_due

    # Polls only the IMAP mailboxes whose interval has elapsed (each claims its own turn).
    tick.register("imap_poll", imap_poll_due)


__all__ = [
    "ALLOWED_ATTRIBUTES", "ALLOWED_CLASSES", "ALLOWED_TAGS", "MAX_DEPTH", "MAX_PARTS", "MAX_REFS", "REMOVED_WITH_CONTENT",
    "ParsedAttachment", "ParsedEmail", "build_outbound", "decode_bytes", "decode_header_value", "decode_iso2022jp",
    "find_quote_start", "html_to_text", "normalize_message_id", "outbound_message_id", "parse", "sanitize_html", "send",
]
