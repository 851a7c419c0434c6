"""Inboxes, conversations, messages, agents and the routing configuration they hang on.

Every channel (SMS, WhatsApp, email, web chat, voice) is carried by the same rows: a Conversation
on an Inbox, Messages with a per-inbox unique provider id (idempotent ingest), delivery status
events kept one by one. Routing fields (queue, priority, waiting_since) are here from the start.

A package of one module per concept (Zulip's ``zerver/models/``), re-exported here: the app label
stays ``conversations`` and importers keep ``from conversations.models import …``. The callables
that migrations name by path (``conversations.models.default_capacity``, ``attachment_path``) are
re-exported here from ``field_callables``.
"""

from .agents import (
    BUILT_IN_PRESENCE_LABELS,
    Agent,
    AgentSkill,
    PresenceState,
    VoiceAnswerOn,
    presence_label,
)
from .calls import CALL_FINAL_STATUSES, Call, CallDirection, CallOutcome, CallStatus
from .conversation import (
    ACTIVE_STATUSES,
    Conversation,
    ConversationRead,
    ConversationStatus,
    Offer,
    OfferStatus,
)
from .field_callables import DEFAULT_CAPACITY, attachment_path, default_capacity
from .inboxes import (
    WHATSAPP_WINDOW,
    Channel,
    ImapCursor,
    Inbox,
    RecordedProviderRequest,
    TwilioInboundEvent,
)
from .messages import (
    Attachment,
    AttachmentState,
    DeliveryStatus,
    Direction,
    EventType,
    Message,
    MessageKind,
    MessageStatusEvent,
    RawEmail,
)
from .queues import (
    AfterHoursAction,
    CannedResponse,
    OfflinePolicy,
    Queue,
    QueueSkill,
    RoutingRule,
    Skill,
    WrapUpCode,
)

__all__ = [
    "ACTIVE_STATUSES",
    "AfterHoursAction",
    "Agent",
    "AgentSkill",
    "Attachment",
    "AttachmentState",
    "BUILT_IN_PRESENCE_LABELS",
    "CALL_FINAL_STATUSES",
    "Call",
    "CallDirection",
    "CallOutcome",
    "CallStatus",
    "CannedResponse",
    "Channel",
    "Conversation",
    "ConversationRead",
    "ConversationStatus",
    "DEFAULT_CAPACITY",
    "DeliveryStatus",
    "Direction",
    "EventType",
    "ImapCursor",
    "Inbox",
    "Message",
    "MessageKind",
    "MessageStatusEvent",
    "Offer",
    "OfferStatus",
    "OfflinePolicy",
    "PresenceState",
    "VoiceAnswerOn",
    "Queue",
    "QueueSkill",
    "RawEmail",
    "RecordedProviderRequest",
    "RoutingRule",
    "Skill",
    "TwilioInboundEvent",
    "WHATSAPP_WINDOW",
    "WrapUpCode",
    "attachment_path",
    "default_capacity",
    "presence_label",
]
