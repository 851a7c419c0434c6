"""The wallboard's websocket frames (payloads are built here and nowhere else).

``wallboard.snapshot`` carries the whole board: ``version`` orders frames, ``html`` is the live
region rendered by the server in the socket's language (customer names escaped by the template
engine), ``data`` the same figures as JSON. A socket is sent one on connect, on its ``refresh``
and whenever the board's layout changed (a row came or went).

``wallboard.delta`` carries only the rows that changed since the board of version ``base``: each
``{"key": "agent-7", "html": "<tr data-key=…>", "data": {…}}`` replaces the element of the same
``data-key``; ``at`` is when it was read. A client applies it only when it shows version
``base``; otherwise it missed a frame and sends ``{"type": "refresh"}`` for a fresh snapshot.
A client that reconnects is sent a fresh board first: it never relies on frames it missed.
"""

import json

from django.core.serializers.json import DjangoJSONEncoder

SNAPSHOT = "wallboard.snapshot"
DELTA = "wallboard.delta"

# The events on the supervisors' group that can change what the board shows. Outbound messages,
# delivery receipts and notes change no count, so they cost no recomputation.
_RELEVANT_PREFIXES = ("conversation.", "offer.", "agent.")


def event_moves_agent(event: dict) -> bool:
    """An agent's presence changed: their row and the queues' agents by presence, nothing else."""
    return event.get("type") == "agent.presence" and isinstance(event.get("agent"), int)


def event_changes_board(event: dict) -> bool:
    kind = str(event.get("type", ""))
    if kind.startswith(_RELEVANT_PREFIXES):
        return True
    if kind == "message.created":
        # An inbound message opens or re-queues a conversation; a system event records a move.
        return event.get("direction") == "inbound" or event.get("kind") == "event"
    return False


def board_data(snapshot: dict) -> str:
    """The snapshot as JSON text (datetimes as ISO 8601), encoded once per read of the board."""
    return json.dumps(snapshot, cls=DjangoJSONEncoder)


def snapshot_frame_text(*, version: int, html: str, data: str) -> str:
    """``{"type": "wallboard.snapshot", "version": n, "html": "…", "data": {…}}`` as text: the
    board's JSON (``board_data``) is spliced in as it is, not decoded and encoded again."""
    return f'{{"type": "{SNAPSHOT}", "version": {int(version)}, "html": {json.dumps(html)}, "data": {data}}}'


def delta_frame_text(*, version: int, base: int, at, rows: list[tuple]) -> str:
    """``{"type": "wallboard.delta", "version": n, "base": b, "at": "…", "rows": [{key, html, data}…]}``."""
    return json.dumps({"type": DELTA, "version": int(version), "base": int(base), "at": at,
                       "rows": [{"key": key, "html": html, "data": row} for key, html, row in rows]},
                      cls=DjangoJSONEncoder)
