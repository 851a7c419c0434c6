"""The web-chat widget socket ``/ws/widget/`` (issue 3) and its threat cases (threats.md: widget)."""

import hashlib
import hmac
import json
import secrets
import uuid
from datetime import timedelta

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.core.cache import cache
from django.core.files.base import ContentFile
from django.test import override_settings
from django.utils import timezone

from contactcenter.asgi import application
from conversations.channels import SendResult
from conversations.channels.registry import adapter_for
from conversations.groups import conversation_group
from conversations.models import (
    Agent,
    Attachment,
    Channel,
    Conversation,
    Direction,
    Inbox,
    Message,
    MessageKind,
)
from conversations.channels.webchat import ingest as webchat_ingest
from conversations.channels.webchat import input_limits as webchat_input_limits
from conversations.channels.webchat import status as webchat_status
from conversations.channels.webchat import visitors as webchat_visitors
from profiles.models import Customer, Identity, IdentityKind, MergeSuggestion

from ..factories import (
    make_conversation,
    make_customer,
    make_identity,
    make_inbox,
    make_message,
)

pytestmark = [pytest.mark.django_db(transaction=True)]

SITE = "https://shop.example.com"
SECRET = "widget-secret-0123456789"


@pytest.fixture(autouse=True)
def _fresh_rate_limits():
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def widget(db) -> Inbox:
    inbox = make_inbox(Channel.WEBCHAT, secret=SECRET, settings={"allowed_origins": [SITE]})
    Inbox.objects.filter(pk=inbox.pk).update(secret=SECRET, settings={"allowed_origins": [SITE]})
    inbox.refresh_from_db()
    return inbox


@pytest.fixture
def online(agent, available_presence) -> Agent:
    agent.presence = available_presence
    agent.save()
    return agent


def _token() -> str:
    return secrets.token_urlsafe(32)


def _key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _with_ip(ip: str):
    async def app(scope, receive, send):
        return await application(dict(scope, client=(ip, 40000)), receive, send)

    return app


async def _connect(widget_key="widget-main", origin=SITE, ip="198.51.100.7"):
    headers = [(b"host", b"cc.example.com")]
    if origin:
        headers.append((b"origin", origin.encode()))
    communicator = WebsocketCommunicator(_with_ip(ip), f"/ws/widget/?widget={widget_key}", headers=headers)
    connected, code = await communicator.connect()
    return communicator, connected, code


async def _hello(token, *, ip="198.51.100.7", user=None, extra=None):
    """Connect, say hello, return (communicator, history frame, status frame)."""
    communicator, connected, _ = await _connect(ip=ip)
    assert connected
    frame = {"type": "hello", "widget": "widget-main", "token": token, "locale": "ja", **(extra or {})}
    if user:
        frame["user"] = user
    await communicator.send_json_to(frame)
    history = await communicator.receive_json_from(timeout=5)
    if history.get("type") == "error":
        return communicator, history, None
    status = await communicator.receive_json_from(timeout=5)
    return communicator, history, status


async def _say(communicator, text, *, client_id=None, keep_id=False):
    """Send a message; an error frame names the refused message (checked here, then dropped
    unless ``keep_id``)."""
    client_id = client_id or str(uuid.uuid4())
    await communicator.send_json_to({"type": "message", "id": client_id, "text": text})
    frame = await communicator.receive_json_from(timeout=5)
    if frame.get("type") == "error" and "id" in frame:  # (a frame too big to parse names nothing)
        assert frame["id"] == client_id
        if not keep_id:
            del frame["id"]
    return frame


def _signature(user_id: str) -> str:
    return hmac.new(SECRET.encode(), user_id.encode(), hashlib.sha256).hexdigest()


# --- connecting -------------------------------------------------------------------------------


async def test_hello_gives_empty_history_and_online_status(widget, online):
    communicator, history, status = await _hello(_token())
    try:
        assert history == {"type": "history", "conversations": [], "messages": []}
        assert status == {"type": "status", "online": True, "reason": "available"}
    finally:
        await communicator.disconnect()


async def test_origin_is_checked_against_the_inbox_before_accept(widget):
    communicator, connected, _ = await _connect(origin="https://evil.example")
    assert not connected
    await communicator.disconnect()
    communicator, connected, _ = await _connect(origin=None)
    assert not connected
    await communicator.disconnect()
    communicator, connected, _ = await _connect(origin=SITE)
    assert connected
    await communicator.disconnect()


async def test_empty_allowed_origins_accepts_any_site_but_unknown_or_inactive_widgets_are_refused(widget):
    await database_sync_to_async(Inbox.objects.filter(pk=widget.pk).update)(settings={})
    communicator, connected, _ = await _connect(origin="https://any-shop.example")
    assert connected
    await communicator.disconnect()
    communicator, connected, _ = await _connect(widget_key="no-such-widget", origin="https://any-shop.example")
    assert not connected
    await communicator.disconnect()
    await database_sync_to_async(Inbox.objects.filter(pk=widget.pk).update)(is_active=False)
    communicator, connected, _ = await _connect(origin="https://any-shop.example")
    assert not connected
    await communicator.disconnect()


