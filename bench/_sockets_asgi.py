"""The bare consumer bench/connections and bench/widget compare the project with: Channels on the
same stack (daphne, channels_redis, the same settings) and nothing else. ``/ws/widget/`` answers a
hello with a history and a status frame, and a message with its echo (an "ack"); ``/ws/console/``
greets on connect. Each socket joins one group and leaves it on disconnect, as the project's do,
so cleanup is compared too. Run with ``bench/`` on PYTHONPATH: ``daphne _sockets_asgi:application``."""

import json
import os
from typing import ClassVar

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "_sockets_settings")

from django.core.asgi import get_asgi_application

http = get_asgi_application()

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.routing import ProtocolTypeRouter, URLRouter
from django.urls import path


class BareConsumer(AsyncWebsocketConsumer):
    greeting: ClassVar[dict | None] = None

    async def connect(self):
        self.group = "bare." + self.channel_name.rsplit("!", 1)[-1]
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        if self.greeting:
            await self.send(text_data=json.dumps(self.greeting))

    async def disconnect(self, code):
        await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data=None, bytes_data=None):
        frame = json.loads(text_data)
        if frame.get("type") == "hello":
            await self.send(text_data=json.dumps({"type": "history", "conversations": [], "messages": []}))
            await self.send(text_data=json.dumps({"type": "status", "online": True, "reason": "available"}))
        elif frame.get("type") == "message":
            await self.send(text_data=json.dumps({"type": "message", "id": 0, "client_id": frame.get("id")}))
        else:
            await self.send(text_data=text_data)


class BareConsoleConsumer(BareConsumer):
    greeting: ClassVar[dict] = {"type": "hello", "groups": 1}


application = ProtocolTypeRouter({
    "http": http,
    "websocket": URLRouter([
        path("ws/widget/", BareConsumer.as_asgi()),
        path("ws/console/", BareConsoleConsumer.as_asgi()),
    ]),
})
