"""Frames the widget's sockets receive, one builder each (the visitor's browser renders them with
textContent: text only)."""

from ...models import Direction, Message


def widget_message_frame(message: Message, *, agent_name: str = "") -> dict:
    """What the visitor's browser gets for one message: text only, rendered with textContent."""
    outbound = message.direction == Direction.OUTBOUND
    return {
        "type": "message",
        "id": message.pk,
        "client_id": (message.metadata or {}).get("client_id") if not outbound else None,
        "conversation": message.conversation_id,
        "from": "agent" if outbound else "visitor",
        "author": agent_name if outbound else "",
        "text": message.text,
        "at": message.created_at.isoformat(),
    }


def assigned_frame(conversation, agent) -> dict:
    """An agent took the chat: the widget drops the queue position and says "<agent> joined"."""
    return {"type": "assigned", "conversation": conversation.pk, "name": agent.display_name}


def agent_typing_frame(agent, *, on: bool) -> dict:
    return {"type": "typing", "on": bool(on), "name": agent.display_name}


def ended_frame(conversation_id: int | None) -> dict:
    """The chat ended: every tab of the visitor clears; the next message opens a new conversation."""
    return {"type": "ended", "conversation": conversation_id}


def survey_card_frame(card: dict) -> dict:
    """A rating card after the chat (conversations.lifecycle's survey listener builds ``card``:
    the survey's token, its scale and its question in the customer's language). Text only."""
    return {
        "type": "survey",
        "survey": str(card["token"]),
        "conversation": card.get("conversation"),
        "kind": str(card.get("kind", "")),
        "question": str(card.get("question", "")),
        "follow_up": str(card.get("follow_up", "")),
        "min": int(card["min"]),
        "max": int(card["max"]),
        "min_label": str(card.get("min_label", "")),
        "max_label": str(card.get("max_label", "")),
    }


def survey_answered_frame(result: dict) -> dict:
    """The answer to a rating card was taken (or why not): the widget thanks the visitor."""
    return {
        "type": "survey_answered",
        "survey": str(result.get("token", "")),
        "ok": bool(result.get("ok")),
        "score": result.get("score"),
        "message": str(result.get("message", "")),
    }
