"""Parse raw RFC 5322 bytes into a ``ParsedEmail``: headers, MIME body, attachments, bounce reports.
Never raises."""

import binascii
import email
import email.parser
import email.policy
import email.utils
import logging
import quopri
import re
from email.message import Message as MimeMessage

from django.conf import settings

from .charsets import decode_bytes
from .headers import (
    _classify_automated,
    _read_headers,
    content_language,
    decode_header_value,
    normalize_message_id,
)
from .parsed import MAX_DEPTH, MAX_PARTS, ParsedAttachment, ParsedEmail
from .quoting import find_quote_start
from .sanitize import html_to_text, render_html

logger = logging.getLogger(__name__)


def parse(raw: bytes, *, max_attachment_bytes: int | None = None, envelope_from: str | None = None,
          trusted_authserv_ids: tuple[str, ...] | None = None, own_addresses: tuple[str, ...] = ()) -> ParsedEmail:
    """Parse one raw message. Never raises; ``defects`` says what was wrong."""
    parsed = ParsedEmail()
    limit = max_attachment_bytes if max_attachment_bytes is not None else settings.CC_MAX_ATTACHMENT_BYTES
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except RecursionError:
        parsed.defects.append("mime_too_deep")
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    except Exception as exc:  # noqa: BLE001 - nothing a sender writes may crash ingest
        parsed.defects.append(f"unparseable: {type(exc).__name__}")
        msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(raw, headersonly=True)
    try:
        _read_headers(parsed, msg, trusted_authserv_ids, own_addresses)
    except Exception as exc:  # noqa: BLE001
        logger.warning("email header parsing failed: %s", exc, exc_info=True)
        parsed.defects.append(f"headers: {type(exc).__name__}")
    _classify_automated(parsed, msg, envelope_from, own_addresses)
    try:
        if "mime_too_deep" in parsed.defects:
            raise RecursionError
        _read_body(parsed, msg, limit)
    except RecursionError:
        if "mime_too_deep" not in parsed.defects:
            parsed.defects.append("mime_too_deep")
        parsed.text = _salvage_text(raw)
    except Exception as exc:  # noqa: BLE001
        logger.warning("email body parsing failed: %s", exc, exc_info=True)
        parsed.defects.append(f"body: {type(exc).__name__}")
        parsed.text = parsed.text or _salvage_text(raw)
    for defect in getattr(msg, "defects", []):
        parsed.defects.append(type(defect).__name__)
    parsed.defects = list(dict.fromkeys(parsed.defects))
    if not parsed.text and parsed.html:
        parsed.text = html_to_text(parsed.html)
    parsed.quote_start, parsed.quote_marker = find_quote_start(parsed.text)
    return parsed


def _filename(part: MimeMessage) -> str:
    for header, param in (("content-disposition", "filename"), ("content-type", "name")):
        value = part.get_param(param, header=header)
        if value is None:
            continue
        if isinstance(value, tuple):  # RFC 2231: (charset, language, percent-decoded latin-1 text)
            charset, _lang, text = value
            try:
                return decode_bytes(text.encode("latin-1", "surrogateescape"), charset or None)[0].strip()
            except (UnicodeEncodeError, LookupError):
                return str(text)
        return decode_header_value(email.utils.unquote(str(value)))
    return ""


def _decoded_payload(part: MimeMessage, parsed: ParsedEmail) -> bytes:
    """The part's bytes. The standard library decodes base64 tolerantly (bad characters, missing
    padding) and records defects on the part; 8bit parts come back byte for byte."""
    before = len(part.defects)
    try:
        data = part.get_payload(decode=True)
    except Exception:  # noqa: BLE001 - a payload that cannot be decoded is empty, the raw is kept
        parsed.defects.append("undecodable_payload")
        return b""
    for defect in part.defects[before:]:
        parsed.defects.append(type(defect).__name__)
    return data if isinstance(data, bytes) else b""


def _part_text(part: MimeMessage, parsed: ParsedEmail) -> str:
    if not parsed.language:
        # Some mailers label the text part rather than the message; the message's label wins.
        parsed.language = content_language(part.get("Content-Language"))
    data = _decoded_payload(part, parsed)
    text, used = decode_bytes(data, part.get_content_charset() or part.get_param("charset"))
    parsed.charsets.append(used)
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _read_body(parsed: ParsedEmail, msg: MimeMessage, limit: int) -> None:
    texts: list[str] = []
    htmls: list[str] = []
    counter = [0]

    def visit(part: MimeMessage, depth: int, in_alternative: bool) -> None:
        counter[0] += 1
        if counter[0] > MAX_PARTS:
            if "too_many_parts" not in parsed.defects:
                parsed.defects.append("too_many_parts")
            return
        if depth > MAX_DEPTH:
            if "mime_too_deep" not in parsed.defects:
                parsed.defects.append("mime_too_deep")
            return
        ctype = part.get_content_type()
        if part.is_multipart():
            children = part.get_payload()
            if ctype == "multipart/report":
                _read_report(parsed, children)
            alt = ctype == "multipart/alternative"
            if alt:
                # Prefer one plain and one HTML rendering of the same content.
                plain = [c for c in children if c.get_content_type() == "text/plain"]
                rich = [c for c in children if c.get_content_type() == "text/html"]
                others = [c for c in children if c not in plain and c not in rich]
                if plain and not _is_attachment(plain[0]):
                    texts.append(_part_text(plain[0], parsed))
                if rich and not _is_attachment(rich[-1]):
                    htmls.append(_part_text(rich[-1], parsed))
                for child in others:
                    visit(child, depth + 1, True)
                return
            for child in children:
                visit(child, depth + 1, in_alternative)
            return
        if ctype.startswith("message/") and ctype not in ("message/rfc822", "message/global"):
            return  # delivery-status and friends are read by _read_report
        if not _is_attachment(part) and ctype == "text/plain":
            texts.append(_part_text(part, parsed))
            return
        if not _is_attachment(part) and ctype == "text/html":
            htmls.append(_part_text(part, parsed))
            return
        _add_attachment(parsed, part, limit)

    if msg.is_multipart():
        visit(msg, 0, False)
    elif msg.get_content_type() == "text/html":
        htmls.append(_part_text(msg, parsed))
    elif msg.get_content_type().startswith("text/") or not msg.get_content_type():
        texts.append(_part_text(msg, parsed))
    else:
        _add_attachment(parsed, msg, limit)
    parsed.text = "\n".join(t.strip("\n") for t in texts if t.strip()).strip()
    raw_html = "\n".join(htmls)
    rendering = render_html(raw_html, with_text=not parsed.text)
    parsed.html = rendering.html
    parsed.html_not_rendered = rendering.not_rendered
    if not parsed.text and raw_html:
        parsed.text = rendering.text


