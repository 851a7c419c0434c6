"""Header decoding (RFC 2047/2231, raw 8-bit, ISO-2022-JP), addresses and Message-IDs, and what the
headers tell us: identity doubts and automated mail."""

import re
from email.header import decode_header
from email.message import Message as MimeMessage
from email.utils import getaddresses, parsedate_to_datetime

from django.conf import settings

from profiles.languages import language_tag

from .charsets import _ESC, decode_bytes
from .parsed import MAX_REFS, ParsedEmail

_UNFOLD = re.compile(r"\r?\n(?=[ \t])")


def decode_header_value(value) -> str:
    """An unfolded, decoded header: RFC 2047 words (B and Q, any charset), raw 8-bit bytes, raw
    ISO-2022-JP escapes. Never raises."""
    if value is None:
        return ""
    value = _UNFOLD.sub("", str(value))
    try:
        raw = value.encode("ascii", "surrogateescape")
    except UnicodeEncodeError:
        raw = None
    if raw is not None and (any(b > 0x7F for b in raw) or _ESC in raw) and "=?" not in value:
        return decode_bytes(raw, None)[0].strip()
    if "=?" not in value:
        return value.strip()
    try:
        parts = decode_header(value)
    except Exception:  # noqa: BLE001 - malformed encoded words: show them as they are
        return value.strip()
    out = []
    for chunk, charset in parts:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(decode_bytes(chunk, charset)[0] if charset else decode_bytes(chunk, None)[0])
    return "".join(out).strip()


def _addresses(msg: MimeMessage, name: str) -> list[tuple[str, str]]:
    values = [_UNFOLD.sub("", str(v)) for v in msg.get_all(name, [])]
    pairs = []
    for display, address in getaddresses(values):
        address = address.strip()
        if address and "@" in address:
            pairs.append((decode_header_value(display), address))
    return pairs


def normalize_message_id(value: str) -> str:
    value = (value or "").strip()
    match = re.search(r"<([^<>\s]+)>", value)
    if match:
        return match.group(1)
    return value.split()[0].strip("<>") if value.split() else ""


def _message_ids(value) -> list[str]:
    if not value:
        return []
    value = str(value)
    found = re.findall(r"<([^<>\s]+)>", value)
    return found or [token.strip("<>") for token in value.split() if "@" in token]


# RFC 3282: a list of language tags, with comments allowed ("en (English), fr"); the first one
# that is a plausible tag (profiles.languages) is the message's.
_COMMENT = re.compile(r"\([^()]*\)")


def content_language(value) -> str:
    """The first plausible language tag of a Content-Language value, hyphenated; "" when none."""
    text = _UNFOLD.sub("", str(value or ""))[:200]
    for _ in range(3):  # nested comments, a few levels; deeper nesting is nonsense anyway
        text = _COMMENT.sub(" ", text)
    for candidate in text.split(","):
        tag = language_tag(candidate.strip().strip('"'))
        if tag:
            return tag
    return ""


_KEPT_HEADERS = ("From", "To", "Cc", "Reply-To", "Sender", "Subject", "Date", "Message-ID", "In-Reply-To",
                 "References", "Auto-Submitted", "Precedence", "List-Id", "Return-Path", "X-Mailer", "User-Agent",
                 "Content-Type", "Content-Language")


def _read_headers(parsed: ParsedEmail, msg: MimeMessage, trusted_authserv_ids, own_addresses) -> None:
    parsed.message_id = normalize_message_id(str(msg.get("Message-ID", "") or ""))[:900]
    parsed.subject = decode_header_value(msg.get("Subject"))[:1000]
    senders = _addresses(msg, "From")
    parsed.from_count = len(senders)
    if senders:
        parsed.from_name, parsed.from_address = senders[0]
    parsed.reply_to = [a for _, a in _addresses(msg, "Reply-To")]
    sender = _addresses(msg, "Sender")
    parsed.sender = sender[0][1] if sender else ""
    parsed.to = [a for _, a in _addresses(msg, "To")]
    parsed.cc = [a for _, a in _addresses(msg, "Cc")]
    parsed.delivered_to = [a for _, a in _addresses(msg, "Delivered-To") + _addresses(msg, "X-Original-To")]
    parsed.in_reply_to = _message_ids(msg.get("In-Reply-To"))[:MAX_REFS]
    parsed.references = _message_ids(_UNFOLD.sub("", str(msg.get("References", "") or "")))[-MAX_REFS:]
    try:
        parsed.date = parsedate_to_datetime(str(msg.get("Date"))) if msg.get("Date") else None
        if parsed.date is not None and parsed.date.tzinfo is None:
            parsed.date = None
    except (TypeError, ValueError, IndexError):
        parsed.date = None
    parsed.language = content_language(msg.get("Content-Language"))
    parsed.headers = {
        name: decode_header_value(msg.get(name))[:2000] for name in _KEPT_HEADERS if msg.get(name) is not None
    }
    _check_identity(parsed, msg, trusted_authserv_ids)


