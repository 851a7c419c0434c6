"""nh3 allow-list sanitizing of inbound HTML, and HTML to plain text, within bounds of size, depth and time."""

import html as html_lib
import re
import threading
from dataclasses import dataclass
from urllib.parse import unquote

import nh3

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


# Raster types only: a data: SVG cannot run script inside <img>, but nothing here needs one.
INLINE_IMAGE_TYPES = {"image/png", "image/jpeg", "image/gif", "image/webp"}
_CID_SRC = re.compile(r'(<img\b[^>]*?\bsrc=")cid:([^"]*)(")', re.IGNORECASE)


def cid_key(value: str) -> str:
    """How a Content-ID and a cid: URL are compared: a cid: URL is the Content-ID percent-encoded
    (RFC 2392), and mailers disagree on case."""
    return unquote(value).strip().strip("<>").lower()


def with_inline_images(markup: str, images: dict[str, str]) -> str:
    """Sanitized ``markup`` with each ``<img src="cid:…">`` whose Content-ID is in ``images``
    (``cid_key`` → a ``data:`` URI) showing that image. The rest stay cid: and show nothing (the
    formatted email's frame loads nothing from the network: its CSP allows data: images only)."""
    if not images or "cid:" not in markup.lower():
        return markup

    def replace(match: re.Match) -> str:
        uri = images.get(cid_key(html_lib.unescape(match.group(2))))
        return f"{match.group(1)}{uri}{match.group(3)}" if uri else match.group(0)

    return _CID_SRC.sub(replace, markup)


_BLOCK_END = re.compile(r"(?i)<\s*(br|/p|/div|/tr|/li|/h[1-6]|/blockquote|hr)\b[^>]*>")


def html_to_text(markup: str) -> str:
    text = _BLOCK_END.sub("\n", markup or "")
    text = nh3.clean(text, tags=set(), clean_content_tags=REMOVED_WITH_CONTENT)
    text = html_lib.unescape(text).replace("\xa0", " ")
    return re.sub(r"\n{3,}", "\n\n", "\n".join(line.rstrip() for line in text.splitlines())).strip()


# --- bounded rendering ------------------------------------------------------------------------------------
#
# nh3 (html5ever) is quadratic in nesting depth: 64,000 nested <div> (under 1 MB) take ~19 s, a 4 MB
# one ran past 20 minutes. So before the sanitizer sees a mail's HTML, a linear scan measures it
# (size, tags, nesting depth), and the sanitizer then runs under a time budget. Past either bound the
# formatted version is not rendered: the text part, or a plain extraction, is shown and the raw mail
# is kept; the message says why (``HtmlRendering.not_rendered``).

# Elements whose end tag is optional (the parser closes them implicitly): they never add up to depth.
_OPTIONAL_END = {"p", "li", "dt", "dd", "tr", "td", "th", "tbody", "thead", "tfoot", "option", "optgroup",
                 "colgroup", "caption", "rb", "rt", "rtc", "rp", "html", "head", "body"}
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "param", "source", "track",
         "wbr", "keygen", "command", "basefont", "bgsound", "frame", "image", "isindex", "nextid", "spacer"}
# [^<>]* keeps the scan linear: a "<" that never closes is given up at the next "<", not at the end.
_TAG = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9:-]{0,40})\b[^<>]*?(/?)>")
_ANY_TAG = re.compile(r"<[^<>]*>")
_BLOCK_END_LINEAR = re.compile(r"(?i)<\s*(br|/p|/div|/tr|/li|/h[1-6]|/blockquote|hr)\b[^<>]*>")


@dataclass(frozen=True)
class HtmlShape:
    size: int
    tags: int
    depth: int


