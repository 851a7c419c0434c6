"""Malformed input at every door is the client's error, never ours (issue 21 §4): a 400 with the
reason over HTTP, a 4xxx close (or an error frame) over a websocket, never a 500 or a 1011.

The shared decoder (contactcenter.decoding) is tested first, then each door that decodes, then a
fuzz that throws the same hostile values at every API endpoint and console page."""

import base64
import json

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from contactcenter.decoding import UndecodableInput, json_decode

from ..factories import make_conversation, make_inbox, make_message

DEEP = "[" * 100_000 + "]" * 100_000
NOT_FINITE = ["1e400", "-1e400", "NaN", "Infinity", "-Infinity"]


def b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


# --- the shared decoder ------------------------------------------------------------------------------


@pytest.mark.parametrize("text", [DEEP, "[" * 33 + "]" * 33, '{"a":' * 40 + "1" + "}" * 40,
                                  *NOT_FINITE, '{"a": [1e400]}', "1" * 41, "[1,", b"\xff\xfe"])
def test_the_decoder_refuses_with_a_reason(text):
    with pytest.raises(UndecodableInput) as refused:
        json_decode(text)
    assert str(refused.value)


def test_the_decoder_accepts_ordinary_json():
    assert json_decode('{"a": [1, 2.5, "x", null, true], "b": {"c": 1e300}}') == {
        "a": [1, 2.5, "x", None, True], "b": {"c": 1e300}}
    assert json_decode("[" * 32 + "]" * 32)  # the limit itself is fine


# --- REST API ----------------------------------------------------------------------------------------


@pytest.fixture
def api(supervisor):
    client = APIClient()
    client.force_login(supervisor.user)
    client.raise_request_exception = False
    return client


@pytest.mark.django_db
@pytest.mark.parametrize("body", [DEEP, *(f'{{"custom_attributes": {{"a": {n}}}}}' for n in NOT_FINITE)])
def test_api_body_nested_or_not_finite_is_a_400(api, customer, body):
    response = api.patch(reverse("api-customer-detail", args=[customer.pk]), data=body,
                         content_type="application/json")
    assert response.status_code == 400, response.content[:300]
    assert "JSON parse error" in response.json()["detail"]
    customer.refresh_from_db()
    assert customer.custom_attributes == {}


@pytest.mark.django_db
@pytest.mark.parametrize("cursor", [
    json.dumps(["9999-12-31T23:59:59-14:00", 0, 1]),  # past year 9999 once in UTC
    json.dumps(["0001-01-01T00:00:00+14:00", 0, 1]),  # before year 1 once in UTC
    json.dumps(["2026-01-01T00:00:00+00:00", 0, 2**70]),  # past bigint
    json.dumps(["2026-01-01T00:00:00+00:00", 2**70, 1]),
    '["2026-01-01T00:00:00+00:00", 0, 1e400]',
    "[" * 5000,
    json.dumps({"at": 1, "rank": 2, "id": 3}),
])
def test_timeline_cursor_out_of_range_or_garbage_is_a_400(api, customer, cursor):
    response = api.get(reverse("api-customer-timeline", args=[customer.pk]), {"before": b64(cursor)})
    assert response.status_code == 400, response.content[:300]
    assert response.json()["code"] == "cursor_invalid"


@pytest.mark.django_db
@pytest.mark.parametrize("decoded", [b"p=9999-99-99", b"o=1&p=x", b"p=\x00", b"r=1&p=0001-01-01T00:00:00+14:00",
                                     b"p=2026-01-01T00:00:00", "p=日本".encode()])
def test_customers_cursor_decoding_to_garbage_is_a_400(api, customer, decoded):
    response = api.get(reverse("api-customer-list"), {"cursor": base64.b64encode(decoded).decode()})
    assert response.status_code == 400, response.content[:300]
    assert response.json() == {"cursor": ["Invalid cursor"]}


@pytest.mark.django_db
def test_a_filter_repeated_hundreds_of_times_is_a_clear_400(api, customer):
    response = api.get(reverse("api-customer-list") + "?" + "&".join(["tag=vip"] * 300))
    assert response.status_code == 400
    assert response.json() == {"tag": ["Given 300 times; at most 20 allowed."]}
    # Within the cap, a repeated filter still works.
    assert api.get(reverse("api-customer-list") + "?" + "&".join(["tag=vip"] * 20)).status_code == 200


# --- console pages ---------------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("seen", [DEEP, '{"1": 1e400}', '{"1": NaN}', json.dumps({str(2**70): 1}), "[1, 2]"])
def test_console_catchup_position_garbage_is_a_400(supervisor, customer, seen):
    client = Client(raise_request_exception=False)
    client.force_login(supervisor.user)
    response = client.get(reverse("console:catchup", args=[customer.pk]), {"seen": seen})
    assert response.status_code == 400
    assert response.json() == {"error": "Invalid catch-up position."}