async def test_console_route_still_refuses_a_foreign_origin(widget):
    communicator = WebsocketCommunicator(
        application, "/ws/console/", headers=[(b"origin", SITE.encode()), (b"host", b"127.0.0.1:8000")]
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_bad_frames_get_a_clear_error(widget):
    communicator, connected, _ = await _connect()
    try:
        assert connected
        await communicator.send_to(text_data="not json")
        assert await communicator.receive_json_from() == {"type": "error", "code": 400, "reason": "bad_frame"}
        await communicator.send_json_to({"type": "message", "id": str(uuid.uuid4()), "text": "hi"})
        assert await communicator.receive_json_from() == {"type": "error", "code": 401, "reason": "hello_first"}
        await communicator.send_json_to({"type": "hello", "widget": "widget-main", "token": "short"})
        assert await communicator.receive_json_from() == {"type": "error", "code": 400, "reason": "bad_token"}
        assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    finally:
        await communicator.disconnect()


# --- messages ---------------------------------------------------------------------------------


async def test_visitor_message_goes_through_ingest_and_survives_reload_and_tabs(widget, online):
    token = _token()
    tab1, _, _ = await _hello(token)
    tab2, _, _ = await _hello(token)
    try:
        frame = await _say(tab1, "こんにちは、注文について")
        assert frame["type"] == "message" and frame["from"] == "visitor" and frame["text"] == "こんにちは、注文について"
        assert await tab2.receive_json_from(timeout=5) == frame  # the other tab sees it live

        message = await database_sync_to_async(Message.objects.select_related("conversation").get)(pk=frame["id"])
        assert (message.channel, message.direction, message.inbox_id) == (Channel.WEBCHAT, Direction.INBOUND, widget.pk)
        identity = await database_sync_to_async(Identity.objects.get)(kind=IdentityKind.WEB_VISITOR)
        assert identity.value == _key(token) and identity.customer_id == message.customer_id
        assert not await database_sync_to_async(Identity.objects.filter(value__contains=token).exists)()
    finally:
        await tab1.disconnect()
        await tab2.disconnect()

    again, history, _ = await _hello(token)
    try:
        assert history["conversations"] == [frame["conversation"]]
        assert [m["text"] for m in history["messages"]] == ["こんにちは、注文について"]
    finally:
        await again.disconnect()


async def test_the_same_client_message_id_stores_one_message(widget, online):
    communicator, _, _ = await _hello(_token())
    try:
        client_id = str(uuid.uuid4())
        first = await _say(communicator, "hello", client_id=client_id)
        second = await _say(communicator, "hello", client_id=client_id)
        assert first == second
        assert await database_sync_to_async(Message.objects.filter(inbox=widget).count)() == 1
    finally:
        await communicator.disconnect()


async def test_another_visitor_reusing_a_message_id_never_gets_that_message(widget, online):
    alice, _, _ = await _hello(_token())
    mallory, _, _ = await _hello(_token())
    try:
        client_id = str(uuid.uuid4())
        secret = await _say(alice, "my card ends 4242", client_id=client_id)
        mine = await _say(mallory, "hi", client_id=client_id)
        assert mine["text"] == "hi" and mine["id"] != secret["id"] and mine["conversation"] != secret["conversation"]
    finally:
        await alice.disconnect()
        await mallory.disconnect()


async def test_markup_bidi_and_zero_width_are_kept_as_text(widget, online):
    communicator, _, _ = await _hello(_token())
    text = '<script>alert(1)</script><img src=x onerror=alert(2)> \u202eevil\u202c \u200bzero\u2066 &amp;'
    try:
        frame = await _say(communicator, text)
        assert frame["text"] == text
        stored = await database_sync_to_async(Message.objects.get)(pk=frame["id"])
        assert stored.text == text and stored.html == ""
    finally:
        await communicator.disconnect()


async def test_over_long_text_and_a_megabyte_frame_are_refused_clearly_and_not_stored(widget, online):
    communicator, _, _ = await _hello(_token())
    try:
        assert await _say(communicator, "a" * 4001) == {"type": "error", "code": 413, "reason": "too_long"}
        assert await _say(communicator, "あ" * 1024 * 1024) == {"type": "error", "code": 413, "reason": "too_long"}
        assert await database_sync_to_async(Message.objects.count)() == 0
        assert (await _say(communicator, "a" * 4000))["type"] == "message"  # the socket still works
    finally:
        await communicator.disconnect()


# --- isolation --------------------------------------------------------------------------------


async def test_visitor_cannot_reach_another_visitors_conversation_or_attachment(widget, online):
    alice, _, _ = await _hello(_token())
    mallory, _, _ = await _hello(_token())
    try:
        said = await _say(alice, "private")

        def attach():
            conversation = Conversation.objects.get(pk=said["conversation"])
            reply = make_message(conversation, "here is your invoice", direction=Direction.OUTBOUND)
            attachment = Attachment(message=reply, filename="invoice.pdf", content_type="application/pdf", size=4)
            attachment.file.save("invoice.pdf", ContentFile(b"%PDF"), save=False)
            attachment.save()
            note = make_message(conversation, "internal", direction=Direction.INTERNAL, kind=MessageKind.NOTE)
            hidden = Attachment(message=note, filename="note.txt", size=2)
            hidden.file.save("note.txt", ContentFile(b"hi"), save=False)
            hidden.save()
            return attachment.pk, hidden.pk

        attachment_id, note_attachment_id = await database_sync_to_async(attach)()

        await alice.send_json_to({"type": "attachment", "id": attachment_id})
        got = await alice.receive_json_from(timeout=5)
        assert got["type"] == "attachment" and got["filename"] == "invoice.pdf" and got["data"] == "JVBERg=="
        await alice.send_json_to({"type": "attachment", "id": note_attachment_id})
        assert await alice.receive_json_from() == {"type": "error", "code": 404, "reason": "not_found"}

        await mallory.send_json_to({"type": "attachment", "id": attachment_id})
        assert await mallory.receive_json_from() == {"type": "error", "code": 404, "reason": "not_found"}
        await mallory.send_json_to({"type": "typing", "on": True, "conversation": said["conversation"]})
        assert await mallory.receive_json_from() == {"type": "error", "code": 404, "reason": "not_found"}
        await mallory.send_json_to({"type": "history"})
        assert await mallory.receive_json_from() == {"type": "history", "conversations": [], "messages": []}
        assert await mallory.receive_nothing(timeout=0.3)
    finally:
        await alice.disconnect()
        await mallory.disconnect()


async def test_history_holds_only_customer_visible_messages(widget, online):
    token = _token()
    communicator, _, _ = await _hello(token)
    said = await _say(communicator, "question")
    await communicator.disconnect()

    def decorate():
        conversation = Conversation.objects.get(pk=said["conversation"])
        make_message(conversation, "customer seems angry", direction=Direction.INTERNAL, kind=MessageKind.NOTE)
        make_message(conversation, "", direction=Direction.INTERNAL, kind=MessageKind.EVENT, event_type="assigned")
        make_message(conversation, "answer", direction=Direction.OUTBOUND, author_agent=online)

    await database_sync_to_async(decorate)()
    communicator, history, _ = await _hello(token)
    try:
        assert [(m["from"], m["text"], m["author"]) for m in history["messages"]] == [
            ("visitor", "question", ""), ("agent", "answer", "Alice"),
        ]
    finally:
        await communicator.disconnect()


async def test_typing_an_existing_customers_email_only_suggests_a_merge(widget, online):
    def existing():
        owner = make_customer("山田 花子")
        make_identity(owner, IdentityKind.EMAIL, "hanako@example.jp", verified=True)
        conversation = make_conversation(owner, widget)
        make_message(conversation, "my address is 東京都…")
        return owner

    owner = await database_sync_to_async(existing)()
    token = _token()
    communicator, _, _ = await _hello(token)
    try:
        await communicator.send_json_to({"type": "prechat", "name": "Mallory", "email": "Hanako@Example.jp"})
        assert await communicator.receive_json_from() == {"type": "prechat", "ok": True}
        await communicator.send_json_to({"type": "history"})
        assert await communicator.receive_json_from() == {"type": "history", "conversations": [], "messages": []}
    finally:
        await communicator.disconnect()

    def check():
        visitor = Identity.objects.get(kind=IdentityKind.WEB_VISITOR, value=_key(token)).customer
        assert visitor.pk != owner.pk and visitor.display_name == "Mallory"
        assert Identity.objects.get(kind=IdentityKind.EMAIL, value="hanako@example.jp").customer_id == owner.pk
        suggestion = MergeSuggestion.objects.get()
        assert (suggestion.customer_id, suggestion.candidate_id) == (owner.pk, visitor.pk)

    await database_sync_to_async(check)()


async def test_after_an_agent_merges_the_visitor_it_still_sees_only_its_own_conversation(widget, online):
    from profiles.services import customer_merge

    def existing():
        owner = make_customer("Owner")
        make_message(make_conversation(owner, widget), "owner's old chat")
        return owner

    owner = await database_sync_to_async(existing)()
    token = _token()
    communicator, _, _ = await _hello(token)
    said = await _say(communicator, "mine")
    await communicator.disconnect()

    def merge():
        visitor = Identity.objects.get(kind=IdentityKind.WEB_VISITOR, value=_key(token)).customer
        customer_merge(source=visitor, target=owner)

    await database_sync_to_async(merge)()
    communicator, history, _ = await _hello(token)
    try:
        assert history["conversations"] == [said["conversation"]]
        assert [m["text"] for m in history["messages"]] == ["mine"]
    finally:
        await communicator.disconnect()


# --- signed identity --------------------------------------------------------------------------


async def test_a_valid_signature_links_the_visitor_to_the_sites_user(widget, online):
    def existing():
        owner = make_customer("Signed User")
        make_identity(owner, IdentityKind.EXTERNAL_ID, "widget-main:user-42", verified=True, source="signed")
        make_message(make_conversation(owner, widget), "from my laptop")
        return owner

    owner = await database_sync_to_async(existing)()
    token = _token()
    anonymous, _, _ = await _hello(token)
    await _say(anonymous, "before login")
    await anonymous.disconnect()

    communicator, history, _ = await _hello(token, user={"id": "user-42", "signature": _signature("user-42")})
    try:
        assert history["type"] == "history"
        assert {m["text"] for m in history["messages"]} == {"from my laptop", "before login"}
    finally:
        await communicator.disconnect()

    def check():
        assert Identity.objects.get(kind=IdentityKind.WEB_VISITOR, value=_key(token)).customer_id == owner.pk
        assert Customer.objects.filter(merged_into=owner).count() == 1

    await database_sync_to_async(check)()


async def test_a_bad_signature_or_a_client_verified_flag_proves_nothing(widget, online):
    def existing():
        owner = make_customer("Victim")
        make_identity(owner, IdentityKind.EXTERNAL_ID, "widget-main:user-42", verified=True, source="signed")
        make_identity(owner, IdentityKind.EMAIL, "victim@example.jp", verified=True)
        make_message(make_conversation(owner, widget), "victim's secret")

    await database_sync_to_async(existing)()
    communicator, error, _ = await _hello(_token(), user={"id": "user-42", "signature": "00" * 32})
    assert error == {"type": "error", "code": 403, "reason": "bad_signature"}
    assert (await communicator.receive_output(timeout=5))["type"] == "websocket.close"
    await communicator.disconnect()

    communicator, history, _ = await _hello(
        _token(), extra={"verified": True, "customer": 1, "email": "victim@example.jp", "user_id": "user-42"}
    )
    try:
        assert history == {"type": "history", "conversations": [], "messages": []}
    finally:
        await communicator.disconnect()
    assert await database_sync_to_async(Identity.objects.filter(kind=IdentityKind.WEB_VISITOR).count)() == 0


async def test_a_token_of_another_signed_user_is_not_merged(widget, online):
    token = _token()
    first, history, _ = await _hello(token, user={"id": "user-1", "signature": _signature("user-1")})
    assert history["type"] == "history"
    await first.disconnect()
    second, error, _ = await _hello(token, user={"id": "user-2", "signature": _signature("user-2")})
    assert error == {"type": "error", "code": 409, "reason": "token_in_use"}
    await second.disconnect()
    assert await database_sync_to_async(Customer.objects.filter(merged_into__isnull=False).count)() == 0


# --- rate limits ------------------------------------------------------------------------------


# A long window keeps the test away from a window boundary (fixed windows allow up to 2x a limit
# across one boundary, which is fine for flood control but would make the count here flaky).
@override_settings(CC_WIDGET_LIMITS={"message_per_visitor": (20, 3600)})
async def test_a_flooding_visitor_gets_429_and_others_are_unaffected(widget, online):
    flooder, _, _ = await _hello(_token())
    other, _, _ = await _hello(_token())
    try:
        for n in range(20):
            assert (await _say(flooder, f"spam {n}"))["type"] == "message"
        assert await _say(flooder, "one more") == {"type": "error", "code": 429, "reason": "rate_limited"}
        assert (await _say(other, "I have a real question"))["type"] == "message"
        assert await database_sync_to_async(Message.objects.count)() == 21
    finally:
        await flooder.disconnect()
        await other.disconnect()


@override_settings(CC_WIDGET_LIMITS={"conversation_per_ip": (2, 3600)})
async def test_new_conversations_from_one_address_are_limited_per_ip(widget, online):
    sockets = []
    try:
        for _n in range(2):
            communicator, _, _ = await _hello(_token(), ip="203.0.113.9")
            sockets.append(communicator)
            assert (await _say(communicator, "hi"))["type"] == "message"
        communicator, _, _ = await _hello(_token(), ip="203.0.113.9")
        sockets.append(communicator)
        assert await _say(communicator, "hi") == {"type": "error", "code": 429, "reason": "rate_limited"}
        assert (await _say(sockets[0], "the existing conversation goes on"))["type"] == "message"
        elsewhere, _, _ = await _hello(_token(), ip="192.0.2.50")
        sockets.append(elsewhere)
        assert (await _say(elsewhere, "hi"))["type"] == "message"
    finally:
        for communicator in sockets:
            await communicator.disconnect()


async def test_eight_new_chats_from_one_address_within_a_minute_are_all_accepted(widget, online):
    """An office or a mobile carrier puts many real customers behind one address (issue 22: the
    sixth was refused under 5 per address per hour)."""
    sockets = []
    try:
        for n in range(8):
            communicator, _, _ = await _hello(_token(), ip="203.0.113.80")
            sockets.append(communicator)
            frame = await _say(communicator, f"customer {n} here")
            assert frame["type"] == "message", frame
        conversations = await database_sync_to_async(
            lambda: Conversation.objects.filter(channel=Channel.WEBCHAT).count())()
        assert conversations == 8
    finally:
        for communicator in sockets:
            await communicator.disconnect()


async def test_a_flood_from_one_token_is_refused_and_the_refusal_names_the_message(widget, online):
    flooder, _, _ = await _hello(_token())
    try:
        frames = []
        for n in range(40):
            client_id = str(uuid.uuid4())
            frames.append((client_id, await _say(flooder, f"spam {n}", client_id=client_id, keep_id=True)))
        refused = [(client_id, frame) for client_id, frame in frames if frame["type"] == "error"]
        assert len(refused) >= 20
        for client_id, frame in refused:
            # The widget shows "not sent" with a retry next to that very message.
            assert frame == {"type": "error", "code": 429, "reason": "rate_limited", "id": client_id}
        stored = await database_sync_to_async(Message.objects.count)()
        assert stored == len(frames) - len(refused)
    finally:
        await flooder.disconnect()


@override_settings(CC_WIDGET_LIMITS={"conversation_per_ip": (1, 3600), "message_per_visitor": (3, 3600)})
async def test_refused_attempts_count_against_no_limit(widget, online):
    first, _, _ = await _hello(_token(), ip="203.0.113.9")
    token = _token()
    second, _, _ = await _hello(token, ip="203.0.113.9")
    try:
        assert (await _say(first, "hi"))["type"] == "message"
        for _n in range(6):  # the address's allowance is spent: refused, again and again
            assert (await _say(second, "hi"))["code"] == 429
    finally:
        await first.disconnect()
        await second.disconnect()
    # The same visitor from another address: none of the six refusals counted against their own
    # limits (three messages, five new chats per token).
    elsewhere, _, _ = await _hello(token, ip="192.0.2.60")
    try:
        for n in range(3):
            assert (await _say(elsewhere, f"still here {n}"))["type"] == "message"
        assert (await _say(elsewhere, "one too many"))["code"] == 429
    finally:
        await elsewhere.disconnect()


def test_the_rate_window_slides_so_a_boundary_does_not_double_the_burst(monkeypatch):
    from datetime import UTC, datetime

    start = datetime(2026, 1, 1, 12, 0, 50, tzinfo=UTC)  # 10 s before a minute ends
    now = {"at": start}
    monkeypatch.setattr(webchat_status.timezone, "now", lambda: now["at"])
    assert all(webchat_input_limits.rate_allow("slide", 5, 60) for _ in range(5))
    assert not webchat_input_limits.rate_allow("slide", 5, 60)
    now["at"] = start + timedelta(seconds=15)  # just past the boundary: the five are still recent
    assert not webchat_input_limits.rate_allow("slide", 5, 60)
    now["at"] = start + timedelta(seconds=130)  # two minutes on: allowed again
    assert all(webchat_input_limits.rate_allow("slide", 5, 60) for _ in range(5))


# --- agent side -------------------------------------------------------------------------------


async def test_agent_reply_through_the_webchat_adapter_appears_live(widget, online):
    assert adapter_for(Channel.WEBCHAT) is not None
    communicator, _, _ = await _hello(_token())
    try:
        said = await _say(communicator, "hello?")

        def reply():
            conversation = Conversation.objects.get(pk=said["conversation"])
            message = make_message(conversation, "<b>Hi</b> there", direction=Direction.OUTBOUND, author_agent=online)
            return message.pk, adapter_for(Channel.WEBCHAT).send(message, to="", from_=widget.address)

        message_id, result = await database_sync_to_async(reply)()
        assert result == SendResult(provider_id=f"wc-{message_id}", status="delivered")
        frame = await communicator.receive_json_from(timeout=5)
        assert (frame["type"], frame["from"], frame["author"], frame["text"]) == ("message", "agent", "Alice", "<b>Hi</b> there")
    finally:
        await communicator.disconnect()


async def test_message_send_and_delivery_reach_the_visitor(widget, online):
    from conversations.services.outbound import message_send
    from conversations.tasks import deliver_message

    communicator, _, _ = await _hello(_token())
    try:
        said = await _say(communicator, "hello?")

        def reply():
            conversation = Conversation.objects.get(pk=said["conversation"])
            message = message_send(conversation=conversation, agent=online, text="どうぞ")
            deliver_message(message.pk)
            message.refresh_from_db()
            return message

        message = await database_sync_to_async(reply)()
        assert message.provider_id == f"wc-{message.pk}" and message.delivery_status == "delivered"
        frame = await communicator.receive_json_from(timeout=5)
        assert (frame["from"], frame["text"]) == ("agent", "どうぞ")
    finally:
        await communicator.disconnect()


async def test_notes_are_never_sent_by_the_adapter(widget, online):
    from conversations.channels import PermanentSendError

    def note():
        conversation = make_conversation(make_customer(), widget)
        return make_message(conversation, "internal", direction=Direction.INTERNAL, kind=MessageKind.NOTE)

    message = await database_sync_to_async(note)()
    with pytest.raises(PermanentSendError):
        await database_sync_to_async(adapter_for(Channel.WEBCHAT).send)(message, to="", from_="")


async def test_typing_both_ways(widget, online):
    layer = get_channel_layer()
    communicator, _, _ = await _hello(_token())
    try:
        said = await _say(communicator, "hello?")
        console = await layer.new_channel()
        await layer.group_add(conversation_group(said["conversation"]), console)

        await database_sync_to_async(webchat_ingest.agent_typing_notify)(
            conversation_id=said["conversation"], agent=online, on=True
        )
        assert await communicator.receive_json_from(timeout=5) == {"type": "typing", "on": True, "name": "Alice"}
        agent_side = await layer.receive(console)
        assert agent_side["event"] == {"type": "typing", "conversation": said["conversation"], "agent": online.pk, "on": True}

        await communicator.send_json_to({"type": "typing", "on": True})
        visitor_side = await layer.receive(console)
        assert visitor_side["event"] == {"type": "typing", "conversation": said["conversation"], "customer": True, "on": True}
        await layer.group_discard(conversation_group(said["conversation"]), console)
    finally:
        await communicator.disconnect()


# --- offline ----------------------------------------------------------------------------------


async def test_nobody_available_or_closed_hours_say_offline(widget, agent):
    communicator, _, status = await _hello(_token())
    await communicator.disconnect()
    assert status == {"type": "status", "online": False, "reason": "no_agent"}

    await database_sync_to_async(Inbox.objects.filter(pk=widget.pk).update)(
        settings={"allowed_origins": [SITE], "business_hours": {"weekdays": [], "open": "00:00", "close": "23:59"}}
    )
    communicator, _, status = await _hello(_token())
    await communicator.disconnect()
    assert status == {"type": "status", "online": False, "reason": "closed"}


async def test_offline_message_becomes_an_email_conversation_of_the_visitor(widget, agent):
    def setup():
        mailbox = make_inbox(Channel.EMAIL)
        owner = make_customer("Existing")
        make_identity(owner, IdentityKind.EMAIL, "taken@example.jp", verified=True)
        return mailbox, owner

    mailbox, owner = await database_sync_to_async(setup)()
    token = _token()
    communicator, _, status = await _hello(token)
    try:
        assert status["online"] is False
        await communicator.send_json_to({
            "type": "offline_message", "id": str(uuid.uuid4()), "email": "taken@example.jp",
            "text": "返品したいです", "name": "Visitor",
        })
        assert await communicator.receive_json_from(timeout=5) == {"type": "offline_message", "ok": True}
    finally:
        await communicator.disconnect()

    def check():
        message = Message.objects.select_related("conversation").get()
        visitor = Identity.objects.get(kind=IdentityKind.WEB_VISITOR, value=_key(token)).customer
        assert (message.channel, message.inbox_id, message.customer_id) == (Channel.EMAIL, mailbox.pk, visitor.pk)
        assert message.metadata["reply_to"] == "taken@example.jp"
        assert message.text == "返品したいです"
        assert not Conversation.objects.filter(customer=owner).exists()
        assert Identity.objects.get(kind=IdentityKind.EMAIL, value="taken@example.jp").customer_id == owner.pk
        assert MergeSuggestion.objects.filter(customer=owner, candidate=visitor).exists()

    await database_sync_to_async(check)()


async def test_offline_message_needs_a_valid_email(widget, agent):
    await database_sync_to_async(make_inbox)(Channel.EMAIL)
    communicator, _, _ = await _hello(_token())
    try:
        await communicator.send_json_to({"type": "offline_message", "id": str(uuid.uuid4()), "email": "nope", "text": "x"})
        assert await communicator.receive_json_from() == {"type": "error", "code": 400, "reason": "bad_email"}
    finally:
        await communicator.disconnect()


def test_widget_script_and_demo_exist_and_render_text_safely():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    script = (root / "static" / "widget" / "widget.js").read_text()
    assert "innerHTML" not in script and "textContent" in script
    assert "attachShadow" in script and "/ws/widget/" in script and "localStorage" in script
    assert "チャット" in script  # Japanese strings ship inside the script
    assert (root / "static" / "widget" / "widget.css").exists()
    demo = (root / "templates" / "widget" / "demo.html").read_text()
    assert "widget.js" in demo and "<script>" not in demo
    json.dumps(demo)


# --- queue position and "End chat" ---------------------------------------------------------------


@pytest.fixture
def default_queue(db):
    from conversations.models import Queue

    return Queue.objects.create(name="Chat", slug="chat", is_default=True, offer_timeout_seconds=600)


async def _route(conversation_id):
    from conversations.routing.decisions import route_conversation

    return await database_sync_to_async(route_conversation)(conversation_id=conversation_id)


async def _drain(communicator):
    """Discard frames already pushed (a queue frame after a message, when a test worker routed the
    conversation first); reads only what is there, never waits for a frame."""
    while not await communicator.receive_nothing(timeout=0.2):
        await communicator.receive_json_from()


async def _ask_queue(communicator, conversation_id=None):
    frame = {"type": "queue"}
    if conversation_id is not None:
        frame["conversation"] = conversation_id
    await communicator.send_json_to(frame)
    return await communicator.receive_json_from(timeout=5)


async def test_queue_position_and_estimate_of_two_waiting_visitors(widget, agent, default_queue):
    from datetime import timedelta

    from django.utils import timezone

    def answered_before():
        # One chat of this queue was answered after two minutes: the estimate's median.
        now = timezone.now()
        make_conversation(make_customer(), widget, queue=default_queue, queued_at=now - timedelta(seconds=120),
                          assigned_at=now, answered_at=now, assignee=agent, status="resolved")

    await database_sync_to_async(answered_before)()
    first, _, _ = await _hello(_token())
    second, _, _ = await _hello(_token())
    try:
        one = await _say(first, "first in line")
        await _route(one["conversation"])
        two = await _say(second, "second in line")
        await _route(two["conversation"])
        await _drain(first)
        await _drain(second)

        assert await _ask_queue(first) == {
            "type": "queue", "conversation": one["conversation"], "waiting": True,
            "position": 1, "estimated_wait_seconds": 120, "follow_up": None,
        }
        assert await _ask_queue(second) == {
            "type": "queue", "conversation": two["conversation"], "waiting": True,
            "position": 2, "estimated_wait_seconds": 240, "follow_up": None,
        }
        # A message while waiting in the queue: the echo, then where the visitor stands.
        again = await _say(second, "still there?")
        assert again["type"] == "message" and again["conversation"] == two["conversation"]
        assert (await second.receive_json_from(timeout=5))["position"] == 2
        assert await second.receive_nothing(timeout=0.2)
    finally:
        await first.disconnect()
        await second.disconnect()


async def test_queue_position_is_null_once_an_agent_has_the_conversation(widget, agent, default_queue):
    from conversations.routing.assignment import conversation_assign

    communicator, _, _ = await _hello(_token())
    try:
        said = await _say(communicator, "hello?")
        await _route(said["conversation"])
        await _drain(communicator)
        assert (await _ask_queue(communicator))["position"] == 1
        await database_sync_to_async(conversation_assign)(conversation_id=said["conversation"], agent=agent, by=None)
        # The socket hears the agent join at once (the widget drops the queue line and says so).
        assert await communicator.receive_json_from(timeout=5) == {
            "type": "assigned", "conversation": said["conversation"], "name": agent.display_name,
        }
        assert await _ask_queue(communicator, said["conversation"]) == {
            "type": "queue", "conversation": said["conversation"], "waiting": False,
            "position": None, "estimated_wait_seconds": None, "follow_up": None,
        }
    finally:
        await communicator.disconnect()


async def test_queue_without_a_conversation_and_not_yet_queued(widget, agent):
    communicator, _, _ = await _hello(_token())
    try:
        assert await _ask_queue(communicator) == {
            "type": "queue", "conversation": None, "waiting": False, "position": None, "estimated_wait_seconds": None,
            "follow_up": None,
        }
        said = await _say(communicator, "hello?")  # no queue at all: it waits, with no position
        assert await communicator.receive_nothing(timeout=0.2)
        frame = await _ask_queue(communicator)
        assert (frame["conversation"], frame["waiting"], frame["position"]) == (said["conversation"], True, None)
    finally:
        await communicator.disconnect()


async def test_after_hours_fallback_tells_the_visitor_where_the_answer_comes_and_ending_keeps_it(
        widget, agent, default_queue):
    """A closed queue with the voicemail / email fallback: the widget hears "we'll answer by
    email" instead of a position, and End chat leaves the promised follow-up open."""
    from profiles.models import IdentityKind

    from ..factories import make_identity

    def close_queue():
        default_queue.business_hours = {"time_zone": "Asia/Tokyo", "weekly": {}, "holidays": []}
        default_queue.after_hours_action = "voicemail"
        default_queue.save()

    await database_sync_to_async(close_queue)()
    communicator, _, _ = await _hello(_token())
    try:
        said = await _say(communicator, "are you there?")

        def give_email():
            customer = Conversation.objects.get(pk=said["conversation"]).customer
            make_identity(customer, IdentityKind.EMAIL, "visitor@example.jp")

        await database_sync_to_async(give_email)()
        await _route(said["conversation"])
        await _drain(communicator)
        frame = await _ask_queue(communicator)
        assert (frame["waiting"], frame["follow_up"]) == (True, "email")
        await communicator.send_json_to({"type": "end"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "ended"

        def still_open():
            conversation = Conversation.objects.get(pk=said["conversation"])
            assert conversation.status == "open" and conversation.abandoned_at is None
            assert conversation.follow_up_channel == "email"

        await database_sync_to_async(still_open)()
    finally:
        await communicator.disconnect()


async def test_another_visitor_cannot_query_or_end_someone_elses_conversation(widget, online, default_queue):
    from conversations.models import Offer, OfferStatus

    alice, _, _ = await _hello(_token())
    mallory, _, _ = await _hello(_token())
    try:
        said = await _say(alice, "private")
        await _route(said["conversation"])
        await _drain(alice)
        await mallory.send_json_to({"type": "queue", "conversation": said["conversation"]})
        assert await mallory.receive_json_from() == {"type": "error", "code": 404, "reason": "not_found"}
        await mallory.send_json_to({"type": "end", "conversation": said["conversation"]})
        assert await mallory.receive_json_from() == {"type": "error", "code": 404, "reason": "not_found"}
        await mallory.send_json_to({"type": "queue", "conversation": "1"})
        assert await mallory.receive_json_from() == {"type": "error", "code": 404, "reason": "not_found"}
        assert await alice.receive_nothing(timeout=0.2)

        def untouched():
            conversation = Conversation.objects.get(pk=said["conversation"])
            assert conversation.abandoned_at is None and conversation.status == "open"
            assert Offer.objects.get(conversation=conversation).status == OfferStatus.PENDING

        await database_sync_to_async(untouched)()
    finally:
        await alice.disconnect()
        await mallory.disconnect()


async def test_end_while_waiting_abandons_cancels_the_offer_and_the_next_message_starts_anew(
        widget, online, default_queue):
    from conversations.models import Offer, OfferStatus

    token = _token()
    tab1, _, _ = await _hello(token)
    tab2, _, _ = await _hello(token)
    try:
        said = await _say(tab1, "I need help")
        assert (await tab2.receive_json_from(timeout=5))["id"] == said["id"]
        decision = await _route(said["conversation"])
        assert decision.offer is not None and decision.offer.status == OfferStatus.PENDING
        await _drain(tab1)
        await _drain(tab2)

        await tab1.send_json_to({"type": "end"})
        ended = {"type": "ended", "conversation": said["conversation"]}
        assert await tab1.receive_json_from(timeout=5) == ended
        assert await tab2.receive_json_from(timeout=5) == ended  # every tab clears

        def check():
            conversation = Conversation.objects.get(pk=said["conversation"])
            assert conversation.abandoned_at is not None and conversation.assignee_id is None
            assert Offer.objects.get(pk=decision.offer.pk).status == OfferStatus.CANCELED

        await database_sync_to_async(check)()
        frame = await _ask_queue(tab1)
        assert (frame["waiting"], frame["position"]) == (False, None)

        # Ending again changes nothing and still answers.
        await tab1.send_json_to({"type": "end", "conversation": said["conversation"]})
        assert await tab1.receive_json_from(timeout=5) == ended
        assert await tab2.receive_json_from(timeout=5) == ended

        fresh = await _say(tab1, "another question")
        assert fresh["conversation"] != said["conversation"]
        assert (await tab2.receive_json_from(timeout=5))["id"] == fresh["id"]
        new = await database_sync_to_async(Conversation.objects.get)(pk=fresh["conversation"])
        assert (new.status, new.abandoned_at, new.assignee_id) == ("open", None, None)
    finally:
        await tab1.disconnect()
        await tab2.disconnect()


async def test_end_with_an_agent_resolves_and_the_next_message_starts_anew(widget, agent, default_queue):
    from conversations.routing.assignment import conversation_assign

    token = _token()
    communicator, _, _ = await _hello(token)
    try:
        said = await _say(communicator, "hello?")
        await database_sync_to_async(conversation_assign)(conversation_id=said["conversation"], agent=agent, by=None)
        await _drain(communicator)
        await communicator.send_json_to({"type": "end"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "ended", "conversation": said["conversation"]}

        def check():
            conversation = Conversation.objects.get(pk=said["conversation"])
            assert conversation.status == "resolved" and conversation.abandoned_at is None
            event = Message.objects.get(conversation=conversation, kind=MessageKind.EVENT, event_type="resolved")
            # A code, not English text: the console shows it in the agent's language.
            assert event.event_data["ended_by"] == "customer" and event.event_data["note"] == ""
            assert event.author_agent_id is None

        await database_sync_to_async(check)()
        fresh = await _say(communicator, "one more thing")
        assert fresh["conversation"] != said["conversation"]
    finally:
        await communicator.disconnect()

    again, history, _ = await _hello(token)
    try:
        assert history["conversations"] == [said["conversation"], fresh["conversation"]]
    finally:
        await again.disconnect()


def test_widget_script_shows_the_queue_and_ends_the_chat():
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "static" / "widget" / "widget.js").read_text()
    assert '"queue"' in script and 'type: "end"' in script and '"ended"' in script
    assert "You are number {position} in the queue" in script and "{position}番目" in script
    assert "End chat" in script and "チャットを終了" in script


def test_every_widget_string_has_its_japanese_and_the_end_confirmation_says_the_same():
    import re
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "static" / "widget" / "widget.js").read_text()
    english = script[script.index("    en: {"):script.index("    ja: {")]
    japanese = script[script.index("    ja: {"):script.index("  };")]

    def keys(block):
        return set(re.findall(r"\b([a-z_0-9]+): \"", block))

    assert keys(english) == keys(japanese)
    assert {"joined", "not_sent", "retry", "discard", "unread_one", "unread_many", "new_reply"} <= keys(japanese)
    # The English confirmation explains what ending does; the Japanese one says it too.
    assert "The agent will no longer see your messages here." in english
    assert "担当者はここでのメッセージを見られなくなります" in japanese


async def test_the_widget_follows_the_queue_business_hours_and_skills(widget, agent):
    """One source of opening hours: the queue a chat starts in (the hours routing applies), and an
    available agent with that queue's skills."""
    from conversations.models import PresenceState, Queue, Skill

    def setup(hours):
        available = PresenceState.objects.filter(is_available=True).first() or PresenceState.objects.create(
            name="Available", is_available=True)
        agent.presence = available
        agent.save(update_fields=["presence"])
        queue = Queue.objects.create(name="Chat", slug="chat", business_hours=hours)
        Inbox.objects.filter(pk=widget.pk).update(default_queue=queue)
        return queue

    closed_all_week = {"time_zone": "Asia/Tokyo", "weekly": {}}
    queue = await database_sync_to_async(setup)(closed_all_week)
    communicator, _, status = await _hello(_token())
    await communicator.disconnect()
    assert status == {"type": "status", "online": False, "reason": "closed"}

    def open_but_skilled():
        Queue.objects.filter(pk=queue.pk).update(business_hours={})
        queue.required_skills.add(Skill.objects.create(name="Wholesale", slug="wholesale"))

    await database_sync_to_async(open_but_skilled)()
    communicator, _, status = await _hello(_token())
    await communicator.disconnect()
    assert status == {"type": "status", "online": False, "reason": "no_agent"}  # nobody has the skill

    def grant():
        agent.skills.add(Skill.objects.get(slug="wholesale"))

    await database_sync_to_async(grant)()
    communicator, _, status = await _hello(_token())
    await communicator.disconnect()
    assert status == {"type": "status", "online": True, "reason": "available"}


# --- the status speaks for the chat's queue, which the routing rules pick ------------------------

CLOSED_ALL_WEEK = {"time_zone": "Asia/Tokyo", "weekly": {}}


def _routing_world(widget, agent, available_presence):
    """The widget's default queue is open and Alice (available) serves it; the routing rules send
    Japanese speakers and VIPs to queues that are closed all week."""
    from conversations.models import Queue, RoutingRule

    agent.presence = available_presence
    agent.save(update_fields=["presence"])
    chat = Queue.objects.create(name="Chat", slug="chat")
    Inbox.objects.filter(pk=widget.pk).update(default_queue=chat)
    japanese = Queue.objects.create(name="Japanese", slug="japanese", business_hours=CLOSED_ALL_WEEK)
    vip = Queue.objects.create(name="VIP", slug="vip", business_hours=CLOSED_ALL_WEEK)
    RoutingRule.objects.create(name="VIPs", order=1, expression='"VIP" in tags', queue=vip)
    RoutingRule.objects.create(name="Japanese", order=2, expression='language == "ja"', queue=japanese)
    return chat, japanese, vip


def _visitor(widget, token, **fields) -> webchat_visitors.Visitor:
    return webchat_visitors.Visitor(inbox_id=widget.pk, key=_key(token), ip="198.51.100.7", **fields)


def _returning_visitor(name: str, **customer_fields):
    """A browser token already tied to a customer: (token, customer)."""
    token = _token()
    customer = make_customer(name, **customer_fields)
    make_identity(customer, IdentityKind.WEB_VISITOR, _key(token))
    return token, customer


def test_status_speaks_for_the_queue_the_rules_would_pick_from_the_browser_language(widget, agent, available_presence):
    _routing_world(widget, agent, available_presence)
    widget.refresh_from_db()
    closed = {"type": "status", "online": False, "reason": "closed"}
    # A new visitor: nobody yet, only what the browser says. The rules send "ja" to a closed queue.
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, _token(), language="ja-JP")) == closed
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, _token(), language="en-US"))["online"] is True
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, _token()))["online"] is True

    # A known visitor: their customer's language comes first, the browser's only when they have none.
    token = _token()
    english = make_customer("Known", language="en")
    make_identity(english, IdentityKind.WEB_VISITOR, _key(token))
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, token, language="ja"))["online"] is True
    Customer.objects.filter(pk=english.pk).update(language="")
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, token, language="ja")) == closed


