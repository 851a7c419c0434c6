"""The client's address, one rule for HTTP and websockets (issue 21 §11): behind our proxies
(CC_PROXY_HEADERS=1) the X-Forwarded-For entry our outermost proxy wrote, never the left-most one a
client can forge; without a proxy the peer, the header ignored."""

import asyncio
import secrets
import uuid

import pytest
from django.conf import settings
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client, RequestFactory, override_settings

from contactcenter.client_address import client_address_from, request_client_address, scope_client_address

from ..factories import PASSWORD, make_inbox

PROXY = "10.0.0.5"  # our load balancer, the peer of every proxied connection
FORGED = "6.6.6.6"


def proxied(count: int = 1):
    return override_settings(CC_PROXY_HEADERS=True, CC_TRUSTED_PROXY_COUNT=count)


@pytest.mark.parametrize("forwarded, count, expected", [
    (["203.0.113.9"], 1, "203.0.113.9"),
    ([f"{FORGED}, 203.0.113.9"], 1, "203.0.113.9"),  # the client wrote 6.6.6.6 itself
    ([f"{FORGED}", "203.0.113.9"], 1, "203.0.113.9"),  # the same as two headers
    ([f"{FORGED}, 203.0.113.9, 10.0.0.2"], 2, "203.0.113.9"),  # two proxies of ours
    (["203.0.113.9"], 2, "203.0.113.9"),  # fewer hops than proxies: all written by ours
    (["203.0.113.9:5555"], 1, "203.0.113.9"),
    (["[2001:db8::1]:443"], 1, "2001:db8::1"),
    ([f"{FORGED}, not-an-address"], 1, PROXY),  # nothing usable where the client should be
    ([], 1, PROXY),
    ([" , "], 1, PROXY),
])
def test_behind_proxies_the_client_is_the_hop_our_outermost_proxy_wrote(forwarded, count, expected):
    with proxied(count):
        assert client_address_from(peer=PROXY, forwarded_for=forwarded) == expected


def test_without_a_proxy_the_header_is_ignored():
    with override_settings(CC_PROXY_HEADERS=False):
        assert client_address_from(peer="203.0.113.9", forwarded_for=[FORGED]) == "203.0.113.9"
        request = RequestFactory().get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR=FORGED)
        assert request_client_address(request) == "203.0.113.9"


def test_http_and_websocket_read_the_same_address():
    request = RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=f"{FORGED}, 203.0.113.9")
    scope = {"client": (PROXY, 4000), "headers": [(b"x-forwarded-for", f"{FORGED}, 203.0.113.9".encode())]}
    with proxied():
        assert request_client_address(request) == scope_client_address(scope) == "203.0.113.9"
    assert scope_client_address({"headers": []}) == "unknown"


# --- the places that count by address -------------------------------------------------------------------


@pytest.mark.django_db
def test_login_throttling_counts_the_proxys_hop_not_a_forged_entry(agent, supervisor):
    """An attacker behind our proxy varies the left-most X-Forwarded-For entry on every try: the
    throttle still counts their real address, and a colleague whose forged header says the same
    is not blocked."""
    attacker = Client(REMOTE_ADDR=PROXY)
    with proxied():
        # Enough failures, for as many usernames, to stop one address (password spraying).
        for number in range(settings.CC_LOGIN_MAX_FAILURES_PER_ADDRESS):
            attacker.post("/console/login/", {"username": f"user{number}", "password": "guess"},
                          HTTP_X_FORWARDED_FOR=f"198.51.100.{number}, 203.0.113.7")
        response = attacker.post("/console/login/", {"username": "carol", "password": PASSWORD},
                                 HTTP_X_FORWARDED_FOR=f"198.51.100.99, 203.0.113.7")
        assert response.status_code == 429
        colleague = Client(REMOTE_ADDR=PROXY)
        response = colleague.post("/console/login/", {"username": "carol", "password": PASSWORD},
                                  HTTP_X_FORWARDED_FOR="203.0.113.7, 198.51.100.1")  # forged to look like the attacker
        assert response.status_code == 302


@pytest.mark.django_db(transaction=True)
async def test_the_widget_counts_the_proxys_hop_not_a_forged_entry():
    from contactcenter.asgi import application
    from conversations.models import Channel, Message

    site = "https://shop.example.jp"
    await database_sync_to_async(make_inbox)(Channel.WEBCHAT, "widget-main", settings={"allowed_origins": [site]})

    async def via_proxy(scope, receive, send):
        return await application(dict(scope, client=(PROXY, 40000)), receive, send)

    with proxied():
        communicator = WebsocketCommunicator(via_proxy, "/ws/widget/?widget=widget-main", headers=[
            (b"origin", site.encode()), (b"x-forwarded-for", f"{FORGED}, 203.0.113.20".encode())])
        connected, _ = await communicator.connect()
        assert connected
        try:
            await communicator.send_json_to({"type": "hello", "widget": "widget-main",
                                             "token": secrets.token_urlsafe(32)})
            assert (await communicator.receive_json_from(timeout=5))["type"] == "history"
            await communicator.receive_json_from(timeout=5)  # status
            await communicator.send_json_to({"type": "message", "id": str(uuid.uuid4()), "text": "hello"})
            for _ in range(100):
                stored = await database_sync_to_async(lambda: list(Message.objects.values_list("metadata", flat=True)))()
                if stored:
                    break
                await asyncio.sleep(0.05)
            assert stored[0]["ip"] == "203.0.113.20"
        finally:
            await communicator.disconnect()
