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


def board_data(snapshot: dict) -> dict:
    """The snapshot as plain JSON values (datetimes as ISO 8601), once per computation."""
    return json.loads(json.dumps(snapshot, cls=DjangoJSONEncoder))


def snapshot_frame(*, version: int, html: str, data: dict) -> dict:
    return {"type": SNAPSHOT, "version": version, "html": html, "data": data}