def test_status_of_a_known_customer_follows_their_tags(widget, agent, available_presence):
    """A signed-in VIP is routed to the VIP queue (closed): the widget must not promise a live agent."""
    from profiles.models import Tag

    _routing_world(widget, agent, available_presence)
    widget.refresh_from_db()
    visitor = webchat_visitors.visitor_hello(inbox=widget, token=_token(), ip="198.51.100.7",
                                    user={"id": "u-42", "signature": _signature("u-42")})
    assert webchat_status.widget_status(widget, visitor=visitor)["online"] is True
    Customer.objects.get(pk=visitor.signed_customer_id).tags.add(Tag.objects.create(name="VIP"))
    assert webchat_status.widget_status(widget, visitor=visitor) == {"type": "status", "online": False, "reason": "closed"}
    # Anyone else still sees the open default queue.
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, _token()))["online"] is True


def test_status_follows_the_queue_of_the_visitors_open_conversation(widget, agent, available_presence):
    from conversations.models import Queue, Skill

    chat, _japanese, _vip = _routing_world(widget, agent, available_presence)
    widget.refresh_from_db()
    token, customer = _returning_visitor("Waiting")
    visitor = _visitor(widget, token, language="en")
    wholesale = Queue.objects.create(name="Wholesale", slug="wholesale")
    wholesale.required_skills.add(Skill.objects.create(name="Wholesale", slug="wholesale"))
    conversation = make_conversation(customer, widget, queue=wholesale, status="open")
    # Transferred to a queue nobody available can serve: the next message waits there.
    assert webchat_status.widget_status(widget, visitor=visitor) == {"type": "status", "online": False, "reason": "no_agent"}

    Conversation.objects.filter(pk=conversation.pk).update(queue=chat)
    Queue.objects.filter(pk=chat.pk).update(business_hours=CLOSED_ALL_WEEK)
    assert webchat_status.widget_status(widget, visitor=visitor)["reason"] == "closed"

    # Over (or abandoned): the next message opens a new chat, which the rules place (the default).
    Queue.objects.filter(pk=chat.pk).update(business_hours={})
    Conversation.objects.filter(pk=conversation.pk).update(queue=wholesale, status="resolved")
    assert webchat_status.widget_status(widget, visitor=visitor)["online"] is True
    Conversation.objects.filter(pk=conversation.pk).update(status="open", abandoned_at=conversation.created_at)
    assert webchat_status.widget_status(widget, visitor=visitor)["online"] is True


