"""The console websocket behind AllowedHostsOriginValidator(AuthMiddlewareStack(...))."""

import pytest
from channels.db import database_sync_to_async
from django.conf import settings

from .console_socket_helpers import _connect, _cookie_of, _session_cookie, _signed_in  # noqa: F401

pytestmark = [pytest.mark.django_db(transaction=True)]


async def test_agent_with_session_is_accepted_and_greeted(agent):
    cookie = await database_sync_to_async(_session_cookie)(agent.user)
    communicator, connected, _ = await _connect(cookie)
    try:
        assert connected
        assert await communicator.receive_json_from() == {"type": "hello", "groups": 3}
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from() == {"type": "pong"}
    finally:
        await communicator.disconnect()


async def test_signing_out_closes_the_consoles_of_that_session_only(agent, supervisor):
    """A socket is authorised when it connects; signing out must stop it relaying customers'
    messages. Every tab of the browser that signed out closes, with 4401 (the console then goes to
    the login page); the same agent's other browser, with a session of its own, stays connected."""
    from channels.layers import get_channel_layer

    from conversations.groups import agent_group, supervisors_group

    browser = await database_sync_to_async(_signed_in)(agent.user)
    other_browser = await database_sync_to_async(_signed_in)(agent.user)
    cookies = [_cookie_of(browser), _cookie_of(browser), _cookie_of(other_browser),
               await database_sync_to_async(_session_cookie)(supervisor.user)]
    sockets = []
    for cookie in cookies:
        communicator, connected, _ = await _connect(cookie)
        assert connected
        assert (await communicator.receive_json_from())["type"] == "hello"
        sockets.append(communicator)
    tab, other_tab, elsewhere, supervisors = sockets
    try:
        response = await database_sync_to_async(browser.post)("/accounts/logout/")
        assert response.status_code == 302
        for communicator in (tab, other_tab):
            frames = []
            while (output := await communicator.receive_output(timeout=5))["type"] == "websocket.send":
                frames.append(output["text"])
            assert output == {"type": "websocket.close", "code": 4401}
            assert frames[-1] == '{"type": "signed_out"}'
        # Nothing more reaches them (they left their groups before closing); the other browser and
        # the supervisor still hear their events.
        await get_channel_layer().group_send(
            agent_group(agent.pk), {"type": "console.event", "event": {"type": "conversation.assigned", "conversation": 1}})
        await get_channel_layer().group_send(
            supervisors_group(), {"type": "console.event", "event": {"type": "queue.changed", "queue": 1}})
        assert await tab.receive_nothing(timeout=0.3)
        assert await other_tab.receive_nothing(timeout=0.1)
        for communicator, expected in ((elsewhere, "conversation.assigned"), (supervisors, "queue.changed")):
            received = await communicator.receive_json_from(timeout=5)
            while received["type"] != expected:  # the agent's presence change (offline) comes first
                received = await communicator.receive_json_from(timeout=5)
    finally:
        for communicator in sockets:
            await communicator.disconnect()


async def _closed_with(communicator) -> int:
    while (output := await communicator.receive_output(timeout=5))["type"] == "websocket.send":
        pass
    assert output["type"] == "websocket.close"
    return output["code"]


