"""The board as the wallboard sends it: the snapshot, its JSON, and its HTML per language; and
between two boards, the rows that changed (the delta a socket is sent instead of the whole board).

The HTML is rendered block by block (a queue with its waiting customers, a channel, an agent), and
a block whose figures did not change since the last rendering in that language is reused: an
event changes one or two blocks, and rendering a hundred agents' rows for each event was most of
the board's cost. Durations (how long someone waits, is on a break, has a conversation) are left
out of a block's fingerprint: they change every second, and the page's script keeps them ticking
from the timestamps the block carries (``data-since``), which are in the fingerprint.
"""

import json
import threading

from django.core.serializers.json import DjangoJSONEncoder
from django.template.loader import get_template
from django.utils import translation
from django.utils.safestring import mark_safe

# Figures derived from "now" only: the block's timestamps change when they do.
_TICKING = frozenset({"wait_seconds", "longest_wait_seconds", "presence_seconds", "seconds"})
_BLOCKS = (("queues", "q", "supervisor/_queue_block.html"), ("channels", "c", "supervisor/_channel_row.html"),
           ("agents", "a", "supervisor/_agent_row.html"))
_CACHE_LIMIT = 5000


def _steady(value):
    if isinstance(value, dict):
        return {key: _steady(item) for key, item in value.items() if key not in _TICKING}
    if isinstance(value, list):
        return [_steady(item) for item in value]
    return value


def _fingerprint(row: dict) -> str:
    return json.dumps(_steady(row), cls=DjangoJSONEncoder, sort_keys=True)


class BlockCache:
    """Rendered blocks by (language, template, fingerprint); thread-safe (reads run in threads)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._blocks: dict[tuple, str] = {}

    def render(self, language: str, template_name: str, name: str, row: dict) -> str:
        key = (language, template_name, _fingerprint(row))
        with self._lock:
            html = self._blocks.get(key)
        if html is None:
            html = get_template(template_name).render({name: row})
            with self._lock:
                if len(self._blocks) >= _CACHE_LIMIT:
                    self._blocks.clear()  # rows of long-gone states; the next reads fill it again
                self._blocks[key] = html
        return html


_cache = BlockCache()


def board_render(snapshot: dict, language: str, *, cache: BlockCache = _cache) -> str:
    with translation.override(language):
        blocks = {section: [mark_safe(cache.render(language, template, name, row)) for row in snapshot[section]]
                  for section, name, template in _BLOCKS}
        return get_template("supervisor/_live.html").render({"board": snapshot, "blocks": blocks})


def row_key(section: str, row: dict) -> str:
    """The row's ``data-key`` in the page (the templates write the same)."""
    if section == "queues":
        return f"queue-{row['id']}"
    if section == "channels":
        return f"channel-{row['channel']}"
    return f"agent-{row['id']}"


# What a row does not carry but the page shows around the rows: when it changes, the whole board goes.
_FRAME = ("day_start", "short_abandon_seconds", "presences")


def board_layout(snapshot: dict) -> tuple:
    """The rows' order per section and the figures outside the rows: two boards with the same
    layout differ only inside rows, and a delta of rows can take the page from one to the other."""
    return (tuple(tuple(row_key(section, row) for row in snapshot[section]) for section, _n, _t in _BLOCKS),
            _fingerprint({name: snapshot.get(name) for name in _FRAME}))


def board_fingerprints(snapshot: dict) -> dict[str, str]:
    return {row_key(section, row): _fingerprint(row) for section, _n, _t in _BLOCKS for row in snapshot[section]}


def board_changes(before: dict | None, after: dict, *, before_prints: dict[str, str] | None = None,
                  only: set[str] | None = None):
    """The keys of the rows that changed from ``before`` to ``after`` (durations ticking aside),
    with ``after``'s fingerprints; keys None when the layout changed (a queue, channel or agent
    came or went, the day rolled over …): then only a whole board will do. ``only``: the keys of
    the rows that may have changed (an agent's and the queues' after a presence change, whose
    layout is ``before``'s); the others keep their fingerprints."""
    if before is None:
        return None, board_fingerprints(after)
    before_prints = before_prints if before_prints is not None else board_fingerprints(before)
    if only is not None:
        prints = dict(before_prints)
        prints.update({row_key(section, row): _fingerprint(row) for section, _n, _t in _BLOCKS
                       for row in after[section] if row_key(section, row) in only})
    else:
        prints = board_fingerprints(after)
        if board_layout(before) != board_layout(after):
            return None, prints
    return [key for key, value in prints.items() if before_prints.get(key) != value], prints


def delta_rows(snapshot: dict, keys: list[str], language: str, *, cache: BlockCache = _cache) -> list[tuple]:
    """``(key, html, row)`` of each changed row, rendered in ``language``."""
    wanted = set(keys)
    rows = []
    with translation.override(language):
        for section, name, template in _BLOCKS:
            for row in snapshot[section]:
                key = row_key(section, row)
                if key in wanted:
                    rows.append((key, cache.render(language, template, name, row), row))
    return rows