def test_status_of_a_chat_an_agent_has_is_that_agents_presence(widget, agent, available_presence):
    """After closing time the agent still finishes the chat they have: no offline form mid-chat."""
    from conversations.models import PresenceState, Queue

    chat, _japanese, _vip = _routing_world(widget, agent, available_presence)
    widget.refresh_from_db()
    Queue.objects.filter(pk=chat.pk).update(business_hours=CLOSED_ALL_WEEK)
    token, customer = _returning_visitor("Chatting")
    make_conversation(customer, widget, queue=chat, status="open", assignee=agent)
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, token))["online"] is True
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, _token()))["reason"] == "closed"  # anyone else

    away = PresenceState.objects.create(name="Away", is_available=False)
    Agent.objects.filter(pk=agent.pk).update(presence=away)
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, token)) == {
        "type": "status", "online": False, "reason": "no_agent"}


async def test_the_socket_status_uses_the_browser_language(widget, agent, available_presence):
    await database_sync_to_async(_routing_world)(widget, agent, available_presence)
    communicator, _, status = await _hello(_token(), extra={"language": "ja-JP"})
    try:
        assert status == {"type": "status", "online": False, "reason": "closed"}
        await communicator.send_json_to({"type": "status"})
        assert await communicator.receive_json_from(timeout=5) == status
    finally:
        await communicator.disconnect()
    communicator, _, status = await _hello(_token(), extra={"language": "en-GB"})
    await communicator.disconnect()
    assert status == {"type": "status", "online": True, "reason": "available"}


