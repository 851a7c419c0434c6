"""Twilio's voice resources (Calls, Conferences and their Participants) for ``RecordingHttpClient``.

Without credentials, every call control the console drives (answer, hold, transfer, hang up,
click-to-call) still goes through the real ``twilio.rest.Client``; this module records each
request as a ``RecordedProviderRequest`` and answers the JSON Twilio answers, so the SDK's own
parsing runs and tests can read exactly what Twilio would have been asked.
"""

import hashlib
import json
import re
import secrets
from urllib.parse import urlparse

from django.utils import timezone
from twilio.http.response import Response

_ACCOUNT = r"/2010-04-01/Accounts/(?P<account>AC[0-9a-f]{32})"
CALLS = re.compile(_ACCOUNT + r"/Calls\.json$")
CALL = re.compile(_ACCOUNT + r"/Calls/(?P<call>[^/]+)\.json$")
CONFERENCES = re.compile(_ACCOUNT + r"/Conferences\.json$")
PARTICIPANTS = re.compile(_ACCOUNT + r"/Conferences/(?P<conference>[^/]+)/Participants\.json$")
PARTICIPANT = re.compile(_ACCOUNT + r"/Conferences/(?P<conference>[^/]+)/Participants/(?P<participant>[^/]+)\.json$")

JSON_HEADERS = {"Content-Type": "application/json"}


def conference_sid_for(name: str) -> str:
    """The simulated conference's SID: stable for a friendly name, as a running conference's is."""
    return "CF" + hashlib.sha256(name.encode()).hexdigest()[:32]


def answer_voice_request(method: str, url: str, params: dict, data: dict) -> Response | None:
    """The recorded answer to a voice request, or None when ``url`` is not a voice resource."""
    path = urlparse(url).path
    method = method.upper()
    if method == "POST" and (match := CALLS.search(path)):
        sid = new_sid("CA")
        _record(method, url, data, sid=sid, to=data.get("To", ""), from_=data.get("From", ""),
                body=data.get("Twiml") or data.get("Url") or "")
        return _json(201, _call(sid, match["account"], data, status="queued"))
    if method == "POST" and (match := CALL.search(path)):
        _record(method, url, data, sid=match["call"], body=data.get("Twiml") or data.get("Url") or "")
        return _json(200, _call(match["call"], match["account"], data, status=data.get("Status", "in-progress")))
    if method == "GET" and (match := CALL.search(path)):
        # A read changes nothing and is not recorded (the simulator reads the last request on a
        # call as our redirect of it). Without Twilio, a call we know of is taken as still on.
        return _json(200, _call(match["call"], match["account"], {}, status="in-progress"))
    if method == "GET" and (match := CONFERENCES.search(path)):
        name = str(params.get("FriendlyName", ""))
        _record(method, url, params, sid="", body=name)
        conferences = [_conference(conference_sid_for(name), match["account"], name)] if name else []
        base = f"/2010-04-01/Accounts/{match['account']}/Conferences.json"
        return _json(200, {"conferences": conferences, "first_page_uri": base, "next_page_uri": None,
                           "previous_page_uri": None, "page": 0, "page_size": 50, "start": 0,
                           "end": len(conferences), "uri": base})
    if method == "POST" and (match := PARTICIPANTS.search(path)):
        sid = new_sid("CA")
        _record(method, url, data, sid=sid, to=data.get("To", ""), from_=data.get("From", ""),
                body=data.get("Label", ""))
        return _json(201, _participant(sid, match["account"], match["conference"], data))
    if method == "POST" and (match := PARTICIPANT.search(path)):
        _record(method, url, data, sid=match["participant"], body=data.get("Label", ""))
        return _json(200, _participant(match["participant"], match["account"], match["conference"], data))
    if method == "DELETE" and (match := PARTICIPANT.search(path)):
        _record(method, url, data, sid=match["participant"])
        return Response(204, "", {})
    return None


def new_sid(prefix: str) -> str:
    """A SID of Twilio's shape (two letters, 32 hex digits)."""
    return prefix + secrets.token_hex(16)


def _record(method: str, url: str, data: dict, *, sid: str, to: str = "", from_: str = "", body: str = "") -> None:
    from ..models import RecordedProviderRequest

    RecordedProviderRequest.objects.create(
        provider="twilio", method=method, uri=url,
        params={key: value if isinstance(value, (str, int, float, bool, list)) else str(value)
                for key, value in data.items()},
        sid=sid, to=str(to), from_address=str(from_), body=str(body), status_code=201, created_at=timezone.now(),
    )


def _json(status: int, payload: dict) -> Response:
    return Response(status, json.dumps(payload), JSON_HEADERS)


def _call(sid: str, account: str, data: dict, *, status: str) -> dict:
    return {"sid": sid, "account_sid": account, "to": data.get("To"), "from": data.get("From"),
            "status": status, "direction": "outbound-api", "api_version": "2010-04-01",
            "uri": f"/2010-04-01/Accounts/{account}/Calls/{sid}.json"}


def _conference(sid: str, account: str, name: str) -> dict:
    return {"sid": sid, "account_sid": account, "friendly_name": name, "status": "in-progress",
            "api_version": "2010-04-01", "uri": f"/2010-04-01/Accounts/{account}/Conferences/{sid}.json"}


def _participant(call_sid: str, account: str, conference: str, data: dict) -> dict:
    hold = str(data.get("Hold", "false")).lower() == "true"
    return {"call_sid": call_sid, "account_sid": account, "conference_sid": conference,
            "label": data.get("Label"), "hold": hold, "muted": False, "status": "connected",
            "uri": f"/2010-04-01/Accounts/{account}/Conferences/{conference}/Participants/{call_sid}.json"}
