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
in ``identity_doubts``; ``services.email`` then keeps it off a known customer's history.
"""

import binascii
import email
import email.parser
import email.policy
import email.utils
import hashlib
import hmac
import html as html_lib
import logging
import quopri
import re
from dataclasses import dataclass, field
from datetime import datetime
from email.header import decode_header
from email.message import Message as MimeMessage
from email.utils import getaddresses, parsedate_to_datetime

import nh3
from django.conf import settings

from ..models import Message
from . import PermanentSendError, SendResult, TransientSendError

logger = logging.getLogger(__name__)

MAX_DEPTH = 12  # MIME nesting we walk; deeper parts are reported as a defect, never recursed into
MAX_PARTS = 500
MAX_REFS = 50

# --- charsets -------------------------------------------------------------------------------

_ISO2022JP = {"iso-2022-jp", "iso2022jp", "iso-2022-jp-1", "iso-2022-jp-2", "iso-2022-jp-3", "iso-2022-jp-ms",
              "csiso2022jp", "iso-2022-jp-2004", "cp50220", "cp50221", "cp50222"}
_SJIS = {"shift_jis", "shift-jis", "sjis", "x-sjis", "ms_kanji", "csshiftjis", "windows-31j", "cp932", "ms932",
         "shift_jis-2004", "x-ms-cp932"}
_EUCJP = {"euc-jp", "eucjp", "x-euc-jp", "ujis", "cseucpkdfmtjapanese", "euc-jis-2004"}
# Labels that are routinely wrong: a mailer that says us-ascii or latin-1 may send anything.
_WEAK_LABELS = {"", "us-ascii", "ascii", "iso-8859-1", "latin1", "latin-1", "windows-1252", "cp1252", "unknown-8bit",
                "x-unknown", "default", "none", "8bit"}
_ESC = b"\x1b"
_JAPANESE = re.compile(r"[\u3040-\u30ff\u3400-\u9fff\uff01-\uff9f\u3000-\u303f\u2460-\u24ff\u2160-\u217f\u3200-\u33ff]")


def _jis_pair_to_sjis(j1: int, j2: int) -> bytes:
    s1 = (j1 + 1) // 2 + 0x70
    if s1 >= 0xA0:
        s1 += 0x40
    if j1 % 2:
        s2 = j2 + 0x1F + (1 if j2 >= 0x60 else 0)
    else:
        s2 = j2 + 0x7E
    return bytes((s1, s2))


def decode_iso2022jp(data: bytes) -> str:
    """ISO-2022-JP as mail clients send it (Microsoft's CP50220 family): JIS X 0208 escapes that
    also carry NEC row 13 and the IBM extensions, and JIS X 0201 kana. Each double-byte pair is
    mapped to Shift_JIS and decoded as CP932, which knows those characters; Python's strict
    iso-2022-jp codec rejects them."""
    out = bytearray()
    mode = "ascii"
    i, n = 0, len(data)
    while i < n:
        byte = data[i]
        if byte == 0x1B:
            seq = data[i + 1:i + 3]
            if seq in (b"$B", b"$@"):
                mode, i = "jis", i + 3
                continue
            if data[i + 1:i + 4] == b"$(D" or data[i + 1:i + 4] == b"$(Q" or data[i + 1:i + 4] == b"$(O":
                mode, i = "jis", i + 4  # JIS X 0212/0213 designations: close enough for CP932
                continue
            if seq in (b"(B", b"(J"):
                mode, i = "ascii", i + 3
                continue
            if seq == b"(I":
                mode, i = "kana", i + 3
                continue
            out.append(byte)
            i += 1
            continue
        if byte in (0x0E, 0x0F):  # SO/SI kana shifts (CP50222)
            mode = "kana" if byte == 0x0E else "ascii"
            i += 1
            continue
        if mode == "jis" and 0x21 <= byte <= 0x7E and i + 1 < n and 0x21 <= data[i + 1] <= 0x7E:
            out += _jis_pair_to_sjis(byte, data[i + 1])
            i += 2
            continue
        if mode == "kana" and 0x21 <= byte <= 0x5F:
            out.append(byte + 0x80)
            i += 1
            continue
        if byte in (0x0A, 0x0D) and mode != "ascii":
            mode = "ascii"  # a line never continues a double-byte run (RFC 1468)
        out.append(byte)
        i += 1
    return bytes(out).decode("cp932", errors="replace")


def _looks_japanese(text: str) -> bool:
    non_ascii = [c for c in text if ord(c) > 0x7F]
    if not non_ascii:
        return False
    return sum(1 for c in non_ascii if _JAPANESE.match(c)) / len(non_ascii) > 0.6


def _strict(data: bytes, codec: str) -> str | None:
    try:
        return data.decode(codec)
    except (UnicodeDecodeError, LookupError):
        return None


def _guess(data: bytes) -> tuple[str, str]:
    """Decode bytes whose label is missing or not to be trusted."""
    if _ESC + b"$" in data:
        return decode_iso2022jp(data), "iso-2022-jp"
    if not any(b > 0x7F for b in data):
        return data.decode("ascii"), "us-ascii"
    text = _strict(data, "utf-8")
    if text is not None:
        return text, "utf-8"
    for codec in ("cp932", "euc_jp"):
        text = _strict(data, codec)
        if text is not None and _looks_japanese(text):
            return text, codec
    return data.decode("cp1252", errors="replace"), "cp1252"


def decode_bytes(data: bytes, charset: str | None) -> tuple[str, str]:
    """Text of ``data`` labelled ``charset``; returns (text, charset actually used)."""
    label = (charset or "").strip().strip('"').lower()
    if label in _ISO2022JP or (_ESC + b"$B" in data or _ESC + b"$@" in data):
        return decode_iso2022jp(data), "iso-2022-jp"
    if label in _SJIS:
        text = _strict(data, "cp932")
        return (text, "cp932") if text is not None else (data.decode("cp932", errors="replace"), "cp932")
    if label in _EUCJP:
        for codec in ("euc_jp", "euc_jis_2004"):
            text = _strict(data, codec)
            if text is not None:
                return text, codec
        return data.decode("euc_jp", errors="replace"), "euc_jp"
    if label in _WEAK_LABELS:
        text, used = _guess(data)
        if used == "cp1252" and label.startswith(("iso-8859", "latin")):
            return data.decode("latin-1"), "iso-8859-1"
        return text, used
    text = _strict(data, label)
    if text is not None:
        return text, label
    if label in ("utf-8", "utf8"):
        # A damaged UTF-8 body (bad base64, a cut transfer) is still UTF-8 with a few holes.
        lenient = data.decode("utf-8", errors="replace")
        if lenient.count("\ufffd") <= max(3, len(lenient) // 50):
            return lenient, "utf-8"
    guessed, used = _guess(data)  # labelled utf-8 but is not, or an unknown charset name
    return guessed, used


# --- headers --------------------------------------------------------------------------------

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


# --- sanitizing -----------------------------------------------------------------------------

ALLOWED_TAGS = {
    "a", "abbr", "b", "blockquote", "br", "caption", "center", "cite", "code", "dd", "del", "div", "dl", "dt", "em",
    "font", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "ins", "kbd", "li", "ol", "p", "pre", "q", "s",
    "small", "span", "strike", "strong", "sub", "sup", "table", "tbody", "td", "tfoot", "th", "thead", "tr", "tt",
    "u", "ul",
}
ALLOWED_ATTRIBUTES = {
    "a": {"href", "title"}, "img": {"src", "alt", "width", "height"}, "td": {"colspan", "rowspan", "align"},
    "th": {"colspan", "rowspan", "align"}, "table": {"border", "cellpadding", "cellspacing"}, "font": {"color"},
    "p": {"align"}, "div": {"align"}, "blockquote": {"type"}, "ol": {"start"},
}
# Kept so the display can collapse quoted history (never a style hook for anything else).
ALLOWED_CLASSES = {
    "div": {"gmail_quote", "gmail_attr", "moz-cite-prefix", "OutlookMessageHeader", "divRplyFwdMsg"},
    "blockquote": {"gmail_quote", "moz-cite"},
}
REMOVED_WITH_CONTENT = {"script", "style", "title", "svg", "math", "template", "noscript", "iframe", "object", "embed",
                        "head", "xml"}


def _attribute_filter(tag: str, attribute: str, value: str) -> str | None:
    # Remote images are tracking beacons and leak the agent's address: only inline cid: images.
    if tag == "img" and attribute == "src":
        return value if value.lower().startswith("cid:") else None
    return value


def sanitize_html(markup: str) -> str:
    """Allow-list sanitizer: no scripts, event handlers, styles, SVG/MathML, forms, frames; links
    only http(s)/mailto with rel=noopener noreferrer nofollow; images only cid:."""
    if not markup:
        return ""
    return nh3.clean(
        markup, tags=ALLOWED_TAGS, attributes=ALLOWED_ATTRIBUTES, clean_content_tags=REMOVED_WITH_CONTENT,
        url_schemes={"http", "https", "mailto", "cid"}, link_rel="noopener noreferrer nofollow",
        strip_comments=True, allowed_classes=ALLOWED_CLASSES, attribute_filter=_attribute_filter,
    ).strip()


_BLOCK_END = re.compile(r"(?i)<\s*(br|/p|/div|/tr|/li|/h[1-6]|/blockquote|hr)\b[^>]*>")


def html_to_text(markup: str) -> str:
    text = _BLOCK_END.sub("\n", markup or "")
    text = nh3.clean(text, tags=set(), clean_content_tags=REMOVED_WITH_CONTENT)
    text = html_lib.unescape(text).replace("\xa0", " ")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.splitlines())).strip()


# --- quoted history -------------------------------------------------------------------------

# (pattern, may wrap over up to three lines)
_QUOTE_HEADERS = [
    (re.compile(r"^\s*On\b.{0,300}\bwrote\s*:\s*$", re.I | re.S), True),  # Gmail, Apple Mail, iPhone, Thunderbird
    # Gmail ja: "2024年1月15日(月) 10:30 山田 花子 <hanako@example.jp>:"
    (re.compile(r"^\s*\d{4}\s*年\s*\d{1,2}\s*月\s*\d{1,2}\s*日.{0,300}(<[^<>\s]+@[^<>\s]+>|wrote|書きました|書き込みました)"
                r".{0,20}[:：]\s*$", re.S), True),
    # iPhone ja: "2024/01/15 10:30、山田 花子 <hanako@example.jp>のメール:"
    (re.compile(r"^\s*\d{4}/\d{1,2}/\d{1,2}.{0,300}の(メール|メッセージ)\s*[:：]\s*$", re.S), True),
    (re.compile(r"^.{1,300}さんは書きました\s*[:：]\s*$", re.S), True),
    (re.compile(r"^\s*-{2,}\s*(Original Message|Forwarded message|Reply message|元のメッセージ|転送メッセージ|"
                r"オリジナルメッセージ)\s*-{2,}\s*$", re.I), False),
    (re.compile(r"^\s*差出人\s*[:：]"), False),  # Outlook ja header block
]
_OUTLOOK_RULE = re.compile(r"^\s*_{10,}\s*$")  # Outlook's rule above its From: block
_OUTLOOK_FROM = re.compile(r"^\s*\*?(From|差出人|送信者)\s*:?\*?\s*[:：]", re.I)
_OUTLOOK_NEXT = re.compile(r"^\s*\*?(Sent|Date|To|Subject|Cc|送信日時|日時|宛先|件名)\s*:?\*?\s*[:：]", re.I)


def find_quote_start(text: str) -> tuple[int | None, str]:
    """Offset where quoted history begins in ``text`` and the line that marks it, or (None, "").
    The display collapses from there; the stored text keeps everything."""
    lines = text.splitlines(keepends=True)
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line)
    stripped = [line.rstrip("\r\n") for line in lines]
    for index, line in enumerate(stripped):
        if not line.strip() or line.lstrip().startswith(">"):
            continue
        joined = [" ".join(stripped[index:index + k]) for k in (1, 2, 3)]
        for pattern, wraps in _QUOTE_HEADERS:
            if any(pattern.match(candidate) for candidate in (joined if wraps else joined[:1])):
                return offsets[index], line.strip()
        following = [s for s in stripped[index + 1:index + 5] if s.strip()]
        if _OUTLOOK_RULE.match(line) and following and _OUTLOOK_FROM.match(following[0]):
            return offsets[index], line.strip()
        if _OUTLOOK_FROM.match(line) and sum(1 for s in following if _OUTLOOK_NEXT.match(s)) >= 2:
            return offsets[index], line.strip()
    # A trailing block of "> " lines with nothing of the customer's own after it.
    quote_from = None
    for index, line in enumerate(stripped):
        if line.lstrip().startswith(">"):
            if quote_from is None:
                quote_from = index
        elif line.strip():
            quote_from = None
    if quote_from is not None and sum(1 for s in stripped[quote_from:] if s.strip()) >= 2:
        return offsets[quote_from], stripped[quote_from].strip()
    return None, ""


# --- parsing --------------------------------------------------------------------------------

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
    text: str = ""
    html: str = ""
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


_KEPT_HEADERS = ("From", "To", "Cc", "Reply-To", "Sender", "Subject", "Date", "Message-ID", "In-Reply-To",
                 "References", "Auto-Submitted", "Precedence", "List-Id", "Return-Path", "X-Mailer", "User-Agent",
                 "Content-Type")


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
    parsed.html = sanitize_html(raw_html)
    if not parsed.text and raw_html:
        parsed.text = html_to_text(raw_html)


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


# --- outbound -------------------------------------------------------------------------------

def outbound_message_id(message: Message, *, domain: str) -> str:
    """Deterministic (a retry after an ambiguous failure sends the same Message-ID, which mail
    clients deduplicate) and unguessable (nobody can plant a mail that claims it first)."""
    token = hmac.new(settings.SECRET_KEY.encode(), f"email-message-{message.pk}".encode(), hashlib.sha256)
    return f"cc.{message.pk}.{token.hexdigest()[:20]}@{domain}"


def _reply_subject(subject: str) -> str:
    subject = (subject or "").strip()
    if not subject:
        return "Re:"
    return subject if re.match(r"(?i)^(re|aw|sv|返信)\s*[:：]", subject) else f"Re: {subject}"


def build_outbound(message: Message, *, to: str, from_: str):
    """An ``EmailMultiAlternatives`` for one stored outbound message: From our inbox, our own
    Message-ID, In-Reply-To/References to the customer's last mail in the conversation, plain text
    plus HTML. Automatic mail (no agent wrote it) carries ``Auto-Submitted: auto-generated``."""
    from django.core.mail import EmailMultiAlternatives
    from django.utils.html import escape, linebreaks

    from ..models import Direction, MessageKind

    domain = from_.rsplit("@", 1)[-1] if "@" in from_ else "localhost"
    message_id = outbound_message_id(message, domain=domain)
    conversation = message.conversation
    last_inbound = (
        Message.objects.filter(conversation_id=conversation.pk, direction=Direction.INBOUND, kind=MessageKind.MESSAGE,
                               provider_id__isnull=False, created_at__lte=message.created_at)
        .exclude(metadata__email__isnull=True).order_by("-created_at", "-id").first()
    )
    headers = {"Message-ID": f"<{message_id}>"}
    if last_inbound is not None:
        parent = last_inbound.metadata["email"].get("message_id") or last_inbound.provider_id
        chain = [r for r in last_inbound.metadata["email"].get("references", []) if r != parent][-20:]
        headers["In-Reply-To"] = f"<{parent}>"
        headers["References"] = " ".join(f"<{r}>" for r in [*chain, parent])
    if message.author_agent_id is None or message.metadata.get("automatic"):
        headers["Auto-Submitted"] = "auto-generated"
        headers["X-Auto-Response-Suppress"] = "All"
    subject = message.metadata.get("subject") or _reply_subject(conversation.subject)
    text = message.text or ""
    mail = EmailMultiAlternatives(subject=subject.replace("\n", " ").replace("\r", " ")[:900], body=text,
                                  from_email=from_, to=[to], headers=headers)
    mail.attach_alternative(f"<div>{linebreaks(escape(text))}</div>", "text/html")
    mail.encoding = "utf-8"
    for attachment in message.attachments.all():
        if attachment.file:
            with attachment.file.open("rb") as handle:
                mail.attach(attachment.filename, handle.read(), attachment.content_type or None)
    return mail, message_id


def send(message: Message, *, to: str, from_: str) -> SendResult:
    """Hand one stored message to Django's email backend. Never called inside a transaction.
    Returns our Message-ID as the provider id, so the customer's reply threads to it."""
    import smtplib

    from django.core.mail import get_connection

    mail, message_id = build_outbound(message, to=to, from_=from_)
    try:
        connection = get_connection(fail_silently=False)
        sent = connection.send_messages([mail])
    except smtplib.SMTPRecipientsRefused as exc:
        codes = [code for code, _msg in exc.recipients.values()]
        if all(400 <= code < 500 for code in codes):
            raise TransientSendError(f"SMTP recipient deferred: {exc.recipients}") from exc
        raise PermanentSendError(f"SMTP refused the recipient: {exc.recipients}", code=str(codes[0] if codes else 550)) from exc
    except smtplib.SMTPResponseException as exc:
        if 500 <= exc.smtp_code < 600:
            raise PermanentSendError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", code=str(exc.smtp_code)) from exc
        raise TransientSendError(f"SMTP {exc.smtp_code}: {exc.smtp_error!r}", ambiguous=False) from exc
    except (smtplib.SMTPException, OSError) as exc:
        # The server may have accepted the DATA before the connection broke; the retry reuses the
        # same Message-ID, so at worst the customer's client sees one mail twice and folds it.
        raise TransientSendError(str(exc) or type(exc).__name__, ambiguous=True) from exc
    if not sent:
        raise TransientSendError("The email backend sent nothing", ambiguous=False)
    return SendResult(provider_id=message_id, status="sent")