@override_settings(CC_WIDGET_LIMITS={"status_per_visitor": (3, 3600)})
async def test_status_requests_are_limited_per_visitor(widget, online):
    """Each answer runs the routing rules: a script asking in a loop is cut off, others are not."""
    flooder, _, _ = await _hello(_token())
    other, _, _ = await _hello(_token())
    try:
        for _n in range(3):
            await flooder.send_json_to({"type": "status"})
            assert (await flooder.receive_json_from(timeout=5))["type"] == "status"
        await flooder.send_json_to({"type": "status"})
        assert await flooder.receive_json_from(timeout=5) == {"type": "error", "code": 429, "reason": "rate_limited"}
        await other.send_json_to({"type": "status"})
        assert await other.receive_json_from(timeout=5) == {"type": "status", "online": True, "reason": "available"}
    finally:
        await flooder.disconnect()
        await other.disconnect()


def _status_queries(widget, visitor) -> int:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as captured:
        webchat_status.widget_status(widget, visitor=visitor)
    return len(captured.captured_queries)


def test_status_of_a_resolved_chat_the_next_message_would_reopen_is_its_agents(widget, agent, available_presence):
    """Writing again within the reopen window reopens the chat with its agent while they are
    available (ingest._reopen): the widget says so, even after closing time, instead of the
    offline form. Otherwise the chat is placed as a new one: the rules' queue answers."""
    from conversations.models import PresenceState, Queue

    chat, _japanese, _vip = _routing_world(widget, agent, available_presence)
    widget.refresh_from_db()
    Queue.objects.filter(pk=chat.pk).update(business_hours=CLOSED_ALL_WEEK)
    token, customer = _returning_visitor("Back again")
    resolved = make_conversation(customer, widget, queue=chat, status="resolved", assignee=agent,
                                 resolved_at=timezone.now() - timedelta(days=1))
    closed = {"type": "status", "online": False, "reason": "closed"}
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, token)) == {
        "type": "status", "online": True, "reason": "available"}
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, _token())) == closed  # anyone else

    away = PresenceState.objects.create(name="Away", is_available=False)
    Agent.objects.filter(pk=agent.pk).update(presence=away)
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, token)) == closed  # placed anew: closed
    Agent.objects.filter(pk=agent.pk).update(presence=available_presence)

    # Past the window, or ended by the visitor: a new chat, placed by the rules.
    Conversation.objects.filter(pk=resolved.pk).update(
        resolved_at=timezone.now() - timedelta(days=widget.reopen_window_days + 1))
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, token)) == closed
    Conversation.objects.filter(pk=resolved.pk).update(resolved_at=timezone.now() - timedelta(hours=1))
    make_message(resolved, "", kind="event", event_type="resolved", event_data={"note": webchat_visitors.LEGACY_ENDED_NOTE})
    assert webchat_status.widget_status(widget, visitor=_visitor(widget, token)) == closed


