"""``/ws/supervisor/``: the live wallboard.

On connect a supervisor's socket is sent the whole board (``wallboard.snapshot``, version n).
It then listens on the ``supervisors`` group, where the core already publishes every routing,
presence and conversation event after commit (conversations.events), and on any that can change
the board the process's ``BoardHub`` reads the board again from the database and pushes it to
every wallboard socket of the process. The first event after a quiet moment is read at once;
those arriving while a read is under way, or within ``COALESCE_SECONDS`` of the last read, are
coalesced into one more read: one computation per process however many supervisors, at most
one every ``COALESCE_SECONDS`` however many events, and each change on screen well within a
second of its commit. A board is encoded once per language and the same text sent to each
socket. The database is the truth: a socket that reconnects gets a fresh board first, and the hub
also reads again every ``REFRESH_SECONDS`` (the day rolls over at midnight, and a lost
notification delays a change by that much at most).
"""

import asyncio
import itertools
import logging
import weakref

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import connections

from contactcenter.decoding import UndecodableInput, json_decode
from contactcenter.permissions import is_supervisor
from conversations.groups import supervisors_group, user_group

from .board import board_build
from .events import event_changes_board, snapshot_frame_text

logger = logging.getLogger(__name__)

COALESCE_SECONDS = 0.2
REFRESH_SECONDS = 30.0
FORBIDDEN_CLOSE_CODE = 4403
BAD_FRAME_CLOSE_CODE = 4400

# Versions order every board a process computes, taken when its read *starts*: a board with a
# higher version read the database later, so it never shows less than a lower one.
_versions = itertools.count(1)


def next_version() -> int:
    return next(_versions)


class BoardHub:
    """The wallboard sockets of one event loop (one daphne process) and the one read serving them."""

    def __init__(self):
        self.sockets: set["WallboardConsumer"] = set()
        self.dirty = False
        self.task: asyncio.Task | None = None
        self.ticker: asyncio.Task | None = None
        self.last_read = float("-inf")

    def join(self, socket: "WallboardConsumer") -> None:
        self.sockets.add(socket)
        if self.ticker is None or self.ticker.done():
            self.ticker = asyncio.ensure_future(self._tick())

    def leave(self, socket: "WallboardConsumer") -> None:
        self.sockets.discard(socket)
        if not self.sockets and self.ticker is not None:
            self.ticker.cancel()
            self.ticker = None

    def changed(self) -> None:
        """Something on the board may have changed: read it again soon (coalesced)."""
        self.dirty = True
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self.changed()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while self.dirty and self.sockets:
            wait = self.last_read + COALESCE_SECONDS - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            self.dirty = False  # events from here on ask for the next read
            self.last_read = loop.time()
            version = next_version()
            languages = {socket.language for socket in self.sockets}
            try:
                data, html = await _read_board(languages)
            except Exception:  # noqa: BLE001 - the next event or tick reads again
                logger.exception("wallboard: could not read the board")
                continue
            texts = {language: snapshot_frame_text(version=version, html=page, data=data)
                     for language, page in html.items()}
            for socket in list(self.sockets):
                if socket.language in texts:
                    await socket.board_send_text(version, texts[socket.language])


def _read_board(languages: set[str]):
    """``board_build`` in a thread of its own, not in the one thread that every consumer's
    database work shares by default (``thread_sensitive``): a board read takes tens of
    milliseconds, and the consoles connecting or acting meanwhile must not queue behind it. The
    read touches nothing of the consumer's; its connection is closed after it (the executor's
    threads outlive the read, and a connection left open in one keeps the database busy)."""
    return database_sync_to_async(_board_build_closing, thread_sensitive=False)(languages)


def _board_build_closing(languages: set[str]):
    try:
        return board_build(languages)
    finally:
        connections.close_all()


_hubs: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, BoardHub]" = weakref.WeakKeyDictionary()


def hub() -> BoardHub:
    loop = asyncio.get_running_loop()
    if loop not in _hubs:
        _hubs[loop] = BoardHub()
    return _hubs[loop]


def _language_of(scope) -> str:
    """The page's language (``?lang=``), one of ours, else the default."""
    from urllib.parse import parse_qs

    asked = parse_qs((scope.get("query_string") or b"").decode("latin-1")).get("lang", [""])[0]
    languages = {code for code, _name in settings.LANGUAGES}
    return asked if asked in languages else settings.LANGUAGE_CODE


class WallboardConsumer(AsyncJsonWebsocketConsumer):
    """Supervisors only (close 4403 otherwise); Origin is checked before it (asgi.py)."""

    @classmethod
    async def decode_json(cls, text_data):
        return json_decode(text_data)

    async def connect(self):
        user = self.scope.get("user")
        if user is None or not await database_sync_to_async(is_supervisor)(user):
            await self.close(code=FORBIDDEN_CLOSE_CODE)
            return
        self.language = _language_of(self.scope)
        self.version = 0
        # The user's group: a change of password or roles makes the socket authenticate again.
        self.joined = [supervisors_group(), user_group(user.pk)]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self._send_fresh()
        hub().join(self)

    async def disconnect(self, code):
        hub().leave(self)
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []

    async def _send_fresh(self):
        version = next_version()
        data, html = await _read_board({self.language})
        await self.board_send_text(version, snapshot_frame_text(version=version, html=html[self.language], data=data))

    async def board_send_text(self, version: int, text: str):
        """Send a board already encoded (the hub encodes it once for every socket)."""
        if version <= self.version:
            return  # a read that started before the one already sent
        self.version = version
        await self.send(text_data=text)

    async def receive(self, text_data=None, bytes_data=None, **kwargs):
        try:
            content = await self.decode_json(text_data) if text_data is not None else None
        except UndecodableInput:
            content = None
        if not isinstance(content, dict):
            await self.send_json({"type": "error", "code": 400, "reason": "bad frame"})
            await self._leave_and_close(BAD_FRAME_CLOSE_CODE)
            return
        kind = content.get("type")
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind == "refresh":
            await self._send_fresh()
        else:
            await self.send_json({"type": "error", "code": 400, "reason": "unknown frame type"})

    async def console_event(self, event):
        """An event of the core on the supervisors' group (conversations.events)."""
        if event_changes_board(event.get("event") or {}):
            hub().changed()

    async def console_reauthenticate(self, event):
        """Password, active flag or roles changed: reconnect, which authorises again."""
        await self._leave_and_close(4001)

    async def _leave_and_close(self, code: int):
        hub().leave(self)
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []
        await self.close(code=code)
