"""Admin for conversations, messages, routing configuration and agents (and the worker heartbeat)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from contactcenter.models import WorkerHeartbeat
from conversations.models import (
    AgentSkill,
    Attachment,
    Conversation,
    ConversationStatus,
    Direction,
    Inbox,
    Message,
    MessageStatusEvent,
    PresenceState,
    Queue,
    RecordedProviderRequest,
    Skill,
)
from profiles.models import IdentityKind

from ..factories import make_conversation, make_customer, make_identity, make_inbox, make_message

pytestmark = pytest.mark.django_db


def _url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


@pytest.fixture
def conversation(customer, agent, support_queue):
    conversation = make_conversation(customer, make_inbox("sms"), queue=support_queue, assignee=agent)
    make_message(conversation, "こんにちは、注文について")
    make_message(conversation, "Hello, how can I help?", direction=Direction.OUTBOUND, author_agent=agent,
                 provider_id="SM0001", delivery_status="delivered")
    return conversation


@pytest.fixture
def one_of_each(conversation, agent, available_presence):
    outbound = conversation.messages.get(provider_id="SM0001")
    skill = Skill.objects.create(name="Billing", slug="billing")
    agent.presence = available_presence
    agent.save()
    return {
        Inbox: conversation.inbox,
        Skill: skill,
        Queue: conversation.queue,
        PresenceState: available_presence,
        type(agent): agent,
        AgentSkill: AgentSkill.objects.create(agent=agent, skill=skill, level=3),
        Conversation: conversation,
        Message: outbound,
        MessageStatusEvent: MessageStatusEvent.objects.create(
            message=outbound, provider_id="SM0001", status="delivered"
        ),
        Attachment: Attachment.objects.create(message=outbound, filename="receipt.pdf", content_type="application/pdf",
                                              state="pending", source_url="https://api.twilio.com/media/ME1"),
        RecordedProviderRequest: RecordedProviderRequest.objects.create(
            provider="twilio", method="POST", uri="/2010-04-01/Accounts/AC1/Messages.json", to="+819012345678",
            body="Hello", sid="SM0001",
        ),
        WorkerHeartbeat: WorkerHeartbeat.objects.create(token="test-heartbeat"),
    }


def test_changelist_and_change_page_of_every_model_load(admin_client, one_of_each):
    for model, obj in one_of_each.items():
        assert admin_client.get(_url(model, "changelist")).status_code == 200, model
        assert admin_client.get(_url(model, "change", obj.pk)).status_code == 200, model


def test_add_pages_of_configuration_models_load(admin_client, one_of_each):
    for model in (Inbox, Skill, Queue, PresenceState, type(one_of_each[Conversation].assignee), AgentSkill):
        assert admin_client.get(_url(model, "add")).status_code == 200, model


def test_records_written_by_services_cannot_be_added_changed_or_deleted(admin_client, one_of_each):
    for model in (Message, MessageStatusEvent, Attachment, RecordedProviderRequest):
        obj = one_of_each[model]
        assert admin_client.get(_url(model, "add")).status_code == 403, model
        assert admin_client.post(_url(model, "change", obj.pk), {}).status_code == 403, model
        assert admin_client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403, model
        assert model.objects.filter(pk=obj.pk).exists()
    # Conversations open through ingest only.
    assert admin_client.get(_url(Conversation, "add")).status_code == 403


def test_message_page_is_view_only_with_status_events_inline(admin_client, one_of_each):
    message = one_of_each[Message]
    response = admin_client.get(_url(Message, "change", message.pk))
    assert response.context["has_change_permission"] is False
    inlines = {inline.formset.model: inline for inline in response.context["inline_admin_formsets"]}
    events = inlines[MessageStatusEvent]
    assert (events.has_add_permission, events.has_change_permission, events.has_delete_permission) == (
        False, False, False)
    assert [form.instance for form in events.formset.forms] == [one_of_each[MessageStatusEvent]]
    assert b"receipt.pdf" in response.content


# --- conversation page ------------------------------------------------------------------------


def _message_inline(response):
    [inline] = [i for i in response.context["inline_admin_formsets"] if i.formset.model is Message]
    return inline


def test_conversation_messages_inline_is_read_only(admin_client, conversation):
    response = admin_client.get(_url(Conversation, "change", conversation.pk))

    inline = _message_inline(response)
    assert inline.has_add_permission is False
    assert inline.has_change_permission is False
    assert inline.has_delete_permission is False
    assert inline.formset.extra_forms == []
    assert len(inline.formset.forms) == 2
    content = response.content.decode()
    assert "こんにちは、注文について" in content
    assert 'name="messages-0-text"' not in content  # shown as text, not as an input


def test_saving_a_conversation_cannot_touch_its_messages_or_owner(admin_client, conversation, customer):
    other = make_customer("Not the owner")
    message = conversation.messages.first()
    url = _url(Conversation, "change", conversation.pk)
    response = admin_client.post(url, {
        "subject": "Order 1234", "priority": "5", "queue": str(conversation.queue_id),
        "customer": str(other.pk), "status": ConversationStatus.RESOLVED,
        "messages-TOTAL_FORMS": "3", "messages-INITIAL_FORMS": "2", "messages-MIN_NUM_FORMS": "0",
        "messages-MAX_NUM_FORMS": "0",
        "messages-0-id": str(message.pk), "messages-0-conversation": str(conversation.pk), "messages-0-text": "forged",
        "messages-2-text": "injected", "messages-2-direction": "outbound",
    })

    assert response.status_code == 302
    conversation.refresh_from_db()
    assert (conversation.subject, conversation.priority) == ("Order 1234", 5)
    assert conversation.customer == customer and conversation.status == ConversationStatus.OPEN
    message.refresh_from_db()
    assert message.text == "こんにちは、注文について"
    assert conversation.messages.count() == 2


def test_long_conversation_shows_only_the_latest_messages(admin_client, conversation):
    base = timezone.now()
    for i in range(60):
        make_message(conversation, f"message {i}", created_at=base + timezone.timedelta(seconds=i))

    response = admin_client.get(_url(Conversation, "change", conversation.pk))

    forms = _message_inline(response).formset.forms
    assert len(forms) == 50
    assert forms[0].instance.text == "message 59"


def test_customer_text_is_escaped_on_the_conversation_page(admin_client, conversation):
    make_message(conversation, "<script>alert('x')</script>")
    content = admin_client.get(_url(Conversation, "change", conversation.pk)).content.decode()
    assert "<script>alert('x')</script>" not in content
    assert "&lt;script&gt;" in content


# --- changelist -------------------------------------------------------------------------------


def test_conversation_filters_and_search(admin_client, conversation, other_agent):
    email = make_customer("Taro")
    make_identity(email, IdentityKind.EMAIL, "taro@example.jp")
    resolved = make_conversation(email, make_inbox("email"), status=ConversationStatus.RESOLVED, assignee=other_agent)
    url = _url(Conversation, "changelist")

    def listed(query):
        response = admin_client.get(url, query)
        assert response.status_code == 200, query
        return list(response.context["cl"].result_list)

    assert listed({"status__exact": "resolved"}) == [resolved]
    assert listed({"channel__exact": "sms"}) == [conversation]
    assert listed({"inbox__id__exact": resolved.inbox_id}) == [resolved]
    assert listed({"queue__id__exact": conversation.queue_id}) == [conversation]
    assert listed({"assignee__id__exact": other_agent.pk}) == [resolved]
    assert listed({"q": "taro@example"}) == [resolved]
    assert listed({"q": "+81901234"}) == [conversation]


def test_message_changelist_filters_and_search(admin_client, conversation):
    url = _url(Message, "changelist")
    response = admin_client.get(url, {"direction__exact": "outbound"})
    assert [m.provider_id for m in response.context["cl"].result_list] == ["SM0001"]
    response = admin_client.get(url, {"q": "SM0001"})
    assert len(response.context["cl"].result_list) == 1


def _queries(client, url) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url).status_code == 200
    return len(ctx.captured_queries)


def test_changelist_query_counts_do_not_grow_with_rows(admin_client, conversation, agent, support_queue):
    urls = [_url(Conversation, "changelist"), _url(Message, "changelist"), _url(MessageStatusEvent, "changelist")]

    def add_rows(n):
        for i in range(n):
            c = make_conversation(make_customer(), make_inbox("email"), queue=support_queue, assignee=agent)
            m = make_message(c, "hi", provider_id=f"SMX{c.pk}-{i}")
            MessageStatusEvent.objects.create(message=m, provider_id=m.provider_id, status="sent")

    add_rows(1)
    few = [_queries(admin_client, url) for url in urls]
    add_rows(6)
    assert [_queries(admin_client, url) for url in urls] == few


def test_agent_without_staff_flag_cannot_reach_conversation_admin(client, agent, conversation):
    client.force_login(agent.user)
    for url in (_url(Conversation, "changelist"), _url(Conversation, "change", conversation.pk),
                _url(Message, "changelist")):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login")), url


def test_email_admin_pages_load(client, admin_user):
    from conversations.models import ImapCursor, RawEmail

    from ..factories import make_conversation, make_customer, make_inbox, make_message

    inbox = make_inbox("email")
    message = make_message(make_conversation(make_customer(), inbox), "mail")
    raw = RawEmail.objects.create(message=message, raw=b"Subject: <script>x</script>\r\n\r\nhi", size=30, sha256="0" * 64)
    cursor = ImapCursor.objects.create(inbox=inbox, mailbox="INBOX")
    client.force_login(admin_user)
    for url in ("/admin/conversations/rawemail/", f"/admin/conversations/rawemail/{raw.pk}/change/",
                "/admin/conversations/imapcursor/", f"/admin/conversations/imapcursor/{cursor.pk}/change/"):
        response = client.get(url)
        assert response.status_code == 200, url
        assert b"<script>x</script>" not in response.content
    assert client.post("/admin/conversations/rawemail/add/", {}).status_code == 403


def test_routing_admin_pages_and_rule_validation(client, admin_user):
    from conversations.models import Offer, Queue, RoutingRule

    queue = Queue.objects.create(name="Support", slug="support")
    conversation = make_conversation(make_customer(), make_inbox("sms"))
    from ..factories import make_agent

    offer = Offer.objects.create(conversation=conversation, agent=make_agent("zed"), queue=queue, channel="sms",
                                 step="queue")
    rule = RoutingRule.objects.create(name="VIP", expression='"VIP" in tags', queue=queue)
    client.force_login(admin_user)
    for url in ("/admin/conversations/offer/", f"/admin/conversations/offer/{offer.pk}/change/",
                "/admin/conversations/routingrule/", f"/admin/conversations/routingrule/{rule.pk}/change/",
                f"/admin/conversations/queue/{queue.pk}/change/"):
        assert client.get(url).status_code == 200, url
    response = client.post("/admin/conversations/routingrule/add/", {
        "name": "evil", "order": 1, "expression": "__import__('os').system('id')", "queue": queue.pk, "is_active": "on"})
    assert response.status_code == 200  # the form comes back with the reason
    assert "not allowed" in response.content.decode()
    assert not RoutingRule.objects.filter(name="evil").exists()


def test_an_inbox_queue_that_does_not_take_the_inboxs_channel_is_refused_with_the_reason():
    from django.core.exceptions import ValidationError

    from conversations.models import Queue

    email_team = Queue.objects.create(name="Email team", slug="email-team", channels=["email"])
    inbox = make_inbox("sms", default_queue=email_team)
    with pytest.raises(ValidationError) as refused:
        inbox.full_clean()
    assert "does not take SMS conversations" in str(refused.value.message_dict["default_queue"])
    inbox.default_queue = Queue.objects.create(name="Any", slug="any")  # every channel
    inbox.full_clean()


def test_an_imap_password_in_the_inbox_settings_is_refused_with_where_it_belongs(admin_client):
    """The settings JSON is shown to every admin who opens the inbox: the mailbox password goes in
    the workers' environment, named by ``password_env``; the form comes back with the reason and
    nothing the admin typed is saved."""
    from django.core.exceptions import ValidationError

    from conversations.models import Inbox

    inbox = make_inbox("email")
    mailbox = {"host": "imap.example.jp", "username": "support", "folder": "INBOX"}
    for settings in ({"imap": {**mailbox, "password": "hunter2"}},
                     {"imap": [{**mailbox, "password_env": "CC_IMAP_A"}, {**mailbox, "password": "hunter2"}]}):
        inbox.settings = settings
        with pytest.raises(ValidationError) as refused:
            inbox.full_clean()
        assert "password_env" in str(refused.value.message_dict["settings"])
    inbox.settings = {"imap": [{**mailbox, "password_env": "CC_IMAP_A"}]}
    inbox.full_clean()

    def change(settings: str):
        return admin_client.post(f"/admin/conversations/inbox/{inbox.pk}/change/", {
            "name": inbox.name, "kind": "email", "address": inbox.address, "reopen_window_days": 7, "is_active": "on",
            "settings": settings, "secret": "", "created_at_0": "2026-12-01", "created_at_1": "00:00:00"})

    page = change('{"imap": {"host": "imap.example.jp", "username": "support", "password": "hunter2"}}')
    assert page.status_code == 200 and "Do not store the IMAP password here" in page.content.decode()
    assert "hunter2" not in str(Inbox.objects.get(pk=inbox.pk).settings)
    assert change('{"imap": {"host": "imap.example.jp", "username": "support", "password_env": "CC_IMAP_B"}}'
                  ).status_code == 302
    assert Inbox.objects.get(pk=inbox.pk).settings["imap"]["password_env"] == "CC_IMAP_B"


def test_an_inbox_that_still_stores_an_imap_password_says_so_when_opened(admin_client):
    """Saved before the admin refused it, the password still logs the poller in: whoever opens the
    inbox is warned, in their language, before saving asks them to move it."""
    from conversations.models import Inbox

    inbox = make_inbox("email")
    mailbox = {"host": "imap.example.jp", "username": "support"}
    # As an inbox saved before the check: written past Inbox.clean.
    Inbox.objects.filter(pk=inbox.pk).update(settings={"imap": [{**mailbox, "password_env": "CC_IMAP_A"},
                                                                {**mailbox, "password": "hunter2"}]})
    url = f"/admin/conversations/inbox/{inbox.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'class="warning"' in page and "hold a mailbox password" in page
    page = admin_client.get(url, HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "メールボックスのパスワード" in page and "hold a mailbox password" not in page

    Inbox.objects.filter(pk=inbox.pk).update(settings={"imap": [{**mailbox, "password_env": "CC_IMAP_A"}]})
    page = admin_client.get(url).content.decode()
    assert "hold a mailbox password" not in page and 'class="warning"' not in page


OUR_APPS = ("contactcenter", "conversations", "profiles", "surveys")


def test_every_model_and_field_of_ours_has_a_japanese_name():
    """The admin builds its headings, columns, filters and form labels from these names: each one
    is translatable, and the Japanese catalogue has it (English stays Django's default wording)."""
    from django.apps import apps
    from django.utils import translation

    untranslated = []
    for label in OUR_APPS:
        config = apps.get_app_config(label)
        names = [(label, lambda: config.verbose_name)]
        for model in config.get_models():
            meta = model._meta
            names += [(model.__name__, lambda meta=meta: meta.verbose_name),
                      (f"{model.__name__} (plural)", lambda meta=meta: meta.verbose_name_plural)]
            # Our own fields: not the primary keys and reverse relations Django adds.
            names += [(f"{model.__name__}.{field.name}", lambda field=field: field.verbose_name)
                      for field in meta.get_fields(include_hidden=False)
                      if not field.auto_created and (field.concrete or field.many_to_many)]
        for where, name in names:
            with translation.override("en"):
                english = str(name())
            with translation.override("ja"):
                japanese = str(name())
            if japanese == english:
                untranslated.append(f"{where}: {english}")
    assert untranslated == []


def test_the_admin_speaks_japanese_for_our_models(admin_client):
    """Headings, sidebar, columns and form labels in the admin's language; English unchanged."""
    inbox = make_inbox("email")
    change = f"/admin/conversations/inbox/{inbox.pk}/change/"
    page = admin_client.get(change, HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    for japanese in ("受信箱", "名前", "種類", "デフォルトのキュー", "再開を受け付ける日数", "会話", "顧客プロファイル",
                     "ルーティングルール", "対応結果コード"):
        assert japanese in page, japanese
    Queue.objects.create(name="Support", slug="support")
    listing = admin_client.get("/admin/conversations/queue/", HTTP_ACCEPT_LANGUAGE="ja").content.decode()
    assert "優先度" in listing and "自動受諾" in listing
    page = admin_client.get(change, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    for english in ("Inboxes", "Name", "Kind", "Default queue", "Reopen window days", "Conversations",
                    "Customer profiles", "Routing rules", "Wrap up codes"):
        assert english in page, english
    assert "受信箱" not in page