def _same(a: str, b: str) -> bool:
    return a.strip().lower() == b.strip().lower()


def _check_identity(parsed: ParsedEmail, msg: MimeMessage, trusted_authserv_ids) -> None:
    doubts = parsed.identity_doubts
    if parsed.from_count == 0:
        doubts.append("no_from")
    elif parsed.from_count > 1:
        doubts.append("several_from")
    if parsed.reply_to and parsed.from_address and not any(_same(a, parsed.from_address) for a in parsed.reply_to):
        doubts.append("reply_to_differs")
    if parsed.sender and parsed.from_address and not _same(parsed.sender, parsed.from_address):
        doubts.append("sender_differs")
    trusted = tuple(trusted_authserv_ids if trusted_authserv_ids is not None
                    else getattr(settings, "CC_EMAIL_AUTHSERV_IDS", ()))
    if trusted:
        # Only the topmost result added by our own MTA counts; anything below could be the sender's.
        for header in msg.get_all("Authentication-Results", []):
            value = _UNFOLD.sub("", str(header))
            authserv = value.split(";", 1)[0].strip().split()[0].lower() if value.strip() else ""
            if authserv not in {t.lower() for t in trusted}:
                continue
            results = {m.group(1).lower(): m.group(2).lower()
                       for m in re.finditer(r"\b(dmarc|spf|dkim)\s*=\s*([a-z]+)", value, re.I)}
            if results.get("dmarc") == "fail" or (
                results.get("spf") in ("fail", "softfail") and results.get("dkim") not in ("pass",)
            ) or results.get("dkim") == "fail" and results.get("spf") not in ("pass",):
                doubts.append("authentication_failed")
            break


_AUTO_PRECEDENCE = {"bulk", "list", "junk", "auto_reply", "auto-reply"}


def _classify_automated(parsed: ParsedEmail, msg: MimeMessage, envelope_from: str | None, own_addresses) -> None:
    reasons = parsed.automated
    auto_submitted = str(msg.get("Auto-Submitted", "") or "").strip().lower()
    if auto_submitted and auto_submitted.split(";")[0].strip() != "no":
        reasons.append(f"auto-submitted: {auto_submitted[:40]}")
    precedence = str(msg.get("Precedence", "") or "").strip().lower()
    if precedence in _AUTO_PRECEDENCE:
        reasons.append(f"precedence: {precedence}")
    if msg.get_content_type() == "multipart/report":
        reasons.append("multipart/report")
    return_path = msg.get("Return-Path")
    if return_path is not None and str(return_path).strip() in ("<>", ""):
        reasons.append("empty return-path")
    if envelope_from is not None and envelope_from.strip() in ("", "<>"):
        reasons.append("empty envelope sender")
    for header in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress", "X-Autogenerated", "X-AutoReply-From"):
        if msg.get(header) is not None:
            reasons.append(header.lower())
    if msg.get("List-Id") is not None or msg.get("List-Unsubscribe") is not None:
        reasons.append("list mail")
    local = parsed.from_address.split("@", 1)[0].lower()
    if local in ("mailer-daemon", "postmaster"):
        reasons.append(f"from {local}")
    own = {a.lower() for a in own_addresses}
    if parsed.from_address.lower() in own:
        reasons.append("from our own address (loop)")
    loops = " ".join(str(v) for v in msg.get_all("X-Loop", [])).lower()
    if own and any(a in loops for a in own):
        reasons.append("x-loop")