def test_status_costs_a_fixed_number_of_queries(widget, agent, available_presence):
    """Every hello and every opening of the widget asks: however many rules, skills, agents,
    merges or past conversations, the same few statements."""
    from conversations.models import Queue, RoutingRule, Skill
    from profiles.models import Tag
    from tests.factories import make_agent

    chat, _japanese, vip = _routing_world(widget, agent, available_presence)
    widget.refresh_from_db()
    tagged, waiting = _token(), _token()
    make_identity(make_customer("Tagged", language="en"), IdentityKind.WEB_VISITOR, _key(tagged))
    waiting_customer = make_customer("Waiting")
    make_identity(waiting_customer, IdentityKind.WEB_VISITOR, _key(waiting))
    make_conversation(waiting_customer, widget, queue=chat, status="open")
    visitors = {"new": _visitor(widget, _token(), language="en"), "known": _visitor(widget, tagged),
                "waiting": _visitor(widget, waiting)}
    before = {name: _status_queries(widget, visitor) for name, visitor in visitors.items()}

    for n in range(5):
        skill = Skill.objects.create(name=f"Skill {n}", slug=f"skill-{n}")
        chat.required_skills.add(skill)
        agent.skills.add(skill)
        make_agent(f"agent{n}").skills.add(skill)
        other = Queue.objects.create(name=f"Other {n}", slug=f"other-{n}")
        RoutingRule.objects.create(name=f"Other {n}", order=10 + n, expression=f'"tag {n}" in tags', queue=other)
        Tag.objects.create(name=f"label {n}").customers.add(Customer.objects.get(display_name="Tagged"))
        make_conversation(waiting_customer, widget, queue=vip, status="resolved",
                          last_message_at=waiting_customer.created_at)
    after = {name: _status_queries(widget, visitor) for name, visitor in visitors.items()}
    assert after == before
    assert max(after.values()) <= 6
    assert webchat_status.widget_status(widget, visitor=visitors["waiting"])["online"] is True  # Alice has every skill


