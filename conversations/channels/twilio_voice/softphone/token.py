"""Access tokens for the console's softphone (Twilio Voice JavaScript SDK)."""

from django.conf import settings
from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from ...twilio_client import live_credentials

# Twilio: a Voice SDK client identity is at most 121 characters of letters, digits and underscore.
IDENTITY_MAX_CHARS = 121


def agent_identity(agent_id: int) -> str:
    """The client identity an agent's browser registers as (the conference participant ``client:agent_7``):
    built from the id alone, never from a name or an e-mail address Twilio would refuse."""
    identity = f"agent_{int(agent_id)}"
    assert len(identity) <= IDENTITY_MAX_CHARS and identity.replace("_", "").isalnum()
    return identity


def agent_of_identity(identity: str) -> int | None:
    """The agent id an identity (or ``client:agent_7``) names, else None."""
    value = str(identity or "")
    value = value.removeprefix("client:")
    prefix, _, number = value.partition("_")
    return int(number) if prefix == "agent" and number.isdigit() else None


def softphone_live() -> bool:
    """Whether a real token can be minted: the account, an API key and secret, and the TwiML app.
    Otherwise the softphone connects to the simulated call."""
    return bool(live_credentials() and settings.TWILIO_API_KEY and settings.TWILIO_API_SECRET
                and settings.TWILIO_TWIML_APP_SID)


def voice_access_token(agent_id: int) -> str:
    """A short-lived JWT that lets the agent's browser take calls to their identity and place calls
    through our TwiML app. Precondition: ``softphone_live()``."""
    token = AccessToken(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_API_KEY, settings.TWILIO_API_SECRET,
                        identity=agent_identity(agent_id), ttl=settings.CC_SOFTPHONE_TOKEN_TTL_SECONDS)
    token.add_grant(VoiceGrant(outgoing_application_sid=settings.TWILIO_TWIML_APP_SID, incoming_allow=True))
    jwt = token.to_jwt()
    return jwt.decode() if isinstance(jwt, bytes) else jwt
