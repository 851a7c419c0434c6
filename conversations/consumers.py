"""Websocket consumers: authenticate from the session, join groups, relay events (thin by design)."""

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer

from contactcenter.permissions import is_contact_center_staff

from .groups import agent_group, supervisors_group


@database_sync_to_async
def _console_groups(user) -> list[str] | None:
    if not is_contact_center_staff(user):
        return None
    groups = []
    agent = getattr(user, "agent", None) if hasattr(user, "agent") else None
    if agent is not None:
        groups.append(agent_group(agent.pk))
    if user.is_superuser or user.groups.filter(name__in=("supervisor", "admin")).exists():
        groups.append(supervisors_group())
    return groups


class ConsoleConsumer(AsyncJsonWebsocketConsumer):
    """``/ws/console/``: events for the signed-in agent (and supervisors)."""

    async def connect(self):
        user = self.scope.get("user")
        groups = await _console_groups(user) if user is not None else None
        if groups is None:
            await self.close(code=4403)
            return
        self.joined = groups
        for group in groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_json({"type": "hello", "groups": len(groups)})

    async def disconnect(self, code):
        for group in getattr(self, "joined", []):
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive_json(self, content, **kwargs):
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})

    async def console_event(self, event):
        """Relay an event built by a service (``{"type": "console.event", "event": {...}}``)."""
        await self.send_json(event["event"])
