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


@database_sync_to_async
def _act(user, kind: str, content: dict) -> dict:
    """Agent actions over the socket; every one re-checks who the user is and what they may touch."""
    from django.core.exceptions import ValidationError

    from .models import Agent, Offer, PresenceState
    from .services.routing import agent_presence_set, offer_accept, offer_reject

    agent = Agent.objects.filter(user=user).first()
    if agent is None:
        return {"type": "error", "code": 403, "reason": "no agent profile", "for": kind}
    try:
        if kind == "presence.set":
            presence = PresenceState.objects.filter(pk=int(content.get("presence", 0))).first()
            if presence is None:
                return {"type": "error", "code": 400, "reason": "unknown presence", "for": kind}
            agent_presence_set(agent=agent, presence=presence)
            return {"type": "ack", "for": kind, "presence": presence.pk}
        offer = Offer.objects.filter(pk=int(content.get("offer", 0)), agent=agent).first()
        if offer is None:
            return {"type": "error", "code": 404, "reason": "no such offer", "for": kind}
        action = offer_accept if kind == "offer.accept" else offer_reject
        offer = action(offer_id=offer.pk, agent=agent)
        return {"type": "ack", "for": kind, "offer": offer.pk, "status": offer.status}
    except (TypeError, ValueError):
        return {"type": "error", "code": 400, "reason": "bad frame", "for": kind}
    except ValidationError as exc:
        return {"type": "error", "code": 409, "reason": " ".join(exc.messages), "for": kind}


_ACTIONS = {"presence.set", "offer.accept", "offer.reject"}


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
        kind = content.get("type") if isinstance(content, dict) else None
        if kind == "ping":
            await self.send_json({"type": "pong"})
        elif kind in _ACTIONS:
            await self.send_json(await _act(self.scope["user"], kind, content))
        else:
            await self.send_json({"type": "error", "code": 400, "reason": "unknown frame type"})

    async def console_event(self, event):
        """Relay an event built by a service (``{"type": "console.event", "event": {...}}``)."""
        await self.send_json(event["event"])
