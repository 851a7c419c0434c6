import pytest
from django.core.exceptions import ValidationError

from conversations.models import Conversation, Message
from profiles.models import Consent, CustomerMerge, CustomerNote, Identity, IdentityKind, Tag, Touchpoint
from profiles.services import MergeError, customer_merge, customer_merge_undo

from ..factories import make_conversation, make_customer, make_identity, make_inbox, make_message, make_touchpoint

pytestmark = pytest.mark.django_db


def _snapshot(customer):
    customer.refresh_from_db()
    return {
        "fields": (customer.display_name, customer.language, customer.time_zone, customer.journey_stage,
                   customer.custom_attributes, customer.merged_into_id),
        "identities": sorted(Identity.objects.filter(customer=customer).values_list("pk", flat=True)),
        "conversations": sorted(Conversation.objects.filter(customer=customer).values_list("pk", flat=True)),
        "messages": sorted(Message.objects.filter(customer=customer).values_list("pk", flat=True)),
        "touchpoints": sorted(Touchpoint.objects.filter(customer=customer).values_list("pk", flat=True)),
        "notes": sorted(CustomerNote.objects.filter(customer=customer).values_list("pk", flat=True)),
        "consents": sorted(Consent.objects.filter(customer=customer).values_list("pk", flat=True)),
        "tags": sorted(customer.tags.values_list("name", flat=True)),
    }


@pytest.fixture
def pair():
    vip, web = Tag.objects.create(name="VIP"), Tag.objects.create(name="web")
    target = make_customer("Hanako Yamada", journey_stage="purchase", custom_attributes={"plan": "gold"})
    target.tags.add(vip)
    make_identity(target, IdentityKind.PHONE, "+819012345678", verified=True)
    conv = make_conversation(target, make_inbox("sms"))
    make_message(conv, "target sms")

    source = make_customer("", language="ja", time_zone="Asia/Tokyo", custom_attributes={"plan": "free", "city": "Osaka"})
    source.tags.add(web)
    make_identity(source, IdentityKind.EMAIL, "hanako@example.jp", verified=True)
    email_conv = make_conversation(source, make_inbox("email"))
    make_message(email_conv, "source email 1")
    make_message(email_conv, "source email 2")
    make_touchpoint(source, "Viewed the returns page")
    CustomerNote.objects.create(customer=source, text="Prefers email")
    Consent.objects.create(customer=source, channel="email", address="hanako@example.jp", status="opted_in")
    return target, source


def test_merge_moves_everything_and_undo_restores_both_exactly(pair, admin_user):
    target, source = pair
    before_target, before_source = _snapshot(target), _snapshot(source)

    record = customer_merge(source=source, target=target, actor=admin_user)

    after = _snapshot(target)
    assert _snapshot(source)["identities"] == []
    assert after["identities"] == sorted(before_target["identities"] + before_source["identities"])
    assert after["conversations"] == sorted(before_target["conversations"] + before_source["conversations"])
    assert after["messages"] == sorted(before_target["messages"] + before_source["messages"])
    assert after["touchpoints"] == before_source["touchpoints"]
    assert after["notes"] == before_source["notes"]
    assert after["consents"] == before_source["consents"]
    assert after["tags"] == ["VIP", "web"]
    target.refresh_from_db()
    source.refresh_from_db()
    assert source.merged_into == target
    assert target.language == "ja"  # filled from the source because the target had none
    assert target.custom_attributes == {"plan": "gold", "city": "Osaka"}  # the target's own values win
    assert record.moved["profiles.identity"] == before_source["identities"]
    assert record.moved["conversations.conversation"] == before_source["conversations"]

    customer_merge_undo(merge=record, actor=admin_user)

    assert _snapshot(target) == before_target
    assert _snapshot(source) == before_source
    record.refresh_from_db()
    assert record.undone_at is not None and record.undone_by == admin_user


def test_rows_arriving_after_the_merge_stay_with_the_target_on_undo(pair):
    target, source = pair
    record = customer_merge(source=source, target=target)
    later = make_conversation(target, make_inbox("webchat"))
    customer_merge_undo(merge=record)
    assert Conversation.objects.get(pk=later.pk).customer == target


def test_agent_edit_after_merge_survives_undo(pair):
    target, source = pair
    record = customer_merge(source=source, target=target)
    target.refresh_from_db()
    target.language = "en"
    target.save()
    customer_merge_undo(merge=record)
    target.refresh_from_db()
    assert target.language == "en"


def test_merge_into_itself_is_a_clear_error(pair):
    target, _ = pair
    with pytest.raises(MergeError, match="itself"):
        customer_merge(source=target, target=target)


def test_merge_into_a_merged_customer_is_a_clear_error(pair):
    target, source = pair
    customer_merge(source=source, target=target)
    third = make_customer("Third")
    with pytest.raises(MergeError, match="already merged"):
        customer_merge(source=third, target=source)
    with pytest.raises(MergeError, match="already merged"):
        customer_merge(source=source, target=third)
    assert isinstance(MergeError("x"), ValidationError)


def test_undo_twice_is_an_error(pair):
    target, source = pair
    record = customer_merge(source=source, target=target)
    customer_merge_undo(merge=record)
    with pytest.raises(MergeError, match="already undone"):
        customer_merge_undo(merge=record)


def test_undo_blocked_while_target_is_merged_further(pair):
    target, source = pair
    first = customer_merge(source=source, target=target)
    final = make_customer("Final")
    second = customer_merge(source=target, target=final)
    with pytest.raises(MergeError, match="undo that merge first"):
        customer_merge_undo(merge=first)
    customer_merge_undo(merge=second)
    customer_merge_undo(merge=first)
    assert CustomerMerge.objects.filter(undone_at__isnull=True).count() == 0


def test_merge_again_after_undo_is_allowed(pair):
    target, source = pair
    customer_merge_undo(merge=customer_merge(source=source, target=target))
    again = customer_merge(source=source, target=target)
    assert again.undone_at is None
