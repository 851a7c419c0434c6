"""Server-rendered SVG bar charts (no JavaScript): each with a <title> and <desc> for screen
readers, each bar a link to the conversations behind it; the page puts the same numbers in a table
beside every chart. Every text is escaped (labels may be queue or agent names).
"""

from dataclasses import dataclass

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 640, 220
MARGIN_LEFT, MARGIN_BOTTOM, MARGIN_TOP = 48, 36, 12


@dataclass(frozen=True)
class Bar:
    label: str
    value: float | None
    text: str  # the value as the reader sees it ("12", "85 %", "1 min 5 s")
    href: str = ""


def bar_chart(*, chart_id: str, title: str, description: str, bars: list[Bar]) -> SafeString:
    top = max((bar.value or 0 for bar in bars), default=0) or 1
    plot_w, plot_h = WIDTH - MARGIN_LEFT - 8, HEIGHT - MARGIN_BOTTOM - MARGIN_TOP
    step = plot_w / max(len(bars), 1)
    label_every = max(1, len(bars) // 12)  # at most a dozen axis labels, whatever the range
    parts = [format_html(
        # A group, not an image: its bars are links (an image's inside is not for assistive tech).
        '<svg class="chart" id="{}" role="group" aria-labelledby="{}-title {}-desc" viewBox="0 0 {} {}" '
        'width="100%" preserveAspectRatio="xMidYMid meet" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{}-title">{}</title><desc id="{}-desc">{}</desc>',
        chart_id, chart_id, chart_id, WIDTH, HEIGHT, chart_id, title, chart_id, description)]
    base_y = MARGIN_TOP + plot_h
    parts.append(format_html('<line class="chart-axis" x1="{}" y1="{}" x2="{}" y2="{}"/>',
                             MARGIN_LEFT, base_y, WIDTH - 8, base_y))
    parts.append(format_html('<text class="chart-tick" x="{}" y="{}" text-anchor="end">{}</text>',
                             MARGIN_LEFT - 4, MARGIN_TOP + 10, _short(top)))
    for index, bar in enumerate(bars):
        height = (bar.value or 0) / top * plot_h
        x = MARGIN_LEFT + index * step + step * 0.15
        rect = format_html('<rect class="chart-bar" x="{}" y="{}" width="{}" height="{}">'
                           '<title>{}: {}</title></rect>',
                           _n(x), _n(base_y - height), _n(step * 0.7), _n(height), bar.label, bar.text)
        if bar.href:
            rect = format_html('<a href="{}" aria-label="{}: {}">{}</a>', bar.href, bar.label, bar.text, rect)
        parts.append(rect)
        if index % label_every == 0:
            parts.append(format_html('<text class="chart-tick" x="{}" y="{}" text-anchor="middle">{}</text>',
                                     _n(x + step * 0.35), HEIGHT - MARGIN_BOTTOM + 16, bar.label))
    parts.append(mark_safe("</svg>"))
    return mark_safe("".join(str(part) for part in parts))


def _n(value: float) -> str:
    return f"{value:.1f}"


def _short(value: float) -> str:
    return escape(f"{value:.0f}" if value >= 10 else f"{value:.2g}")
