"""REST API on customers (profiles/api): directory, profile, timeline, merges, auth, schema."""

from datetime import datetime, timedelta

import pytest
from django.contrib.auth.models import Group, Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import include, path, reverse
from django.utils import timezone
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from conversations.models import Attachment, Direction, EventType, MessageKind
from profiles.models import Consent, Customer, CustomerMerge, CustomerNote, IdentityKind, Tag
from profiles.services import customer_merge

from ..factories import (
    make_conversation,
    make_customer,
    make_identity,
    make_inbox,
    make_message,
    make_touchpoint,
)

pytestmark = pytest.mark.django_db

T0 = timezone.now().replace(microsecond=0) - timedelta(days=10)


def url(name, *args):
    return reverse(f"api-{name}", args=args)


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


@pytest.fixture
def api(agent):
    return client_for(agent.user)


def _revoke(group_name: str, codename: str):
    Group.objects.get(name=group_name).permissions.remove(Permission.objects.get(codename=codename))


# --- customer list ---------------------------------------------------------------------------------


def test_list_search_by_name_and_identity(api, customer):
    other = make_customer("Taro Suzuki")
    make_identity(other, IdentityKind.EMAIL, "taro@example.jp")

    by_name = api.get(url("customer-list"), {"q": "山田"})
    assert by_name.status_code == 200
    assert [row["id"] for row in by_name.json()["results"]] == [customer.pk]
    row = by_name.json()["results"][0]
    assert row["identities"] == [{
        "id": customer.identities.get().pk, "kind": "phone", "value": "+819012345678", "verified": True,
        "source": "inbound", "created_at": row["identities"][0]["created_at"], "last_seen_at": None,
    }]

    by_identity = api.get(url("customer-list"), {"q": "taro@example"})
    assert [row["id"] for row in by_identity.json()["results"]] == [other.pk]
    assert api.get(url("customer-list")).json()["count"] == 2


@pytest.mark.parametrize("written", ["090-1234-5678", "０９０－１２３４－５６７８", "+81 90 1234 5678", "09012345678"])
def test_list_phone_in_any_written_form_finds_the_same_customer(api, customer, written):
    make_identity(make_customer("Someone else"), IdentityKind.PHONE, "+819011112222")
    response = api.get(url("customer-list"), {"phone": written})
    assert response.status_code == 200
    assert [row["id"] for row in response.json()["results"]] == [customer.pk]


def test_list_email_is_normalized(api, customer):
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    response = api.get(url("customer-list"), {"email": "  Hanako@EXAMPLE.jp "})
    assert [row["id"] for row in response.json()["results"]] == [customer.pk]


@pytest.mark.parametrize("params, field", [({"phone": "not a phone"}, "phone"), ({"phone": "123"}, "phone"),
                                           ({"email": "nobody-at-example"}, "email")])
def test_list_bad_phone_or_email_is_400_with_the_message(api, customer, params, field):
    response = api.get(url("customer-list"), params)
    assert response.status_code == 400
    message = " ".join(response.json()[field])
    assert "phone number" in message or "email address" in message


def test_list_filters_journey_stage_and_tags(api):
    buyer = make_customer("Buyer", journey_stage="purchase")
    browser = make_customer("Browser", journey_stage="interest")
    vip, urgent = Tag.objects.create(name="vip"), Tag.objects.create(name="urgent")
    buyer.tags.add(vip, urgent)
    browser.tags.add(vip)

    def ids(params):
        response = api.get(url("customer-list"), params)
        assert response.status_code == 200, response.json()
        return sorted(row["id"] for row in response.json()["results"])

    assert ids({"journey_stage": "purchase"}) == [buyer.pk]
    assert ids({"tag": "vip"}) == sorted([buyer.pk, browser.pk])
    assert ids({"tag": ["vip", "urgent"]}) == [buyer.pk]
    assert ids({"tag": "vip", "journey_stage": "interest"}) == [browser.pk]
    assert api.get(url("customer-list"), {"journey_stage": "bogus"}).status_code == 400


def test_list_leaves_merged_customers_out(api, customer):
    duplicate = make_customer("山田 花子 (dup)")
    customer_merge(source=duplicate, target=customer)
    rows = api.get(url("customer-list"), {"q": "山田"}).json()["results"]
    assert [row["id"] for row in rows] == [customer.pk]


