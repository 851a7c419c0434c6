"""Charset decoding for inbound mail, the way Japanese mail clients really write it."""

import re

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
