"""The app's models, one module per concept (re-exported: the app label stays ``supervisor``)."""

from .facts.models import AgentPresenceChange, ConversationFact

__all__ = ["AgentPresenceChange", "ConversationFact"]