def html_shape(markup: str, *, stop_at_depth: int | None = None, stop_at_tags: int | None = None) -> HtmlShape:
    """Size, number of tags and (an upper estimate of) the nesting depth of ``markup``, in one linear
    pass of a tag tokenizer, without building a tree. Stops early once a limit is passed."""
    depth = deepest = tags = 0
    open_counts: dict[str, int] = {}
    for match in _TAG.finditer(markup):
        tags += 1
        closing, name, self_closing = match.group(1), match.group(2).lower(), match.group(3)
        if name in _VOID or name in _OPTIONAL_END or self_closing:
            pass
        elif closing:
            # An end tag closes its open element and everything opened inside it; a stray one nothing.
            if open_counts.get(name):
                open_counts[name] -= 1
                depth = max(depth - 1, 0)
        else:
            open_counts[name] = open_counts.get(name, 0) + 1
            depth += 1
            deepest = max(deepest, depth)
        if (stop_at_depth is not None and deepest > stop_at_depth) or (stop_at_tags is not None and tags > stop_at_tags):
            break
    return HtmlShape(size=len(markup.encode("utf-8", "surrogatepass")), tags=tags, depth=deepest)


def html_too_complex(markup: str) -> str:
    """Why ``markup`` is too big or too deep to sanitize within bounds; "" when it is fine."""
    from django.conf import settings

    size = len(markup.encode("utf-8", "surrogatepass"))
    if size > settings.CC_EMAIL_HTML_MAX_BYTES:
        return f"its HTML is {size} bytes (limit {settings.CC_EMAIL_HTML_MAX_BYTES})"
    shape = html_shape(markup, stop_at_depth=settings.CC_EMAIL_HTML_MAX_DEPTH, stop_at_tags=settings.CC_EMAIL_HTML_MAX_TAGS)
    if shape.depth > settings.CC_EMAIL_HTML_MAX_DEPTH:
        return f"its HTML nests elements more than {settings.CC_EMAIL_HTML_MAX_DEPTH} deep"
    if shape.tags > settings.CC_EMAIL_HTML_MAX_TAGS:
        return f"its HTML has more than {settings.CC_EMAIL_HTML_MAX_TAGS} tags"
    return ""


def plain_text_extraction(markup: str) -> str:
    """Text out of HTML without parsing it (linear): tags dropped, scripts and styles with them."""
    text = _BLOCK_END_LINEAR.sub("\n", markup or "")
    text = _ANY_TAG.sub(" ", text)
    text = html_lib.unescape(text).replace("\xa0", " ")
    lines = (re.sub(r"[ \t]{2,}", " ", line).strip() for line in text.splitlines())
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


@dataclass(frozen=True)
class HtmlRendering:
    html: str  # sanitized, "" when not rendered
    text: str  # the HTML as text (only when asked for)
    not_rendered: str = ""  # why the formatted version is not shown; "" when it is


def _within_budget(work, seconds: float):
    """``work()``'s result, or None when it did not finish within ``seconds``. nh3 releases the GIL,
    so the caller really waits only ``seconds``; a run past the budget ends in a daemon thread (it
    never holds up a process that is stopping) and its result is dropped."""
    outcome: list = []
    runner = threading.Thread(target=lambda: outcome.append(work()), name="email-html-sanitize", daemon=True)
    runner.start()
    runner.join(seconds)
    return outcome[0] if outcome else None


def render_html(markup: str, *, with_text: bool) -> HtmlRendering:
    """Sanitize one mail's HTML (and turn it into text when ``with_text``) within the bounds above."""
    from django.conf import settings

    if not markup:
        return HtmlRendering("", "")
    reason = html_too_complex(markup)
    if not reason:
        budget = settings.CC_EMAIL_HTML_BUDGET_SECONDS
        done = _within_budget(lambda: (sanitize_html(markup), html_to_text(markup) if with_text else ""), budget)
        if done is not None:
            return HtmlRendering(*done)
        reason = f"sanitizing its HTML took longer than {budget} s"
    return HtmlRendering("", plain_text_extraction(markup) if with_text else "", reason)
