"""nh3 allow-list sanitizing of inbound HTML, and HTML to plain text."""

import html as html_lib
import re
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