@pytest.mark.django_db
def test_console_timeline_cursor_out_of_range_is_a_400(supervisor, customer):
    client = Client(raise_request_exception=False)
    client.force_login(supervisor.user)
    cursor = b64(json.dumps(["9999-12-31T23:59:59-14:00", 0, 1]))
    for name in ("customer", "older"):
        response = client.get(reverse(f"console:{name}", args=[customer.pk]), {"before": cursor})
        assert response.status_code == 400, name


# --- websockets ----------------------------------------------------------------------------------------


async def _console_socket(user):
    from contactcenter.asgi import application

    def cookie():
        client = Client()
        client.force_login(user)
        return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"

    headers = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000"),
               (b"cookie", (await database_sync_to_async(cookie)()).encode())]
    communicator = WebsocketCommunicator(application, "/ws/console/", headers=headers)
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "hello"
    return communicator


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", [DEEP, '{"type": "ping", "x": 1e400}', '{"type": NaN}', "not json"])
async def test_console_socket_closes_with_4400_on_an_undecodable_frame(agent, frame):
    communicator = await _console_socket(agent.user)
    try:
        await communicator.send_to(text_data=frame)
        error = await communicator.receive_json_from(timeout=5)
        assert error["type"] == "error" and error["code"] == 400 and error["reason"]
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4400}
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", [
    {"type": "watch", "conversation": 2**70}, {"type": "watch", "conversation": {"a": [1]}},
    {"type": "offer.accept", "offer": 2**70}, {"type": "offer.accept", "offer": 1e300},
    {"type": "presence.set", "presence": [1]}, {"type": "typing", "conversation": None, "on": {"x": 1}},
    [1, 2, 3], "ping", 12,
])
async def test_console_socket_survives_well_formed_nonsense(agent, frame):
    communicator = await _console_socket(agent.user)
    try:
        await communicator.send_json_to(frame)
        await communicator.send_json_to({"type": "ping"})
        while (answer := await communicator.receive_json_from(timeout=5))["type"] != "pong":
            assert answer["type"] == "error"
    finally:
        await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("frame", ["[" * 3000 + "]" * 3000, '{"type": "hello", "token": 1e400}', '{"type": "ping", "n": NaN}'])
async def test_widget_socket_answers_bad_frame_and_stays_open(frame):
    from contactcenter.asgi import application
    from conversations.models import Channel

    await database_sync_to_async(make_inbox)(Channel.WEBCHAT, "widget-main", settings={})
    communicator = WebsocketCommunicator(application, "/ws/widget/?widget=widget-main",
                                         headers=[(b"origin", b"https://shop.example.jp")])
    connected, _ = await communicator.connect()
    assert connected
    try:
        await communicator.send_to(text_data=frame)
        assert await communicator.receive_json_from(timeout=5) == {"type": "error", "code": 400, "reason": "bad_frame"}
        await communicator.send_json_to({"type": "status"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "error", "code": 401, "reason": "hello_first"}
    finally:
        await communicator.disconnect()


# --- a fuzz over every endpoint -------------------------------------------------------------------------

HOSTILE_VALUES = [DEEP[:20_000] + DEEP[-20_000:], "1e400", "NaN", "-Infinity", "9" * 60, str(2**70), "-1",
                  "\x00", "a\x00b", b64("o=1&p=9999-99-99"), b64(json.dumps(["9999-12-31T23:59:59-14:00", 0, 1])),
                  "%ff", "' OR 1=1 --", "日本語" * 300]
HOSTILE_BODIES = [DEEP, "[1e400]", '{"custom_attributes": {"a": 1e400}}', '{"custom_attributes": {"a": NaN}}',
                  '{"tags": ' + "[" * 40 + "]" * 40 + "}", "[1, 2]", '"text"', "{", '{"source": 1e400}',
                  '{"presence": 99999999999999999999999999}', '{"display_name": "a\\u0000b"}']


def _patterns(resolver, prefix=""):
    for entry in resolver.url_patterns:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry, prefix + str(entry.pattern))
        elif isinstance(entry, URLPattern):
            yield prefix + str(entry.pattern), entry


def _urls(ids: dict) -> list[str]:
    urls = []
    for route, _ in _patterns(get_resolver()):
        if not (route.startswith("api/v1/") or route.startswith("console/")):
            continue
        path = route.replace("^", "").replace("$", "")
        for name, value in ids.items():
            path = path.replace(f"<int:{name}>", str(value))
        if "<" not in path:
            urls.append("/" + path)
    return urls


