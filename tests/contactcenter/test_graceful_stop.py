"""Requests in flight when daphne stops (on SIGTERM it cancels every application instance, waits
for them with ``asyncio.gather``, then stops the event loop) finish and answer; none is left
half-way with its thread waiting for a loop that no longer runs, which kept daphne from exiting at
all (contactcenter/graceful_stop.py). The Django application here is the real one, its view holds
its thread like a slow request."""

import asyncio
import sys

import pytest
from django.core.asgi import get_asgi_application

from contactcenter.graceful_stop import GracefulStop

from . import slow_urls


@pytest.fixture(autouse=True)
def _slow_view(settings):
    settings.ROOT_URLCONF = "tests.contactcenter.slow_urls"
    slow_urls.entered.clear()
    slow_urls.release.clear()
    yield
    slow_urls.release.set()


class Client:
    """One HTTP connection as daphne drives an application instance."""

    def __init__(self, app, path: str):
        self.sent: list[dict] = []
        self.incoming: asyncio.Queue = asyncio.Queue()
        self.incoming.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
                 "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
                 "root_path": "", "headers": [(b"host", b"testserver")], "client": ("127.0.0.1", 5000),
                 "server": ("testserver", 80)}
        self.instance = asyncio.ensure_future(app(scope, self.incoming.get, self._send))

    async def _send(self, message):
        self.sent.append(message)

    @property
    def status(self) -> int | None:
        return next((m["status"] for m in self.sent if m["type"] == "http.response.start"), None)

    async def server_stops(self) -> None:
        await server_stops(self)


async def server_stops(*clients: Client) -> None:
    """What daphne's kill_all_applications does: cancel every instance, wait with gather (which
    ends at the first instance that ends cancelled), then the loop stops."""
    for client in clients:
        client.instance.cancel()
    await asyncio.gather(*(client.instance for client in clients))


def _other_tasks() -> set:
    return {task for task in asyncio.all_tasks() if task is not asyncio.current_task() and not task.done()}


async def _view_entered():
    assert await asyncio.to_thread(slow_urls.entered.wait, 10)


async def test_the_project_application_lets_requests_in_flight_finish_and_answer_when_the_server_stops(monkeypatch):
    from contactcenter.asgi import application

    limit = application.app.application_mapping["http"]
    monkeypatch.setattr(limit, "_semaphore", asyncio.Semaphore(1))  # a limit of one: the second request queues
    in_view = Client(application, "/slow/")
    await _view_entered()
    queued = Client(application, "/slow/")  # accepted, waiting for the first one's slot
    await asyncio.sleep(0.05)

    stopping = asyncio.ensure_future(server_stops(in_view, queued))
    await asyncio.sleep(0.3)
    assert not stopping.done()  # before: done at once (the queued one ended cancelled), a thread stranded
    slow_urls.release.set()
    await stopping

    assert in_view.status == 200 and queued.status == 200
    assert _other_tasks() == set()  # nothing left in flight for a stopped loop to strand


async def test_a_request_past_the_drain_time_is_aborted_and_the_instance_ends_only_after_its_thread():
    app = GracefulStop(get_asgi_application(), drain_seconds=0.2)
    client = Client(app, "/slow/")
    await _view_entered()
    stopping = asyncio.ensure_future(client.server_stops())
    await asyncio.sleep(0.6)  # past the drain time: Django was told the client left ...
    assert not stopping.done()  # ... and waits for the view's thread before the instance ends
    slow_urls.release.set()
    await stopping

    assert client.status is None  # aborted: no answer; the client retries
    assert _other_tasks() == set()