# --- the browser says the customer's language -----------------------------------------------------


async def test_the_browser_language_becomes_the_new_customers_language(widget, online):
    token = _token()
    communicator, _, _ = await _hello(token, extra={"language": "ja-JP"})
    try:
        said = await _say(communicator, "こんにちは")
        assert said["type"] == "message"
    finally:
        await communicator.disconnect()

    def language():
        return Identity.objects.select_related("customer").get(kind=IdentityKind.WEB_VISITOR, value=_key(token)).customer.language

    assert await database_sync_to_async(language)() == "ja"


@pytest.mark.parametrize("raw", [
    "<script>alert(1)</script>", "x-klingon", "i-default", "und", "ja-JP; DROP", "e", "ja" + "-abcdefgh" * 6,
    42, ["ja"], {"tag": "ja"}, "",
])
def test_an_implausible_browser_language_is_dropped_never_refused(widget, online, raw):
    visitor = webchat_visitors.visitor_hello(inbox=widget, token=_token(), ip="198.51.100.7", language=raw)
    assert visitor.language == ""
    frame, _ = webchat_ingest.visitor_message_receive(visitor=visitor, client_id=str(uuid.uuid4()), text="hello")
    assert Conversation.objects.get(pk=frame["conversation"]).customer.language == ""


@pytest.mark.parametrize("raw, expected", [("ja", "ja"), ("en-US", "en"), ("zh-Hant-TW", "zh"), ("JA-jp", "ja")])
def test_a_plausible_browser_language_reaches_the_ingest(widget, online, raw, expected):
    visitor = webchat_visitors.visitor_hello(inbox=widget, token=_token(), ip="198.51.100.7", language=raw)
    assert visitor.language == raw
    frame, _ = webchat_ingest.visitor_message_receive(visitor=visitor, client_id=str(uuid.uuid4()), text="hello")
    assert Conversation.objects.get(pk=frame["conversation"]).customer.language == expected


