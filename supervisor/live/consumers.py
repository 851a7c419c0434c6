"""``/ws/supervisor/``: the live wallboard.

On connect a supervisor's socket is sent the whole board (``wallboard.snapshot``, version n).
It then listens on the ``supervisors`` group, where the core already publishes every routing,
presence and conversation event after commit (conversations.events). The process's ``BoardHub``
keeps the board it last sent; on an event that can change it, it reads again and sends every
wallboard socket of the process only the rows that changed (``wallboard.delta``, from the version
the socket has), each delta encoded once per language and the same text sent to each socket.

What is read again depends on the event: an agent's presence change (``agent.presence``, which
carries the committed change whole) is applied to the board as the event tells it and the
queues' and channels' agents by presence recounted, at once and without a query (an event without those fields
reads the agent's presence: one query); any
other change reads the whole board, at most once every ``COALESCE_SECONDS`` (the events arriving
meanwhile are coalesced into one more read). Every socket of the process receives every group
event, so only one of them (the hub's first) tells the hub: one read per event per process,
however many supervisors.

A socket that does not show the delta's base version (it connected or refreshed in between) is
sent the whole board instead, as is every socket when the layout changed (a queue, channel or
agent came or went). The database is the truth: a socket that reconnects gets a fresh board
first, and the hub also reads the whole board again every ``REFRESH_SECONDS`` (the day rolls
over at midnight, and a lost notification delays a change by that much at most).
"""

import asyncio
import itertools
import logging
import weakref
from concurrent.futures import ThreadPoolExecutor

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.db import connections

from contactcenter.decoding import UndecodableInput, json_decode
from contactcenter.permissions import is_supervisor
from conversations.groups import supervisors_group, user_group

from .board import board_changes, board_render, delta_rows
from .events import board_data, delta_frame_text, event_changes_board, event_moves_agent, snapshot_frame_text
from .selectors import board_with_presences, presence_from_event, wallboard_agents_refresh, wallboard_snapshot

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
    """The wallboard sockets of one event loop (one daphne process), the board they were last
    sent and the one read at a time serving them."""

    def __init__(self):
        self.sockets: dict["WallboardConsumer", None] = {}  # ordered: the first one tells the hub
        self.whole = False  # the next read is of the whole board
        self.agents: set[int] = set()  # else, of these agents' presence
        self.presences: dict[int, dict] = {}  # and these presence changes, as their events tell them
        self.task: asyncio.Task | None = None
        self.ticker: asyncio.Task | None = None
        self.last_whole_read = float("-inf")
        self.board: dict | None = None
        self.prints: dict[str, str] = {}
        self.version = 0
        self.executor: ThreadPoolExecutor | None = None

    def join(self, socket: "WallboardConsumer") -> None:
        self.sockets[socket] = None
        if self.ticker is None or self.ticker.done():
            self.ticker = asyncio.ensure_future(self._tick())

    def leave(self, socket: "WallboardConsumer") -> None:
        was_listening = self.is_listener(socket)
        self.sockets.pop(socket, None)
        if self.sockets and was_listening:
            # The next socket tells the hub from now on; an event that reached only the one leaving
            # while it left would be missed until the periodic read: read the board now instead.
            self.changed()
        if not self.sockets:
            if self.ticker is not None:
                self.ticker.cancel()
                self.ticker = None
            self.board, self.prints = None, {}  # nobody watches: the next socket starts afresh
            if self.executor is not None:
                self.executor.submit(connections.close_all)
                self.executor.shutdown(wait=False)
                self.executor = None

    async def _in_reader(self, function, *args):
        """Reads and renderings run in the hub's own thread, not in the one thread that every
        consumer's database work shares by default: a whole board takes tens of milliseconds, and
        the consoles connecting or acting meanwhile must not queue behind it. The thread keeps its
        database connection between reads (twenty presence changes a second would otherwise open
        twenty connections a second) and closes it when the last socket leaves."""
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="wallboard-reads")
        return await asyncio.get_running_loop().run_in_executor(self.executor, function, *args)

    def is_listener(self, socket: "WallboardConsumer") -> bool:
        return next(iter(self.sockets), None) is socket

    def event(self, event: dict) -> None:
        if event_moves_agent(event):
            change = presence_from_event(event)
            agent = int(event["agent"])
            if change is None:
                self.agents.add(agent)
            elif agent not in self.presences or self.presences[agent]["presence_since"] <= change["presence_since"]:
                self.presences[agent] = change
            self._start()
        elif event_changes_board(event):
            self.changed()

    def fresh(self, socket: "WallboardConsumer") -> None:
        """The socket shows nothing (it connected or asked again): a whole board for it soon."""
        socket.version = 0
        self.changed()

    def changed(self) -> None:
        """Anything on the board may have changed: read all of it again soon (coalesced)."""
        self.whole = True
        self._start()

    def _start(self) -> None:
        if self.task is None or self.task.done():
            self.task = asyncio.ensure_future(self._run())

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            self.changed()

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while (self.whole or self.agents or self.presences) and self.sockets:
            whole = self.whole or self.board is None
            if whole:
                wait = self.last_whole_read + COALESCE_SECONDS - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                self.last_whole_read = loop.time()
            # Later events ask for the next read.
            agents, presences, self.whole, self.agents, self.presences = self.agents, self.presences, False, set(), {}
            version = next_version()
            languages = {socket.language for socket in self.sockets}
            try:
                read = await self._in_reader(_changes, self.board, self.prints, None if whole else (agents, presences),
                                             languages)
            except Exception:  # noqa: BLE001 - the next event or tick reads again
                logger.exception("wallboard: could not read the board")
                continue
            board, prints, rows = read
            base = self.version
            self.board, self.prints = board, prints
            behind = [socket for socket in self.sockets if socket.version != base]  # new, refreshing
            if rows == {} and not behind:
                continue  # nothing a supervisor sees changed: no frame, the version stays
            self.version = version
            deltas = {language: delta_frame_text(version=version, base=base, at=board["at"], rows=changed)
                      for language, changed in (rows if rows is not None else {}).items()}
            if rows == {}:  # only for the sockets behind: the others move on with an empty delta
                deltas = {socket.language: delta_frame_text(version=version, base=base, at=board["at"], rows=[])
                          for socket in self.sockets}
            snapshots: dict[str, str] = {}
            for socket in list(self.sockets):
                if socket.language in deltas and socket.version == base:
                    await socket.board_send_text(version, deltas[socket.language])
                    continue
                if socket.language not in snapshots:
                    snapshots[socket.language] = await self._in_reader(_snapshot_text, board, version,
                                                                       socket.language)
                await socket.board_send_text(version, snapshots[socket.language])