@pytest.mark.django_db
def test_fuzz_every_api_endpoint_and_console_page_answers_without_a_5xx(supervisor, customer):
    conversation = make_conversation(customer, make_inbox())
    message = make_message(conversation)
    ids = {"customer_id": customer.pk, "conversation_id": conversation.pk, "message_id": message.pk,
           "offer_id": 1, "merge_id": 1, "suggestion_id": 1}
    api = APIClient()
    api.force_login(supervisor.user)
    api.raise_request_exception = False
    urls = _urls(ids)
    assert len(urls) > 25
    failures = []
    for url in urls:
        for value in HOSTILE_VALUES:
            for param in ("q", "cursor", "before", "after", "seen", "tag", "page", "limit", "current", "conversation"):
                response = api.get(url, {param: value})
                if response.status_code >= 500:
                    failures.append(("GET", url, param, value[:40], response.status_code))
        for body in HOSTILE_BODIES:
            for method in (api.post, api.patch):
                response = method(url, data=body, content_type="application/json", HTTP_ACCEPT="application/json")
                if response.status_code >= 500:
                    failures.append((method.__name__, url, body[:40], response.status_code))
        for value in HOSTILE_VALUES:
            response = api.post(url, {"text": value, "note": value, "tags": value, "presence": value,
                                      "target": value, "source": value, "minutes": value, "until": value},
                                HTTP_ACCEPT="application/json")
            if response.status_code >= 500:
                failures.append(("POST form", url, value[:40], response.status_code))
    assert failures == []


# --- the admin's JSON fields -----------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("typed", ["1e400", '{"a": NaN}', '{"a": -Infinity}', "[" * 5000 + "]" * 5000])
def test_admin_json_fields_refuse_what_the_database_cannot_hold(rf, admin_user, typed):
    from django.contrib import admin

    from conversations.models import Inbox
    from profiles.models import Customer

    for model in (Customer, Inbox):
        request = rf.get("/admin/")
        request.user = admin_user
        form_class = admin.site._registry[model].get_form(request)
        field = form_class.base_fields["custom_attributes" if model is Customer else "settings"]
        with pytest.raises(Exception) as refused:
            field.clean(typed)
        assert refused.type.__name__ == "ValidationError" and refused.value.messages
        field.bound_data(typed, None)  # re-rendering the form with the typed text does not fail
    assert field.clean('{"plan\\u0000": "gold\\u0000", "n": 1e300}') == {"plan": "gold", "n": 1e300}


WELL_FORMED_NONSENSE = [None, True, 1e300, -(2**70), 2**70, "x" * 300, [1, [2]], {"a": {"b": 1}}, "\x00", ""]


@pytest.mark.django_db(transaction=True)
async def test_widget_socket_fuzz_never_ends_in_1011():
    """Every frame type with every field of every JSON type: answered (an error frame at most),
    and the socket still answers a ping after each."""
    import secrets

    from contactcenter.asgi import application
    from conversations.models import Channel

    await database_sync_to_async(make_inbox)(Channel.WEBCHAT, "widget-main", settings={})
    fields = ("widget", "token", "user", "language", "id", "text", "name", "email", "conversation", "on", "locale",
              "survey", "score", "comment")
    for hello_value in [*WELL_FORMED_NONSENSE[:6], secrets.token_urlsafe(32)]:
        communicator = WebsocketCommunicator(application, "/ws/widget/?widget=widget-main",
                                             headers=[(b"origin", b"https://shop.example.jp")])
        assert (await communicator.connect())[0]
        try:
            await communicator.send_json_to({"type": "hello", "widget": "widget-main", "token": hello_value,
                                             "user": hello_value, "language": hello_value})
            answer = await communicator.receive_output(timeout=5)
            if answer["type"] == "websocket.send" and json.loads(answer["text"])["type"] == "error":
                closed = await communicator.receive_output(timeout=5)  # a refused hello ends the socket
                assert closed["type"] == "websocket.close" and 4000 <= closed["code"] < 5000, closed
                continue
            assert answer["type"] == "websocket.send", answer
            while json.loads(answer["text"])["type"] != "status":
                answer = await communicator.receive_output(timeout=5)
            # A hello that was accepted, then nonsense in every frame.
            for kind in ("message", "typing", "prechat", "offline_message", "status", "history", "attachment",
                         "queue", "end", "survey_answer", "hello", "nonsense"):
                for value in WELL_FORMED_NONSENSE:
                    await communicator.send_json_to({"type": kind, **{name: value for name in fields}})
                    await communicator.send_json_to({"type": "ping"})
                    while True:
                        output = await communicator.receive_output(timeout=5)
                        assert output["type"] != "websocket.close", (kind, value, output)
                        if json.loads(output["text"])["type"] == "pong":
                            break
        finally:
            await communicator.disconnect()
