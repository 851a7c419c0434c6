"""The wallboard's websocket frames (payloads are built here and nowhere else).

A frame carries the whole board: ``version`` orders frames (a client keeps the highest it has
seen and drops older ones), ``html`` is the live region rendered by the server in the socket's
language (customer names escaped by the template engine), ``data`` the same figures as JSON.
A client that reconnects is sent a fresh board first: it never relies on frames it missed.
"""

import json

from django.core.serializers.json import DjangoJSONEncoder

SNAPSHOT = "wallboard.snapshot"

# The events on the supervisors' group that can change what the board shows. Outbound messages,
# delivery receipts and notes change no count, so they cost no recomputation.
_RELEVANT_PREFIXES = ("conversation.", "offer.", "agent.")


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
