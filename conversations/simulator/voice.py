"""A phone that calls (dev only): signed Twilio voice webhooks to our own endpoints, and the TwiML
they answer read back verb by verb, the way Twilio would play it. Used by ``manage.py simulate
call`` and the simulator's phone page; never by production code.

Each request is one step: ``step()`` posts it and returns what the caller hears (``verbs``) and
what the phone waits on next (``next``): a menu (Gather), hold (Enqueue's waitUrl), a recording
(Record), a connected agent (Dial), or the end of the call.
"""

import secrets
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from ..channels.twilio_client import account_sid
from .client import post_signed

VOICE_PATH = "/webhooks/twilio/voice/"
FAKE_RECORDING_BASE = "https://api.twilio.com/2010-04-01/Accounts/{account}/Recordings/"


def new_call_sid() -> str:
    return "CA" + secrets.token_hex(16)


def call_params(*, call_sid: str, sender: str, to: str, direction: str = "inbound", status: str = "in-progress") -> dict:
    return {"CallSid": call_sid, "AccountSid": account_sid(), "From": sender, "To": to, "Caller": sender,
            "Called": to, "CallStatus": status, "Direction": direction, "ApiVersion": "2010-04-01"}


def voice_path(url: str) -> str:
    """The path (and query) of a TwiML URL, only if it is one of our voice webhooks: the simulator
    never posts anywhere else, whatever a TwiML document says."""
    parts = urlsplit(url or "")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if not parts.path.startswith(VOICE_PATH):
        raise ValueError(f"not a voice webhook of ours: {url[:200]}")
    return path


def _verb(element: ET.Element) -> dict:
    verb = {"verb": element.tag, "text": (element.text or "").strip(), **element.attrib}
    children = [_verb(child) for child in element]
    if children:
        verb["children"] = children
    return verb


def parse_twiml(text: str | bytes) -> list[dict]:
    """Bytes are read as the XML declaration says (UTF-8): ``text/xml`` without a charset would
    be decoded as Latin-1 by an HTTP client."""
    root = ET.fromstring(text)
    if root.tag != "Response":
        raise ValueError("not TwiML")
    return [_verb(child) for child in root]


def waiting_on(verbs: list[dict]) -> dict:
    """What the phone does after ``verbs`` have played (Twilio's rules, twilio.md §3)."""
    for verb in verbs:
        kind = verb["verb"]
        if kind == "Gather":
            return {"kind": "gather", "action": verb.get("action", ""), "input": verb.get("input", "dtmf"),
                    "empty": verb.get("actionOnEmptyResult") == "true", "language": verb.get("language", "")}
        if kind == "Enqueue":
            return {"kind": "hold", "queue": verb["text"], "wait_url": verb.get("waitUrl", ""),
                    "action": verb.get("action", "")}
        if kind == "Record":
            return {"kind": "record", "action": verb.get("action", ""),
                    "callback": verb.get("recordingStatusCallback", ""),
                    "transcribe_callback": verb.get("transcribeCallback", "")}
        if kind == "Dial":
            targets = [(child["verb"], child["text"]) for child in verb.get("children", [])]
            return {"kind": "connected", "to": targets, "action": verb.get("action", "")}
        if kind == "Leave":
            return {"kind": "left"}
        if kind == "Redirect":
            return {"kind": "redirect", "url": verb["text"]}
        if kind in ("Hangup", "Reject"):
            return {"kind": "ended"}
    return {"kind": "end_of_document"}


@dataclass
class Step:
    status: int
    verbs: list[dict] = field(default_factory=list)
    next: dict = field(default_factory=dict)


def step(base_url: str, path: str, params: dict) -> Step:
    """Post one signed voice webhook and read its TwiML."""
    response = post_signed(base_url, voice_path(path), params)
    if response.status_code == 204 or not response.content.strip():
        return Step(response.status_code, [], {"kind": "none"})
    if not response.ok:
        return Step(response.status_code, [], {"kind": "error", "detail": response.text[:300]})
    verbs = parse_twiml(response.content)
    return Step(response.status_code, verbs, waiting_on(verbs))


def recording_params(params: dict, *, seconds: int = 12) -> dict:
    sid = "RE" + secrets.token_hex(16)
    url = FAKE_RECORDING_BASE.format(account=params.get("AccountSid", "")) + sid
    return {**params, "RecordingSid": sid, "RecordingUrl": url, "RecordingDuration": str(seconds),
            "RecordingStatus": "completed", "RecordingChannels": "1", "RecordingSource": "RecordVerb"}


def agent_redirect(call_sid: str, *, since=None) -> str:
    """The URL our server redirected this call to (an agent accepted it), if it did: the recording
    Twilio client kept the ``calls(sid).update`` request."""
    from ..models import RecordedProviderRequest

    rows = RecordedProviderRequest.objects.filter(provider="twilio", sid=call_sid, uri__endswith=f"/Calls/{call_sid}.json")
    if since is not None:
        rows = rows.filter(created_at__gte=since)
    row = rows.order_by("-created_at").first()
    return str(row.params.get("Url", "")) if row else ""


def latest_call_update(call_sid: str) -> dict:
    """The parameters of our newest ``calls(sid).update`` of this call (a redirect's ``Url``, a
    hang-up's ``Status``), or {}: what Twilio would do to a call that is connected to an agent."""
    from ..models import RecordedProviderRequest

    row = (RecordedProviderRequest.objects.filter(provider="twilio", sid=call_sid, method="POST",
                                                  uri__endswith=f"/Calls/{call_sid}.json")
           .order_by("-created_at", "-id").first())
    return dict(row.params) if row else {}


def callback_for(number: str, *, since) -> tuple[str, str] | None:
    """A call our server placed to ``number`` since ``since`` (a callback): (its sid, its URL)."""
    from ..models import RecordedProviderRequest

    row = (RecordedProviderRequest.objects.filter(provider="twilio", to=number, uri__endswith="/Calls.json",
                                                  created_at__gte=since).order_by("-created_at").first())
    return (row.sid, str(row.params.get("Url", ""))) if row else None


def describe(verb: dict, indent: str = "") -> list[str]:
    """One line per verb as the caller would experience it (the shell's rendering)."""
    kind = verb["verb"]
    if kind == "Say":
        lines = [f"{indent}Say [{verb.get('language', '')} {verb.get('voice', '')}] {verb['text']}"]
    elif kind == "Play":
        lines = [f"{indent}Play ♪ {verb['text']}"]
    elif kind == "Gather":
        lines = [f"{indent}Gather ({verb.get('input', 'dtmf')}, {verb.get('language', '')}) → {verb.get('action', '')}"]
    elif kind == "Enqueue":
        lines = [f"{indent}Enqueue in “{verb['text']}” (hold: {verb.get('waitUrl', '')})"]
    elif kind == "Record":
        lines = [f"{indent}Record (max {verb.get('maxLength', '?')} s, transcribe={verb.get('transcribe', 'false')})"]
    elif kind == "Dial":
        lines = [f"{indent}Dial"]
    else:
        lines = [f"{indent}{kind} {verb['text']}".rstrip()]
    for child in verb.get("children", []):
        lines += describe(child, indent + "    ")
    return lines