def test_the_browser_language_never_overrides_a_known_language(widget, online):
    token, customer = _returning_visitor("Known", language="en")
    visitor = webchat_visitors.visitor_hello(inbox=widget, token=token, ip="198.51.100.7", language="ja")
    webchat_ingest.visitor_message_receive(visitor=visitor, client_id=str(uuid.uuid4()), text="hello")
    customer.refresh_from_db()
    assert customer.language == "en"


def test_the_offline_message_carries_the_browser_language(widget, agent):
    make_inbox(Channel.EMAIL)
    token = _token()
    visitor = webchat_visitors.visitor_hello(inbox=widget, token=token, ip="198.51.100.7", language="ja-JP")
    webchat_ingest.visitor_offline_message(visitor=visitor, client_id=str(uuid.uuid4()), email="v@example.jp", text="返品")
    assert Identity.objects.get(kind=IdentityKind.WEB_VISITOR, value=_key(token)).customer.language == "ja"


def test_widget_script_sends_the_browser_language_at_hello():
    from pathlib import Path

    script = (Path(__file__).resolve().parents[2] / "static" / "widget" / "widget.js").read_text()
    assert "hello.language = navigator.language" in script


@pytest.mark.parametrize(("language", "shown"), [("en", "ended by the customer"), ("ja", "お客様が終了")])
def test_a_chat_the_customer_ended_reads_in_the_agents_language(widget, language, shown):
    """Stored as a code (``ended_by``), rendered by the console in the reader's language; rows
    written before with the English note read the same."""
    from django.template.loader import render_to_string
    from django.utils import translation

    from conversations.selectors import MessageTimelineSource
    from profiles.timeline import Position, TimelineEntry

    conversation = make_conversation(make_customer(), widget)
    coded = make_message(conversation, "", kind="event", direction="internal", event_type="resolved",
                         event_data={"wrap_up_code": "", "note": "", "ended_by": "customer"})
    legacy = make_message(conversation, "", kind="event", direction="internal", event_type="resolved",
                          event_data={"note": webchat_visitors.LEGACY_ENDED_NOTE})
    for message in (coded, legacy):
        entry = TimelineEntry(MessageTimelineSource.type,
                              Position(message.created_at, MessageTimelineSource.rank, message.pk), message)
        with translation.override(language):
            html = render_to_string("console/_timeline_entry.html", {"entry": entry, "current_id": None})
        assert shown in html
        if language == "ja":
            assert "ended by the customer" not in html
