"""What the simulator (and ``manage.py simulate``) does as a customer: signed Twilio webhooks
to our own endpoint, mail to our SMTP listener."""

import secrets
import smtplib
from email.message import EmailMessage
from email.utils import make_msgid

import requests
from twilio.request_validator import RequestValidator

from ..channels.twilio_client import account_sid, auth_token

MESSAGING_PATH = "/webhooks/twilio/messaging/"


def new_message_sid() -> str:
    return "SM" + secrets.token_hex(16)


def twilio_sms_params(*, sender: str, to: str, body: str, whatsapp: bool = False, sid: str | None = None,
                      profile_name: str = "") -> dict:
    prefix = "whatsapp:" if whatsapp else ""
    sid = sid or new_message_sid()
    params = {
        "MessageSid": sid, "SmsSid": sid, "SmsMessageSid": sid, "AccountSid": account_sid(),
        "From": prefix + sender, "To": prefix + to, "Body": body, "NumMedia": "0", "NumSegments": "1",
        "ApiVersion": "2010-04-01",
    }
    if whatsapp:
        params["ProfileName"] = profile_name or "Simulator"
        params["WaId"] = sender.lstrip("+")
    return params


def post_signed(base_url: str, path: str, params: dict, *, timeout: float = 15) -> requests.Response:
    """POST form parameters to our own webhook, signed exactly as Twilio signs them."""
    url = base_url.rstrip("/") + path
    signature = RequestValidator(auth_token()).compute_signature(url, params)
    return requests.post(url, data=params, headers={"X-Twilio-Signature": signature}, timeout=timeout)


def send_email(*, host: str, port: int, sender: str, to: str, subject: str, body: str,
               in_reply_to: str = "", display_name: str = "") -> str:
    message = EmailMessage()
    message["From"] = f"{display_name} <{sender}>" if display_name else sender
    message["To"] = to
    message["Subject"] = subject
    message_id = make_msgid(domain=sender.rsplit("@", 1)[-1])
    message["Message-ID"] = message_id
    if in_reply_to:
        message["In-Reply-To"] = in_reply_to
        message["References"] = in_reply_to
    message.set_content(body)
    with smtplib.SMTP(host, port, timeout=15) as smtp:
        smtp.send_message(message)
    return message_id