async def test_a_password_change_deactivation_or_lost_role_makes_every_console_authenticate_again(agent):
    """A socket is authorised when it connects. When the password changes (a reset after a
    compromise), the account is deactivated or the role taken away, every console of the user
    closes with 4001 (the console reconnects as after any drop), and connecting again lets in
    only a session still good for the console."""
    from django.contrib.auth.models import Group
    from django.test import RequestFactory

    kept = await database_sync_to_async(_signed_in)(agent.user)  # where the password is changed
    stolen = await database_sync_to_async(_signed_in)(agent.user)  # a session somebody else has

    async def connected_console(client):
        communicator, connected, code = await _connect(_cookie_of(client))
        if connected:
            assert (await communicator.receive_json_from())["type"] == "hello"
        return communicator, connected, code

    sockets = [(await connected_console(client))[0] for client in (kept, stolen)]

    def change_password():
        from django.contrib.auth import update_session_auth_hash
        from django.contrib.sessions.backends.db import SessionStore

        user = type(agent.user).objects.get(pk=agent.user.pk)
        user.set_password("a new long passphrase 2026")
        user.save()
        request = RequestFactory().get("/")
        request.user = user
        request.session = SessionStore(session_key=kept.cookies[settings.SESSION_COOKIE_NAME].value)
        update_session_auth_hash(request, user)  # as the password change form does for its own session
        request.session.save()
        # It cycles the session's key; the response would set the new cookie.
        kept.cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key

    await database_sync_to_async(change_password)()
    for communicator in sockets:
        assert await _closed_with(communicator) == 4001
        await communicator.disconnect()
    communicator, connected, _ = await connected_console(kept)
    assert connected  # the session that changed it carries on
    await communicator.disconnect()
    communicator, connected, _ = await connected_console(stolen)
    assert not connected  # the other session's password hash no longer matches
    await communicator.disconnect()

    # Role taken away: closed, and refused on return (no longer contact-center staff).
    communicator, connected, _ = await connected_console(kept)
    assert connected
    await database_sync_to_async(lambda: agent.user.groups.remove(Group.objects.get(name="agent")))()
    assert await _closed_with(communicator) == 4001
    await communicator.disconnect()
    communicator, connected, code = await connected_console(kept)
    assert not connected and code == 4403
    await communicator.disconnect()

    # Deactivated: closed, and refused on return.
    await database_sync_to_async(lambda: agent.user.groups.add(Group.objects.get(name="agent")))()
    communicator, connected, _ = await connected_console(kept)
    assert connected

    def deactivate():
        user = type(agent.user).objects.get(pk=agent.user.pk)
        user.is_active = False
        user.save()

    await database_sync_to_async(deactivate)()
    assert await _closed_with(communicator) == 4001
    await communicator.disconnect()
    communicator, connected, _ = await connected_console(kept)
    assert not connected
    await communicator.disconnect()


async def test_saving_a_user_without_touching_what_a_console_was_authorised_with_leaves_it_open(agent):
    client = await database_sync_to_async(_signed_in)(agent.user)
    communicator, connected, _ = await _connect(_cookie_of(client))
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"

    def touch():
        user = type(agent.user).objects.get(pk=agent.user.pk)
        user.first_name = "Alice"
        user.save()  # every field, none of them changed that matters
        user.last_login = None
        user.save(update_fields=["last_login"])

    await database_sync_to_async(touch)()
    assert await communicator.receive_nothing(timeout=0.5)
    await communicator.disconnect()


async def test_foreign_origin_is_rejected_before_accept_even_with_a_valid_session(agent):
    cookie = await database_sync_to_async(_session_cookie)(agent.user)
    communicator, connected, _ = await _connect(cookie, origin="https://evil.example")
    assert not connected
    await communicator.disconnect()


async def test_anonymous_and_stranger_are_refused(stranger):
    communicator, connected, _ = await _connect(None)
    assert not connected
    await communicator.disconnect()
    cookie = await database_sync_to_async(_session_cookie)(stranger)
    communicator, connected, code = await _connect(cookie)
    assert not connected and code == 4403
    await communicator.disconnect()


async def test_events_sent_to_the_agent_group_reach_the_socket(agent):
    from channels.layers import get_channel_layer

    from conversations.groups import agent_group

    cookie = await database_sync_to_async(_session_cookie)(agent.user)
    communicator, connected, _ = await _connect(cookie)
    try:
        assert connected
        await communicator.receive_json_from()
        await get_channel_layer().group_send(
            agent_group(agent.pk), {"type": "console.event", "event": {"type": "conversation.assigned", "conversation": 1}}
        )
        assert await communicator.receive_json_from(timeout=5) == {"type": "conversation.assigned", "conversation": 1}
    finally:
        await communicator.disconnect()


@pytest.mark.production
async def test_an_idle_console_socket_stays_open_on_the_redis_layer(agent):
    """redis-py 8's default 5 s socket timeout equals channels_redis's blocking receive, and an
    idle consumer used to die with 1011 after ~5 s (django/channels_redis#422): the layer's
    socket timeout is set longer. Idle here for 7 s, then the socket still answers and still
    receives group events."""
    import asyncio

    from channels.layers import get_channel_layer

    from conversations.groups import agent_group

    cookie = await database_sync_to_async(_session_cookie)(agent.user)
    communicator, connected, _ = await _connect(cookie)
    try:
        assert connected
        await communicator.receive_json_from()
        await asyncio.sleep(7)
        await communicator.send_json_to({"type": "ping"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "pong"}
        await get_channel_layer().group_send(
            agent_group(agent.pk), {"type": "console.event", "event": {"type": "offer.created", "offer": 1}})
        assert await communicator.receive_json_from(timeout=5) == {"type": "offer.created", "offer": 1}
    finally:
        await communicator.disconnect()
