"""Helpers of the console-socket tests: a signed-in session's cookie, a connected communicator."""

from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from contactcenter.asgi import application


def _signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _cookie_of(client: Client) -> str:
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


def _session_cookie(user) -> str:
    return _cookie_of(_signed_in(user))


async def _connect(cookie: str | None, origin: str = "http://127.0.0.1:8000"):
    headers = [(b"origin", origin.encode()), (b"host", b"127.0.0.1:8000")]
    if cookie:
        headers.append((b"cookie", cookie.encode()))
    communicator = WebsocketCommunicator(application, "/ws/console/", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code