@pytest.mark.parametrize("param", ["display_name__startswith", "id__in", "customer__password", "ordering", "limit"])
def test_list_unknown_query_parameter_is_400_naming_it(api, customer, param):
    response = api.get(url("customer-list"), {param: "x"})
    assert response.status_code == 400
    body = response.json()
    assert list(body) == [param]
    assert "Unknown query parameter" in body[param][0]


def test_list_page_number_pagination(api):
    for index in range(5):
        make_customer(f"Paged {index}", created_at=T0 + timedelta(minutes=index))
    first = api.get(url("customer-list"), {"page_size": 2}).json()
    assert first["count"] == 5
    assert [row["display_name"] for row in first["results"]] == ["Paged 4", "Paged 3"]
    assert "page=2" in first["next"]
    second = client_for_next(api, first["next"])
    assert [row["display_name"] for row in second["results"]] == ["Paged 2", "Paged 1"]
    last = api.get(url("customer-list"), {"page_size": 2, "page": 3}).json()
    assert [row["display_name"] for row in last["results"]] == ["Paged 0"] and last["next"] is None


def client_for_next(api, next_url):
    response = api.get(next_url)
    assert response.status_code == 200
    return response.json()


def test_list_page_size_default_50_and_capped_at_200(api):
    Customer.objects.bulk_create([Customer(display_name=f"Bulk {i}") for i in range(210)])
    assert len(api.get(url("customer-list")).json()["results"]) == 50
    assert len(api.get(url("customer-list"), {"page_size": 500}).json()["results"]) == 200


def test_list_cursor_pagination_walks_everything_once(api):
    for index in range(5):
        make_customer(f"Cursor {index}", created_at=T0 + timedelta(minutes=index))
    response = api.get(url("customer-list"), {"cursor": "", "page_size": 2}).json()
    assert "count" not in response
    seen = [row["display_name"] for row in response["results"]]
    while response["next"]:
        assert "cursor=" in response["next"]
        response = client_for_next(api, response["next"])
        seen += [row["display_name"] for row in response["results"]]
    assert seen == [f"Cursor {i}" for i in (4, 3, 2, 1, 0)]
    bad = api.get(url("customer-list"), {"cursor": "garbage"})
    assert bad.status_code == 400 and "cursor" in bad.json()


def _tagged_customers(count, start=0):
    tag = Tag.objects.get_or_create(name="vip")[0]
    for index in range(start, start + count):
        person = make_customer(f"Q {index}")
        make_identity(person, IdentityKind.EMAIL, f"q{index}@example.jp")
        make_identity(person, IdentityKind.PHONE, f"+8190{index:08d}")
        person.tags.add(tag)


def test_list_query_count_does_not_grow_with_customers(api, django_assert_num_queries):
    _tagged_customers(2)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(url("customer-list")).json()["results"]) == 2
    assert len(small) <= 12, [q["sql"] for q in small.captured_queries]
    _tagged_customers(18, start=2)
    with django_assert_num_queries(len(small)):
        response = api.get(url("customer-list"))
    assert len(response.json()["results"]) == 20
    assert all(len(row["identities"]) == 2 and row["tags"] == ["vip"] for row in response.json()["results"])


# --- customer detail -------------------------------------------------------------------------------


