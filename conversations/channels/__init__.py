"""Channel adapters: one module per provider, the same small surface (STYLE.md habit 11):
verify the provider's request, parse it to ``services.InboundMessage``, send an outbound message."""

from dataclasses import dataclass


@dataclass(frozen=True)
class SendResult:
    provider_id: str
    status: str  # the provider's first status ("queued", "sent", …)


class PermanentSendError(Exception):
    """The provider refused for good: the message is marked failed with this reason."""

    def __init__(self, reason: str, *, code: str = ""):
        super().__init__(reason)
        self.reason = reason
        self.code = code


class TransientSendError(Exception):
    """Worth retrying later (5xx, 429, network). ``ambiguous``: the provider may have sent it."""

    def __init__(self, reason: str, *, ambiguous: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.ambiguous = ambiguous
