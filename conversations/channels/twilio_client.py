"""The ``twilio.rest.Client`` we send with.

With ``TWILIO_ACCOUNT_SID`` and ``TWILIO_AUTH_TOKEN`` both set it talks to Twilio. Otherwise it is
the same SDK client with ``RecordingHttpClient`` as its ``http_client`` (the SDK's documented seam):
each request is recorded locally and answered the way Twilio answers, so dev, tests and the
customer simulator exercise the real SDK code path without a network.
"""

import json
import re
import secrets
from collections.abc import Callable
from datetime import datetime
from datetime import timezone as dt_timezone
from email.utils import format_datetime

from django.conf import settings
from django.utils import timezone
from twilio.http import HttpClient
from twilio.http.response import Response
from twilio.rest import Client

DEV_ACCOUNT_SID = "AC" + "d" * 32
# Signatures are still checked without credentials, against this fixed dev token (DESIGN.md).
DEV_AUTH_TOKEN = "dev-auth-token-not-secret-0000000"


def auth_token() -> str:
    return settings.TWILIO_AUTH_TOKEN or DEV_AUTH_TOKEN


def account_sid() -> str:
    return settings.TWILIO_ACCOUNT_SID or DEV_ACCOUNT_SID


def live_credentials() -> bool:
    return bool(settings.TWILIO_ACCOUNT_SID and settings.TWILIO_AUTH_TOKEN)


def twilio_client() -> Client:
    if live_credentials():
        return Client(settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN)
    return Client(DEV_ACCOUNT_SID, DEV_AUTH_TOKEN, http_client=RecordingHttpClient())


def new_sid(prefix: str) -> str:
    return prefix + secrets.token_hex(16)


def _rfc2822(moment: datetime) -> str:
    return format_datetime(moment.astimezone(dt_timezone.utc), usegmt=True)


# Tests install a fault here: a callable(method, uri, data) returning a Response to answer
# instead, raising an exception (a network failure), or returning None to proceed normally.
FaultHook = Callable[[str, str, dict], Response | None]


class RecordingHttpClient(HttpClient):
    fault: FaultHook | None = None

    def __init__(self):
        super().__init__(logger=None, is_async=False, timeout=None)

    def request(self, method, url, params=None, data=None, headers=None, auth=None, timeout=None, allow_redirects=False):
        from ..models import RecordedProviderRequest

        data = dict(data or {})
        params = dict(params or {})
        hook = type(self).fault
        if hook is not None:
            answer = hook(method, url, data)
            if answer is not None:
                return answer
        if method.upper() == "POST" and url.endswith("/Messages.json"):
            sid = new_sid("MM" if data.get("MediaUrl") else "SM")
            now = timezone.now()
            RecordedProviderRequest.objects.create(
                provider="twilio", method="POST", uri=url, params=_jsonable(data), sid=sid,
                to=str(data.get("To", "")), from_address=str(data.get("From", "")), body=str(data.get("Body", "")),
                status_code=201, created_at=now,
            )
            if settings.CC_SIMULATE_DELIVERY:
                from contactcenter.enqueue import enqueue

                from ..task_names import SIMULATE_TWILIO_DELIVERY

                enqueue(SIMULATE_TWILIO_DELIVERY, sid, str(data.get("To", "")), str(data.get("From", "")), countdown=1)
            return Response(201, json.dumps(_message_resource(sid, data, now)), {"Content-Type": "application/json"})
        if method.upper() == "POST" and (url.endswith("/Calls.json") or _CALL_URL.search(url)):
            return _call_request(url, data)
        if method.upper() == "GET" and url.endswith("/Messages.json"):
            return Response(200, json.dumps(_message_list(url, params)), {"Content-Type": "application/json"})
        from .twilio_recorded_voice import answer_voice_request

        voice = answer_voice_request(method, url, params, data)
        if voice is not None:
            return voice
        return Response(404, json.dumps({"code": 20404, "message": "The requested resource was not found", "status": 404}))


_CALL_URL = re.compile(r"/Calls/(CA[0-9a-fA-F]{32})\.json$")


def _call_request(url: str, data: dict) -> Response:
    """A call placed (``calls.create``: a callback, click-to-call) or redirected (``calls(sid).update``:
    a waiting caller put through to an agent), recorded as Twilio would have received it; the
    simulator's phone and ``manage.py simulate call`` follow the recorded redirect."""
    from ..models import RecordedProviderRequest

    match = _CALL_URL.search(url)
    sid = match.group(1) if match else new_sid("CA")
    now = timezone.now()
    RecordedProviderRequest.objects.create(
        provider="twilio", method="POST", uri=url, params=_jsonable(data), sid=sid, to=str(data.get("To", "")),
        from_address=str(data.get("From", "")), body=str(data.get("Url", data.get("Twiml", ""))), status_code=200 if match else 201,
        created_at=now,
    )
    resource = {
        "sid": sid, "account_sid": DEV_ACCOUNT_SID, "to": data.get("To"), "from": data.get("From"),
        "status": "in-progress" if match else "queued", "direction": "inbound" if match else "outbound-api",
        "api_version": "2010-04-01", "date_created": _rfc2822(now), "date_updated": _rfc2822(now),
        "uri": f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Calls/{sid}.json", "subresource_uris": {},
    }
    return Response(200 if match else 201, json.dumps(resource), {"Content-Type": "application/json"})


def _jsonable(data: dict) -> dict:
    return {key: value if isinstance(value, (str, int, float, bool, list)) else str(value) for key, value in data.items()}


def _message_resource(sid: str, data: dict, created: datetime) -> dict:
    media = data.get("MediaUrl") or []
    if isinstance(media, str):
        media = [media]
    return {
        "sid": sid, "account_sid": DEV_ACCOUNT_SID, "messaging_service_sid": None,
        "to": data.get("To"), "from": data.get("From"), "body": data.get("Body", ""),
        "status": "queued", "direction": "outbound-api", "num_segments": "1", "num_media": str(len(media)),
        "error_code": None, "error_message": None, "price": None, "price_unit": "USD", "api_version": "2010-04-01",
        "date_created": _rfc2822(created), "date_updated": _rfc2822(created), "date_sent": None,
        "uri": f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Messages/{sid}.json", "subresource_uris": {},
    }


def _message_list(url: str, params: dict) -> dict:
    from ..models import RecordedProviderRequest

    # Only messages: calls and conference requests are recorded beside them (twilio_recorded_voice).
    rows = RecordedProviderRequest.objects.filter(provider="twilio", method="POST", uri__endswith="/Messages.json")
    if params.get("To"):
        rows = rows.filter(to=params["To"])
    if params.get("From"):
        rows = rows.filter(from_address=params["From"])
    after = params.get("DateSent>")
    if after:
        rows = rows.filter(created_at__date__gte=str(after)[:10])
    page = [_message_resource(row.sid, {"To": row.to, "From": row.from_address, "Body": row.body}, row.created_at)
            for row in rows.order_by("-created_at")[:50]]
    base = f"/2010-04-01/Accounts/{DEV_ACCOUNT_SID}/Messages.json"
    return {"messages": page, "first_page_uri": base, "next_page_uri": None, "previous_page_uri": None,
            "page": 0, "page_size": 50, "start": 0, "end": len(page), "uri": base}
