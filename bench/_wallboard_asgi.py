"""ASGI application for bench/wallboard's daphne: the project's websocket stack (Origin check,
session auth) with the wallboard consumer given one more handler, ``bench.floor``, that relays a
bare channel-layer message to its socket: the floor the wallboard is compared with (a
``group_send`` to the same sockets). Run with ``bench/`` on PYTHONPATH:
``python -m daphne _wallboard_asgi:application``."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

http = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.urls import path  # noqa: E402

from conversations.consumers import ConsoleConsumer  # noqa: E402
from supervisor.live.consumers import WallboardConsumer  # noqa: E402


class BenchWallboardConsumer(WallboardConsumer):
    async def bench_floor(self, event):
        await self.send(text_data=event["text"])


application = ProtocolTypeRouter({
    "http": http,
    "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter([
        path("ws/supervisor/", BenchWallboardConsumer.as_asgi()),
        path("ws/console/", ConsoleConsumer.as_asgi()),
    ]))),
})
