"""Where quoted history begins in a reply (Gmail, Apple Mail, Outlook, Japanese clients)."""

import re

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