def _is_attachment(part: MimeMessage) -> bool:
    disposition = str(part.get("Content-Disposition", "") or "").split(";")[0].strip().lower()
    return disposition == "attachment" or (disposition != "inline" and bool(_filename(part)) and
                                           not part.get_content_type().startswith("text/"))


def _add_attachment(parsed: ParsedEmail, part: MimeMessage, limit: int) -> None:
    ctype = part.get_content_type()
    name = _filename(part) or ("message.eml" if ctype.startswith("message/") else "attachment")
    name = re.sub(r"[\x00-\x1f/\\]", "_", name).strip(". ") or "attachment"
    content_id = normalize_message_id(str(part.get("Content-ID", "") or ""))
    inline = str(part.get("Content-Disposition", "") or "").lower().startswith("inline")
    if ctype.startswith("message/"):
        inner = part.get_payload()
        try:
            data = inner[0].as_bytes() if isinstance(inner, list) and inner else _decoded_payload(part, parsed)
        except Exception:  # noqa: BLE001 - a broken forwarded mail stays an opaque attachment
            data = _decoded_payload(part, parsed)
    else:
        payload = part.get_payload()
        encoded_size = len(payload) if isinstance(payload, str) else 0
        if encoded_size * 3 // 4 > limit + 4:
            parsed.attachments.append(ParsedAttachment(
                filename=name, content_type=ctype, content=None, size=encoded_size * 3 // 4, content_id=content_id,
                inline=inline, unavailable_reason=f"Attachment too large: about {encoded_size * 3 // 4} bytes "
                                                  f"(limit {limit} bytes). The original is kept in the raw message.",
            ))
            return
        data = _decoded_payload(part, parsed)
    if len(data) > limit:
        parsed.attachments.append(ParsedAttachment(
            filename=name, content_type=ctype, content=None, size=len(data), content_id=content_id, inline=inline,
            unavailable_reason=f"Attachment too large: {len(data)} bytes (limit {limit} bytes). "
                               "The original is kept in the raw message.",
        ))
        return
    parsed.attachments.append(ParsedAttachment(filename=name[:255], content_type=ctype, content=data, size=len(data),
                                               content_id=content_id, inline=inline))


def _read_report(parsed: ParsedEmail, children: list) -> None:
    for child in children:
        ctype = child.get_content_type()
        if ctype in ("message/delivery-status", "message/global-delivery-status"):
            blocks = child.get_payload() if isinstance(child.get_payload(), list) else []
            for block in blocks:
                for key in ("Final-Recipient", "Original-Recipient", "Action", "Status", "Diagnostic-Code"):
                    if block.get(key) and key.lower() not in parsed.bounce:
                        parsed.bounce[key.lower()] = decode_header_value(block.get(key))[:500]
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            inner = child.get_payload()
            if isinstance(inner, list) and inner:
                original_id = inner[0].get("Message-ID")
            else:
                headers = email.message_from_string(inner if isinstance(inner, str) else "",
                                                    policy=email.policy.compat32)
                original_id = headers.get("Message-ID")
            if original_id:
                parsed.bounce["original_message_id"] = normalize_message_id(str(original_id))


_CTE_LINE = re.compile(rb"(?im)^content-transfer-encoding:\s*(base64|quoted-printable)")


def _salvage_text(raw: bytes) -> str:
    """Best-effort text of a message the MIME parser could not walk: the text parts found between
    boundary lines, or the body as text."""
    head, _sep, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    chunks = re.split(rb"(?m)^--[^\n]*\n", body)
    texts = []
    for chunk in chunks:
        part_head, sep, part_body = chunk.partition(b"\n\n")
        if not sep:
            continue
        lowered = part_head.lower()
        if b"content-type" in lowered and b"text/plain" not in lowered:
            continue
        if b"content-type:" not in lowered and not lowered.startswith(b"content-"):
            continue
        charset = re.search(rb'charset="?([A-Za-z0-9_\-]+)', part_head)
        cte = _CTE_LINE.search(part_head)
        data = part_body
        try:
            if cte and cte.group(1).lower() == b"base64":
                data = binascii.a2b_base64(re.sub(rb"[^A-Za-z0-9+/=]", b"", data))
            elif cte:
                data = quopri.decodestring(data)
        except binascii.Error:
            pass
        texts.append(decode_bytes(data, charset.group(1).decode() if charset else None)[0].strip())
    if texts:
        return "\n\n".join(t for t in texts if t)[:200_000]
    return decode_bytes(body[:200_000], None)[0].strip()