def _changes(board, prints, moved, languages):
    """(new board, its fingerprints, rows): rows maps each language to the changed rows rendered in
    it, ``{}`` when no row changed, None when only a whole board will do. ``moved``: None for a
    whole read, else the agents whose presence changed (ids to read, and changes as their events
    told them)."""
    try:
        after = only = None
        if moved is not None and (moved[0] | set(moved[1])) <= {row["id"] for row in board["agents"]}:
            agents, presences = moved
            after = board_with_presences(board, presences) if presences else board
            if agents:
                after = wallboard_agents_refresh(after, agents)  # None when one of them is gone
            only = {f"agent-{agent}" for agent in (agents | set(presences))} | {
                f"queue-{row['id']}" for row in board["queues"]} | {f"channel-{row['channel']}" for row in board["channels"]}
        if after is None:  # a new agent is a new row: the whole board is read
            after, only = wallboard_snapshot(), None
    except Exception:
        connections.close_all()  # a broken connection: the next read opens another
        raise
    keys, after_prints = board_changes(board, after, before_prints=prints, only=only)
    if keys is None:
        return after, after_prints, None
    if not keys:
        return after, after_prints, {}
    return after, after_prints, {language: delta_rows(after, keys, language) for language in languages}


def _snapshot_text(board: dict, version: int, language: str) -> str:
    return snapshot_frame_text(version=version, html=board_render(board, language), data=board_data(board))


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
        self.version = 0  # of the board this socket shows (0: none yet)
        # The user's group: a change of password or roles makes the socket authenticate again.
        self.joined = [supervisors_group(), user_group(user.pk)]
        for group in self.joined:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        hub().join(self)
        hub().fresh(self)

    async def disconnect(self, code):
        hub().leave(self)
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []

    async def board_send_text(self, version: int, text: str):
        """Send a board or a delta already encoded (the hub encodes it once for every socket)."""
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
            hub().fresh(self)
        else:
            await self.send_json({"type": "error", "code": 400, "reason": "unknown frame type"})

    async def console_event(self, event):
        """An event of the core on the supervisors' group (conversations.events)."""
        board = hub()
        if board.is_listener(self):  # every socket of the process gets the event: one tells the hub
            board.event(event.get("event") or {})

    async def console_reauthenticate(self, event):
        """Password, active flag or roles changed: reconnect, which authorises again."""
        await self._leave_and_close(4001)

    async def _leave_and_close(self, code: int):
        hub().leave(self)
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)
        self.joined = []
        await self.close(code=code)
