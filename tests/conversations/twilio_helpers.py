"""Signing webhooks exactly as Twilio does, with the real SDK."""

from twilio.request_validator import RequestValidator

from conversations.channels.twilio_client import auth_token

MESSAGING_PATH = "/webhooks/twilio/messaging/"
STATUS_PATH = "/webhooks/twilio/messaging/status/"


def signed_post(client, path: str, params: dict, *, url_base: str = "http://testserver", signature: str | None = None,
                **extra):
    url = url_base + path
    sig = RequestValidator(auth_token()).compute_signature(url, params) if signature is None else signature
    return client.post(path, params, HTTP_X_TWILIO_SIGNATURE=sig, **extra)


def sms_params(sid: str, *, body: str = "こんにちは", sender: str = "+819012345678", to: str = "+815012340000", **extra):
    return {"MessageSid": sid, "SmsSid": sid, "AccountSid": "AC" + "d" * 32, "From": sender, "To": to,
            "Body": body, "NumMedia": "0", "NumSegments": "1", **extra}