async def test_requests_arriving_while_the_server_stops_are_answered_503_without_reaching_django(monkeypatch):
    steps = _fake_reactor(monkeypatch)
    app = GracefulStop(get_asgi_application(), drain_seconds=5)
    first = Client(app, "/slow/")
    await _view_entered()
    first.instance.cancel()
    [(_, _, our_step)] = steps
    our_step()
    slow_urls.entered.clear()

    late = Client(app, "/slow/")
    await late.instance
    assert late.status == 503
    assert (b"retry-after", b"2") in late.sent[0]["headers"]
    assert not slow_urls.entered.is_set()

    slow_urls.release.set()
    await first.instance
    assert first.status == 200


async def test_an_instance_cancelled_outside_a_server_stop_does_not_refuse_later_requests():
    app = GracefulStop(get_asgi_application(), drain_seconds=5)
    client = Client(app, "/slow/")
    await _view_entered()
    client.instance.cancel()  # e.g. daphne reaping an instance whose client left long ago
    slow_urls.release.set()
    await client.instance
    assert app.stopping is False
    assert (await _answer(Client(app, "/slow/"))) == 200


async def _answer(client: Client) -> int | None:
    await client.instance
    return client.status


def _fake_reactor(monkeypatch) -> list:
    """Twisted's reactor as daphne runs it, recording the stop steps added to it."""
    steps = []

    class Reactor:
        def addSystemEventTrigger(self, phase, event, step):
            steps.append((phase, event, step))

    monkeypatch.setitem(sys.modules, "twisted.internet.reactor", Reactor())
    return steps


async def test_under_daphne_the_reactor_stops_only_after_every_instance_ended(monkeypatch):
    """Daphne's own stop step (a gather) ends as soon as one instance ends cancelled, e.g. one
    cancelled before it even started; the wrapper's own step waits for all of them."""
    steps = _fake_reactor(monkeypatch)
    app = GracefulStop(get_asgi_application(), drain_seconds=5)
    in_view = Client(app, "/slow/")
    await _view_entered()
    never_started = Client(app, "/slow/")
    [(phase, event, our_step)] = steps
    assert (phase, event) == ("before", "shutdown")

    # daphne's step: cancel all, gather; its gather ends at once on the one cancelled before it ran
    for client in (in_view, never_started):
        client.instance.cancel()
    daphne_gather = asyncio.gather(in_view.instance, never_started.instance)
    ours = our_step()
    assert app.stopping
    with pytest.raises(asyncio.CancelledError):
        await daphne_gather
    await asyncio.sleep(0.3)
    assert not ours.called  # the reactor keeps running: the request is still in its view

    slow_urls.release.set()
    for _ in range(100):
        if ours.called:
            break
        await asyncio.sleep(0.05)
    assert ours.called
    assert in_view.status == 200
    assert _other_tasks() == set()


async def test_a_socket_that_never_ends_does_not_keep_a_stopping_server_alive(monkeypatch, caplog):
    """A websocket instance that ignores its cancellation for ever (a cleanup stuck on a dead
    connection): the server's stop waits for it a bounded time, says so, and goes on, as a
    process manager would otherwise kill it and lose everything else still finishing."""
    steps = _fake_reactor(monkeypatch)
    stuck_forever = asyncio.Event()

    async def stuck_socket(scope, receive, send):
        while not stuck_forever.is_set():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                continue  # swallowed: it never ends by itself

    app = GracefulStop(stuck_socket, drain_seconds=0.2)
    app.end_grace_seconds, app.stop_limit_seconds = 0.3, 1.0
    scope = {"type": "websocket", "path": "/ws/widget/", "headers": []}
    instance = asyncio.ensure_future(app(scope, asyncio.Queue().get, lambda message: asyncio.sleep(0)))
    await asyncio.sleep(0.05)
    [(_phase, _event, our_step)] = steps
    instance.cancel()  # daphne's step
    ours = our_step()
    await asyncio.wait_for(instance, 5)  # the wrapper gave up on it: daphne's gather can end
    for _ in range(100):
        if ours.called:
            break
        await asyncio.sleep(0.05)
    assert ours.called  # the reactor may stop
    assert "did not end within" in caplog.text
    stuck_forever.set()
    await asyncio.sleep(0.1)