def test_detail_shows_profile_identities_notes_consents_and_recent_touchpoints(api, agent, customer):
    customer.tags.add(Tag.objects.create(name="vip"))
    customer.custom_attributes = {"plan": "gold"}
    customer.time_zone = "Asia/Tokyo"
    customer.save()
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp", source="claimed")
    CustomerNote.objects.create(customer=customer, author=agent.user, text="Prefers email")
    Consent.objects.create(customer=customer, channel="sms", address="+819012345678", status="opted_out",
                           source="keyword")
    for index in range(12):
        make_touchpoint(customer, f"page {index}", occurred_at=T0 + timedelta(minutes=index), device="iPhone")

    response = api.get(url("customer-detail", customer.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["display_name"] == "山田 花子" and body["language"] == "ja" and body["time_zone"] == "Asia/Tokyo"
    assert body["journey_stage"] == "interest" and body["tags"] == ["vip"]
    assert body["custom_attributes"] == {"plan": "gold"} and body["merged_into"] is None
    assert [(i["kind"], i["value"], i["verified"], i["source"]) for i in body["identities"]] == [
        ("email", "hanako@example.jp", False, "claimed"), ("phone", "+819012345678", True, "inbound"),
    ]
    assert body["notes"][0]["text"] == "Prefers email"
    assert body["notes"][0]["author"] == {"id": agent.user.pk, "username": "alice", "name": "alice"}
    assert [(c["channel"], c["status"]) for c in body["consents"]] == [("sms", "opted_out")]
    assert [t["title"] for t in body["recent_touchpoints"]] == [f"page {i}" for i in range(11, 1, -1)]
    assert body["recent_touchpoints"][0]["device"] == "iPhone"


def test_detail_of_merged_customer_shows_where_it_went(api, customer):
    duplicate = make_customer("dup")
    customer_merge(source=duplicate, target=customer)
    body = api.get(url("customer-detail", duplicate.pk)).json()
    assert body["merged_into"] == customer.pk


def test_detail_query_count_is_fixed(api, customer, django_assert_num_queries, settings):
    settings.CC_CUSTOMER_ACCESS_LOG_WINDOW_SECONDS = 0  # every view logged (one INSERT): the same on both
    with CaptureQueriesContext(connection) as small:
        assert api.get(url("customer-detail", customer.pk)).status_code == 200
    for index in range(15):
        make_touchpoint(customer, f"t{index}")
        CustomerNote.objects.create(customer=customer, text=f"n{index}")
        make_identity(customer, IdentityKind.EMAIL, f"x{index}@example.jp")
    with django_assert_num_queries(len(small)):
        assert api.get(url("customer-detail", customer.pk)).status_code == 200


def test_detail_unknown_id_is_404(api):
    assert api.get(url("customer-detail", 999999)).status_code == 404


# --- timeline --------------------------------------------------------------------------------------


def _history(customer, *, messages, touchpoints, agent=None):
    inboxes = [make_inbox("sms"), make_inbox("email"), make_inbox("webchat")]
    conversations = [make_conversation(customer, inbox) for inbox in inboxes]
    step = 0
    for index in range(messages):
        step += 1
        outbound = index % 2 == 1
        message = make_message(
            conversations[index % 3], f"m{index}", created_at=T0 + timedelta(minutes=step),
            direction=Direction.OUTBOUND if outbound else Direction.INBOUND,
            author_agent=agent if outbound else None,
        )
        Attachment.objects.create(message=message, filename=f"f{index}.jpg", content_type="image/jpeg", size=10)
    for index in range(touchpoints):
        step += 1
        make_touchpoint(customer, f"t{index}", occurred_at=T0 + timedelta(minutes=step))


def test_timeline_entries_carry_every_field(api, agent, customer):
    sms = make_conversation(customer, make_inbox("sms"))
    inbound = make_message(sms, "<b>hi</b>", created_at=T0 + timedelta(minutes=1))
    Attachment.objects.create(message=inbound, filename="photo.jpg", content_type="image/jpeg", size=1234,
                              state="pending")
    make_touchpoint(customer, "Viewed pricing", occurred_at=T0 + timedelta(minutes=2), url="https://shop/p",
                    location="Osaka", device="Android", channel="web", data={"sku": "A1"})
    reply = make_message(sms, "hello", created_at=T0 + timedelta(minutes=3), direction=Direction.OUTBOUND,
                         author_agent=agent, delivery_status="undelivered", delivery_error_code="30007",
                         delivery_error="Carrier filtered")
    event = make_message(sms, "", created_at=T0 + timedelta(minutes=4), kind=MessageKind.EVENT,
                         direction=Direction.INTERNAL, event_type=EventType.ASSIGNED, event_data={"agent": agent.pk})

    response = api.get(url("customer-timeline", customer.pk))
    assert response.status_code == 200
    body = response.json()
    assert body["older"] is None and body["newer"] is None
    results = body["results"]
    assert [entry["type"] for entry in results] == ["message", "touchpoint", "message", "message"]
    first = results[0]
    assert first == {
        "type": "message", "at": first["at"], "cursor": first["cursor"], "id": inbound.pk, "conversation": sms.pk,
        "channel": "sms", "direction": "inbound", "kind": "message", "author": None, "text": "<b>hi</b>",
        "html": "", "event_type": "", "event_data": {}, "delivery_status": "", "delivery_error_code": "",
        "delivery_error": "",
        "attachments": [{"id": inbound.attachments.get().pk, "filename": "photo.jpg", "content_type": "image/jpeg",
                         "size": 1234, "state": "pending"}],
    }
    assert datetime.fromisoformat(first["at"]) == inbound.created_at
    touchpoint = results[1]
    assert {k: touchpoint[k] for k in ("title", "url", "location", "device", "channel", "data", "kind")} == {
        "title": "Viewed pricing", "url": "https://shop/p", "location": "Osaka", "device": "Android",
        "channel": "web", "data": {"sku": "A1"}, "kind": "page_view",
    }
    assert results[2]["id"] == reply.pk and results[2]["author"] == "Alice"
    assert (results[2]["delivery_status"], results[2]["delivery_error_code"], results[2]["delivery_error"]) == (
        "undelivered", "30007", "Carrier filtered")
    assert results[3]["id"] == event.pk and results[3]["kind"] == "event"
    assert results[3]["event_type"] == "assigned" and results[3]["event_data"] == {"agent": agent.pk}


def test_timeline_pages_both_ways_through_links(api, customer):
    _history(customer, messages=7, touchpoints=3)
    response = api.get(url("customer-timeline", customer.pk), {"limit": 4}).json()
    assert [e.get("text") or e.get("title") for e in response["results"]] == ["m6", "t0", "t1", "t2"]
    assert response["newer"] is None and "before=" in response["older"] and "limit=4" in response["older"]
    pages = [response]
    while pages[0]["older"]:
        pages.insert(0, client_for_next(api, pages[0]["older"]))
    walked = [e.get("text") or e.get("title") for page in pages for e in page["results"]]
    assert walked == [f"m{i}" for i in range(7)] + ["t0", "t1", "t2"]
    oldest = pages[0]
    assert oldest["older"] is None and "after=" in oldest["newer"] and "before=" not in oldest["newer"]
    newer = client_for_next(api, oldest["newer"])
    assert [e.get("text") or e.get("title") for e in newer["results"]] == ["m2", "m3", "m4", "m5"]


@pytest.mark.parametrize("params", [{"before": "not-a-cursor"}, {"after": "eyJ4Ijox"}, {"limit": 0},
                                    {"limit": 201}, {"limit": "ten"}, {"customer": "1"}, {"id__gt": "1"}])
def test_timeline_bad_cursor_limit_or_unknown_parameter_is_400(api, customer, params):
    make_touchpoint(customer)
    assert api.get(url("customer-timeline", customer.pk), params).status_code == 400


def test_timeline_before_and_after_together_is_400(api, customer):
    make_touchpoint(customer)
    cursor = api.get(url("customer-timeline", customer.pk)).json()["results"][0]["cursor"]
    response = api.get(url("customer-timeline", customer.pk), {"before": cursor, "after": cursor})
    assert response.status_code == 400 and response.json()["detail"]


def test_timeline_query_count_does_not_grow_with_history(api, agent, django_assert_num_queries):
    small_customer, large_customer = make_customer("small"), make_customer("large")
    _history(small_customer, messages=3, touchpoints=2, agent=agent)
    _history(large_customer, messages=120, touchpoints=40, agent=agent)
    with CaptureQueriesContext(connection) as small:
        assert len(api.get(url("customer-timeline", small_customer.pk)).json()["results"]) == 5
    assert len(small) <= 12, [q["sql"] for q in small.captured_queries]
    with django_assert_num_queries(len(small)):
        response = api.get(url("customer-timeline", large_customer.pk), {"limit": 200})
    assert len(response.json()["results"]) == 160
    assert all(e["author"] == "Alice" for e in response.json()["results"] if e.get("direction") == "outbound")


# --- update (PATCH) --------------------------------------------------------------------------------


def test_patch_sets_the_editable_fields(api, customer):
    Tag.objects.create(name="vip")
    response = api.patch(url("customer-detail", customer.pk), {
        "display_name": "山田 花子 (Hanako)", "language": "en-US", "time_zone": "Europe/Paris",
        "journey_stage": "purchase", "tags": ["vip", "new-tag", "vip"], "custom_attributes": {"plan": "gold"},
    }, format="json")
    assert response.status_code == 200, response.json()
    customer.refresh_from_db()
    assert (customer.display_name, customer.language, customer.time_zone, customer.journey_stage) == (
        "山田 花子 (Hanako)", "en-US", "Europe/Paris", "purchase")
    assert customer.custom_attributes == {"plan": "gold"}
    assert sorted(customer.tags.values_list("name", flat=True)) == ["new-tag", "vip"]
    assert response.json()["tags"] == ["new-tag", "vip"]

    # Absent fields stay; tags is the full list.
    response = api.patch(url("customer-detail", customer.pk), {"tags": []}, format="json")
    customer.refresh_from_db()
    assert customer.display_name == "山田 花子 (Hanako)" and list(customer.tags.all()) == []


@pytest.mark.parametrize("payload", [
    {"merged_into": "OTHER"},
    {"id": 424242},
    {"created_at": "2000-01-01T00:00:00Z"},
    {"identities": [{"kind": "email", "value": "evil@example.jp", "verified": True}]},
    {"verified": True},
    {"display_name": "ok", "merged_into": "OTHER"},
])
def test_patch_rejects_fields_the_client_must_not_set(api, customer, payload):
    other = make_customer("other")
    payload = {k: (other.pk if v == "OTHER" else v) for k, v in payload.items()}
    before = Customer.objects.get(pk=customer.pk)
    response = api.patch(url("customer-detail", customer.pk), payload, format="json")
    assert response.status_code == 400
    forbidden = sorted(set(payload) - {"display_name"})
    assert sorted(response.json()) == forbidden
    after = Customer.objects.get(pk=customer.pk)
    assert (after.display_name, after.merged_into_id, after.created_at) == (
        before.display_name, None, before.created_at)
    assert list(customer.identities.values_list("value", "verified")) == [("+819012345678", True)]
    assert Customer.objects.filter(pk=424242).count() == 0


@pytest.mark.parametrize("payload, field", [
    ({"time_zone": "Mars/Olympus"}, "time_zone"), ({"language": "not a language"}, "language"),
    ({"journey_stage": "bogus"}, "journey_stage"), ({"custom_attributes": ["x"]}, "custom_attributes"),
    ({"tags": [""]}, "tags"), ({"display_name": "x" * 201}, "display_name"),
])
def test_patch_invalid_values_are_400_per_field(api, customer, payload, field):
    response = api.patch(url("customer-detail", customer.pk), payload, format="json")
    assert response.status_code == 400
    assert field in response.json()
    customer.refresh_from_db()
    assert customer.time_zone == "" and customer.journey_stage == "interest"


def test_patch_of_merged_customer_is_400(api, customer):
    duplicate = make_customer("dup")
    customer_merge(source=duplicate, target=customer)
    response = api.patch(url("customer-detail", duplicate.pk), {"display_name": "x"}, format="json")
    assert response.status_code == 400
    assert f"merged into #{customer.pk}" in response.json()["detail"]


def test_patch_needs_change_permission(agent, customer):
    _revoke("agent", "change_customer")
    response = client_for(agent.user).patch(url("customer-detail", customer.pk), {"display_name": "x"},
                                            format="json")
    assert response.status_code == 403
    customer.refresh_from_db()
    assert customer.display_name == "山田 花子"


# --- merges ----------------------------------------------------------------------------------------


def test_merge_moves_source_into_target_and_returns_the_record(api, agent, customer):
    source = make_customer("dup")
    make_identity(source, IdentityKind.EMAIL, "hanako@example.jp")
    make_conversation(source, make_inbox("email"))
    source.tags.add(Tag.objects.create(name="vip"))

    response = api.post(url("customer-merge", customer.pk), {"source": source.pk}, format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    record = CustomerMerge.objects.get()
    assert body["id"] == record.pk and body["source"] == source.pk and body["target"] == customer.pk
    assert body["performed_by"]["id"] == agent.user.pk and body["undone_at"] is None and body["created_at"]
    assert body["moved"]["profiles.identity"] == 1 and body["moved"]["tags"] == 1
    assert body["moved"]["conversations.conversation"] == 1
    source.refresh_from_db()
    assert source.merged_into_id == customer.pk

    fetched = api.get(url("customer-merge-detail", record.pk))
    assert fetched.status_code == 200 and fetched.json() == body


def test_merge_errors_are_400_with_the_reason(api, customer):
    response = api.post(url("customer-merge", customer.pk), {"source": customer.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["detail"] == "A customer cannot be merged into itself."

    duplicate, third = make_customer("dup"), make_customer("third")
    customer_merge(source=duplicate, target=customer)
    response = api.post(url("customer-merge", duplicate.pk), {"source": third.pk}, format="json")
    assert response.status_code == 400
    assert "already merged into" in response.json()["detail"]
    third.refresh_from_db()
    assert third.merged_into_id is None

    for payload in ({}, {"source": "abc"}, {"source": third.pk, "performed_by": 1}):
        assert api.post(url("customer-merge", customer.pk), payload, format="json").status_code == 400
    assert CustomerMerge.objects.count() == 1


def test_merge_with_unknown_source_or_target_is_404(api, customer):
    assert api.post(url("customer-merge", customer.pk), {"source": 999999}, format="json").status_code == 404
    assert api.post(url("customer-merge", 999999), {"source": customer.pk}, format="json").status_code == 404
    assert CustomerMerge.objects.count() == 0


def test_merge_and_undo_need_the_merge_permission(agent, supervisor, stranger, customer):
    source = make_customer("dup")
    outsider = client_for(stranger)
    assert outsider.post(url("customer-merge", customer.pk), {"source": source.pk}, format="json").status_code == 404
    _revoke("agent", "merge_customer")
    api = client_for(agent.user)
    assert api.post(url("customer-merge", customer.pk), {"source": source.pk}, format="json").status_code == 403
    assert CustomerMerge.objects.count() == 0
    record = customer_merge(source=source, target=customer)
    assert api.post(url("customer-merge-undo", record.pk)).status_code == 403
    assert outsider.post(url("customer-merge-undo", record.pk)).status_code == 404
    assert api.get(url("customer-merge-detail", record.pk)).status_code == 200  # reading is fine
    record.refresh_from_db()
    assert record.undone_at is None
    # The supervisor role still has it.
    assert client_for(supervisor.user).post(url("customer-merge-undo", record.pk)).status_code == 200


def test_undo_puts_back_and_second_undo_is_400(api, agent, customer):
    source = make_customer("dup")
    make_identity(source, IdentityKind.EMAIL, "dup@example.jp")
    record = api.post(url("customer-merge", customer.pk), {"source": source.pk}, format="json").json()

    response = api.post(url("customer-merge-undo", record["id"]))
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == record["id"] and body["undone_at"] is not None and body["undone_by"]["id"] == agent.user.pk
    source.refresh_from_db()
    assert source.merged_into_id is None and source.identities.get().value == "dup@example.jp"

    again = api.post(url("customer-merge-undo", record["id"]))
    assert again.status_code == 400 and again.json()["detail"] == "This merge was already undone."
    assert api.post(url("customer-merge-undo", 999999)).status_code == 404
    assert api.get(url("customer-merge-detail", 999999)).status_code == 404


# --- who may call what -----------------------------------------------------------------------------


def _object_requests(customer, record):
    return [
        ("get", url("customer-detail", customer.pk), None),
        ("patch", url("customer-detail", customer.pk), {"display_name": "pwned"}),
        ("get", url("customer-timeline", customer.pk), None),
        ("post", url("customer-merge", customer.pk), {"source": record.source_id}),
        ("get", url("customer-merge-detail", record.pk), None),
        ("post", url("customer-merge-undo", record.pk), None),
    ]


def _setup_objects(customer):
    make_touchpoint(customer)
    record = customer_merge(source=make_customer("merged away"), target=make_customer("kept"))
    return record


def test_stranger_gets_403_on_the_list_and_404_on_every_object(stranger, customer):
    record = _setup_objects(customer)
    api = client_for(stranger)
    assert api.get(url("customer-list")).status_code == 403
    for method, target, data in _object_requests(customer, record):
        response = getattr(api, method)(target, data, format="json")
        assert response.status_code == 404, (method, target, response.status_code)
    customer.refresh_from_db()
    record.refresh_from_db()
    assert customer.display_name == "山田 花子" and record.undone_at is None


def test_anonymous_is_refused_everywhere(customer):
    record = _setup_objects(customer)
    api = client_for(None)
    assert api.get(url("customer-list")).status_code in (401, 403)
    for method, target, data in _object_requests(customer, record):
        assert getattr(api, method)(target, data, format="json").status_code in (401, 403), (method, target)
    record.refresh_from_db()
    assert record.undone_at is None


@pytest.mark.parametrize("role", ["agent", "supervisor", "admin_user"])
def test_every_role_can_read(request, role, customer):
    user = request.getfixturevalue(role)
    user = getattr(user, "user", user)
    api = client_for(user)
    assert api.get(url("customer-list")).json()["results"][0]["id"] == customer.pk
    assert api.get(url("customer-detail", customer.pk)).status_code == 200
    assert api.get(url("customer-timeline", customer.pk)).status_code == 200


def test_token_auth_works_and_needs_no_csrf(agent, customer):
    token = Token.objects.create(user=agent.user)
    api = APIClient(enforce_csrf_checks=True)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    assert api.get(url("customer-list")).json()["results"][0]["id"] == customer.pk
    source = make_customer("dup")
    assert api.post(url("customer-merge", customer.pk), {"source": source.pk}, format="json").status_code == 201

    bad = APIClient()
    bad.credentials(HTTP_AUTHORIZATION="Token not-a-real-token")
    refused = bad.get(url("customer-list"))
    assert refused.status_code in (401, 403) and refused.json()["detail"] == "Invalid token."


def test_session_writes_without_csrf_token_are_403(agent, customer):
    source = make_customer("dup")
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(agent.user)
    assert api.get(url("customer-list")).status_code == 200  # safe methods need no token
    response = api.post(url("customer-merge", customer.pk), {"source": source.pk}, format="json",
                        HTTP_ORIGIN="https://evil.example")
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert api.patch(url("customer-detail", customer.pk), {"display_name": "x"}, format="json").status_code == 403
    assert CustomerMerge.objects.count() == 0
    customer.refresh_from_db()
    assert customer.display_name == "山田 花子"


def test_session_write_with_csrf_token_passes(agent, customer):
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(agent.user)
    api.get("/console/")  # a page with a form sets the csrftoken cookie
    token = api.cookies["csrftoken"].value
    response = api.patch(url("customer-detail", customer.pk), {"display_name": "new"}, format="json",
                         HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 200


# --- schema ----------------------------------------------------------------------------------------


def test_schema_renders_with_every_path(client):
    response = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    for expected in ["/api/v1/customers/", "/api/v1/customers/{customer_id}/",
                     "/api/v1/customers/{customer_id}/timeline/", "/api/v1/customers/{customer_id}/merge/",
                     "/api/v1/customer-merges/{merge_id}/", "/api/v1/customer-merges/{merge_id}/undo/"]:
        assert expected in paths
    assert set(paths["/api/v1/customers/{customer_id}/"]) >= {"get", "patch"}
    list_params = {p["name"] for p in paths["/api/v1/customers/"]["get"]["parameters"]}
    assert list_params >= {"q", "phone", "email", "journey_stage", "tag", "page", "page_size", "cursor"}


def test_schema_of_these_views_has_no_warnings():
    from drf_spectacular.drainage import GENERATOR_STATS
    from drf_spectacular.generators import SchemaGenerator

    GENERATOR_STATS.reset()
    schema = SchemaGenerator(patterns=[path("api/v1/", include("profiles.api.urls"))]).get_schema(public=True)
    assert schema["paths"]
    assert not GENERATOR_STATS._warn_cache and not GENERATOR_STATS._error_cache, dict(GENERATOR_STATS._warn_cache)
