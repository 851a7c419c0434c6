"""Admin for customers: every page loads, identity search, merge/unmerge actions, permissions."""

import pytest
from django.contrib import messages
from django.contrib.auth.models import Permission
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from profiles.models import (
    Consent,
    Customer,
    CustomerMerge,
    CustomerNote,
    Identity,
    IdentityKind,
    IdentitySource,
    MergeSuggestion,
    SuggestionStatus,
    Tag,
    Touchpoint,
)
from profiles.services import customer_merge

from ..factories import make_customer, make_identity, make_touchpoint, make_user

pytestmark = pytest.mark.django_db


def _url(model, view, *args):
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def admin_client(client, admin_user):
    client.force_login(admin_user)
    return client


def _messages(response):
    return [(m.level, str(m)) for m in response.context["messages"]]


def _change_form_data(response) -> dict:
    """The POST data the change page would submit unchanged: main form, inline management forms
    and every inline form, as a browser would encode them."""
    data = {}

    def add(bound_field, key):
        value = bound_field.value()
        if value is None or value is False:
            return
        if value is True:
            data[key] = "on"
        elif isinstance(value, list | tuple):
            data[key] = [str(v) for v in value]
        else:
            data[key] = str(value)

    form = response.context["adminform"].form
    for name in form.fields:
        add(form[name], form.add_prefix(name))
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        for name in formset.management_form.fields:
            add(formset.management_form[name], formset.management_form.add_prefix(name))
        for inline_form in formset.initial_forms:
            for name in inline_form.fields:
                add(inline_form[name], inline_form.add_prefix(name))
    return data


@pytest.fixture
def customer_with_history(customer, admin_user):
    """The ``customer`` fixture (phone +819012345678) with a touchpoint, note, consent and tag."""
    customer.tags.add(Tag.objects.create(name="VIP"))
    make_touchpoint(customer, "Viewed pricing", url="https://shop.example.jp/pricing")
    CustomerNote.objects.create(customer=customer, author=admin_user, text="Prefers SMS")
    Consent.objects.create(customer=customer, channel="sms", address="+819012345678", status="opted_in")
    return customer


# --- every page loads -------------------------------------------------------------------------


def _one_of_each(customer, admin_user) -> dict:
    other = make_customer("Taro Suzuki")
    make_identity(other, IdentityKind.EMAIL, "taro@example.jp")
    merge = customer_merge(source=other, target=customer, actor=admin_user)
    suggestion = MergeSuggestion.objects.create(
        customer=customer, candidate=make_customer("Hanako Y."), reason="signature_phone", evidence={"phone": "+81"}
    )
    return {
        Customer: customer,
        Tag: customer.tags.first(),
        Identity: customer.identities.first(),
        Touchpoint: customer.touchpoints.first(),
        CustomerNote: customer.notes.first(),
        Consent: customer.consents.first(),
        CustomerMerge: merge,
        MergeSuggestion: suggestion,
    }


def test_changelist_and_change_page_of_every_profiles_model_load(admin_client, customer_with_history, admin_user):
    rows = _one_of_each(customer_with_history, admin_user)
    for model, obj in rows.items():
        assert admin_client.get(_url(model, "changelist")).status_code == 200, model
        response = admin_client.get(_url(model, "change", obj.pk))
        assert response.status_code == 200, model
    # The merged source is shown (read-only) too.
    merged = rows[CustomerMerge].source
    assert admin_client.get(_url(Customer, "change", merged.pk)).status_code == 200


def test_add_pages_of_editable_models_load(admin_client):
    for model in (Customer, Tag, Identity, Touchpoint, CustomerNote):
        assert admin_client.get(_url(model, "add")).status_code == 200, model


def test_service_owned_records_cannot_be_added_or_edited_by_hand(admin_client, customer_with_history, admin_user):
    rows = _one_of_each(customer_with_history, admin_user)
    for model in (CustomerMerge, MergeSuggestion, Consent):
        assert admin_client.get(_url(model, "add")).status_code == 403, model
        obj = rows[model]
        assert admin_client.post(_url(model, "change", obj.pk), {}).status_code == 403, model
        assert admin_client.post(_url(model, "delete", obj.pk), {"post": "yes"}).status_code == 403, model
    assert CustomerMerge.objects.filter(pk=rows[CustomerMerge].pk).exists()


def test_changelist_filters_respond(admin_client, customer_with_history):
    url = _url(Customer, "changelist")
    tag = customer_with_history.tags.get()
    for query in ({"journey_stage__exact": "interest"}, {"language": "ja"}, {"tags__id__exact": tag.pk},
                  {"merged": "yes"}, {"merged": "no"}):
        # An invalid filter would redirect to ``?e=1``.
        assert admin_client.get(url, query).status_code == 200, query
    response = admin_client.get(url, {"merged": "no", "language": "ja"})
    assert list(response.context["cl"].result_list) == [customer_with_history]


# --- search -----------------------------------------------------------------------------------


def test_search_by_identity_value_finds_the_customer(admin_client, customer):
    other = make_customer("Someone else")
    make_identity(other, IdentityKind.PHONE, "+818011112222")
    url = _url(Customer, "changelist")

    for term in ("+8190123", "+819012345678", "090-1234-5678", "山田"):
        response = admin_client.get(url, {"q": term})
        assert response.status_code == 200
        assert list(response.context["cl"].result_list) == [customer], term


def test_search_by_email_identity_and_by_id(admin_client, customer):
    make_identity(customer, IdentityKind.EMAIL, "hanako@example.jp")
    make_customer("Distractor")
    url = _url(Customer, "changelist")
    for term in ("hanako@example", "Hanako@Example.JP", f"#{customer.pk}"):
        assert list(admin_client.get(url, {"q": term}).context["cl"].result_list) == [customer], term


def test_customer_content_is_escaped(admin_client):
    evil = make_customer("<script>alert(1)</script>")
    make_identity(evil, IdentityKind.EMAIL, "<img src=x onerror=alert(1)>@example.jp")
    response = admin_client.get(_url(Customer, "changelist"))
    content = response.content.decode()
    assert "<script>alert(1)</script>" not in content
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in content
    assert "<img src=x" not in content and "&lt;img src=x onerror=alert(1)&gt;@example.jp" in content


# --- editing ----------------------------------------------------------------------------------


def test_identity_added_inline_is_normalized_and_marked_as_entered_by_an_agent(admin_client, customer_with_history):
    customer = customer_with_history
    url = _url(Customer, "change", customer.pk)
    data = _change_form_data(admin_client.get(url))
    data["display_name"] = "山田 花子 (edited)"
    data.update({
        "identities-TOTAL_FORMS": str(int(data["identities-TOTAL_FORMS"]) + 1),
        "identities-1-kind": "phone",
        "identities-1-value": "080-1111-2222",
        "identities-1-source": IdentitySource.AGENT,
        "identities-1-customer": str(customer.pk),
        "notes-TOTAL_FORMS": str(int(data["notes-TOTAL_FORMS"]) + 1),
        "notes-1-text": "Called about a refund",
        "notes-1-customer": str(customer.pk),
    })

    response = admin_client.post(url, data)

    assert response.status_code == 302, response.context["adminform"].form.errors
    customer.refresh_from_db()
    assert customer.display_name == "山田 花子 (edited)"
    added = Identity.objects.get(value="+818011112222")
    assert added.customer == customer and added.source == IdentitySource.AGENT
    note = CustomerNote.objects.get(text="Called about a refund")
    assert note.customer == customer and note.author.username == "admin"
    # Read-only inlines and tags were left as they were.
    assert customer.touchpoints.count() == 1 and customer.consents.count() == 1
    assert list(customer.tags.values_list("name", flat=True)) == ["VIP"]


def test_invalid_identity_value_is_refused(admin_client, customer):
    response = admin_client.post(
        _url(Identity, "add"), {"customer": customer.pk, "kind": "phone", "value": "not a phone", "source": "agent"}
    )
    assert response.status_code == 200
    assert "value" in response.context["adminform"].form.errors
    assert customer.identities.count() == 1


def test_merged_customer_is_read_only(admin_client, customer, admin_user):
    source = make_customer("Old profile")
    customer_merge(source=source, target=customer, actor=admin_user)
    response = admin_client.get(_url(Customer, "change", source.pk))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert admin_client.post(_url(Customer, "change", source.pk), {"display_name": "x"}).status_code == 403


# --- merge and unmerge actions ----------------------------------------------------------------


def _action(client, model, action, objects, follow=True):
    return client.post(
        _url(model, "changelist"), {"action": action, "_selected_action": [obj.pk for obj in objects]}, follow=follow
    )


@pytest.fixture
def three_customers(customer):
    """``customer`` (oldest) and two newer duplicates, each with one identity."""
    now = timezone.now()
    Customer.objects.filter(pk=customer.pk).update(created_at=now - timezone.timedelta(days=30))
    second = make_customer("Hanako (email)", created_at=now - timezone.timedelta(days=2))
    make_identity(second, IdentityKind.EMAIL, "hanako@example.jp")
    third = make_customer("Hanako (chat)", created_at=now - timezone.timedelta(days=1))
    make_identity(third, IdentityKind.WEB_VISITOR, "visitor-123")
    make_touchpoint(third, "Viewed returns")
    return Customer.objects.get(pk=customer.pk), second, third


def test_merge_action_merges_into_the_oldest_and_undo_action_restores(admin_client, three_customers, admin_user):
    oldest, second, third = three_customers
    identities_before = {c.pk: set(c.identities.values_list("pk", flat=True)) for c in three_customers}

    # Selection order and changelist order do not matter: the earliest created is the target.
    response = _action(admin_client, Customer, "merge_into_oldest", [third, oldest, second])

    assert response.status_code == 200
    assert _messages(response) == [(messages.SUCCESS, f"Merged 2 customers into {oldest}.")]
    second.refresh_from_db()
    third.refresh_from_db()
    assert second.merged_into == oldest and third.merged_into == oldest
    assert set(oldest.identities.values_list("pk", flat=True)) == set().union(*identities_before.values())
    assert not second.identities.exists() and not third.identities.exists()
    assert oldest.touchpoints.filter(title="Viewed returns").exists()
    merges = CustomerMerge.objects.filter(target=oldest, undone_at__isnull=True)
    assert {m.source_id for m in merges} == {second.pk, third.pk}
    assert {m.performed_by for m in merges} == {admin_user}

    response = _action(admin_client, CustomerMerge, "undo_merges", list(merges))

    assert _messages(response) == [(messages.SUCCESS, "Undid 2 merges.")]
    for customer in three_customers:
        customer.refresh_from_db()
        assert customer.merged_into_id is None
        assert set(customer.identities.values_list("pk", flat=True)) == identities_before[customer.pk]
    assert third.touchpoints.filter(title="Viewed returns").exists()
    assert all(m.undone_by == admin_user for m in CustomerMerge.objects.all())


def test_merge_error_is_shown_and_nothing_is_changed(admin_client, three_customers, admin_user):
    oldest, second, third = three_customers
    elsewhere = make_customer("Elsewhere")
    customer_merge(source=third, target=elsewhere, actor=admin_user)  # third is already merged
    merges_before = CustomerMerge.objects.count()
    third_identities = set(Identity.objects.filter(customer=elsewhere).values_list("pk", flat=True))

    response = _action(admin_client, Customer, "merge_into_oldest", [oldest, third])

    [(level, text)] = _messages(response)
    assert level == messages.ERROR
    assert f"already merged into #{elsewhere.pk}" in text
    assert CustomerMerge.objects.count() == merges_before
    third.refresh_from_db()
    assert third.merged_into == elsewhere
    assert set(Identity.objects.filter(customer=elsewhere).values_list("pk", flat=True)) == third_identities
    assert list(oldest.identities.values_list("value", flat=True)) == ["+819012345678"]


def test_merge_of_a_good_pair_still_happens_when_another_pair_fails(admin_client, three_customers, admin_user):
    oldest, second, third = three_customers
    customer_merge(source=third, target=make_customer("Elsewhere"), actor=admin_user)

    response = _action(admin_client, Customer, "merge_into_oldest", [oldest, second, third])

    levels = sorted(level for level, _text in _messages(response))
    assert levels == [messages.SUCCESS, messages.ERROR]
    second.refresh_from_db()
    assert second.merged_into == oldest


def test_merge_action_needs_two_customers(admin_client, customer):
    response = _action(admin_client, Customer, "merge_into_oldest", [customer])
    assert _messages(response)[0][0] == messages.WARNING
    assert not CustomerMerge.objects.exists()


def test_undo_of_an_undone_merge_is_an_error(admin_client, three_customers, admin_user):
    oldest, second, _third = three_customers
    merge = customer_merge(source=second, target=oldest, actor=admin_user)
    _action(admin_client, CustomerMerge, "undo_merges", [merge])
    undone_at = CustomerMerge.objects.get(pk=merge.pk).undone_at

    response = _action(admin_client, CustomerMerge, "undo_merges", [merge])

    [(level, text)] = _messages(response)
    assert level == messages.ERROR and "already undone" in text
    assert CustomerMerge.objects.get(pk=merge.pk).undone_at == undone_at


def test_suggestion_actions_confirm_and_dismiss(admin_client, customer, admin_user):
    candidate = make_customer("Hanako (email)")
    make_identity(candidate, IdentityKind.EMAIL, "hanako@example.jp")
    to_confirm = MergeSuggestion.objects.create(customer=customer, candidate=candidate, reason="signature_phone")
    to_dismiss = MergeSuggestion.objects.create(
        customer=customer, candidate=make_customer("Other Hanako"), reason="same_name_same_domain"
    )

    response = _action(admin_client, MergeSuggestion, "confirm_suggestions", [to_confirm])
    assert _messages(response)[0][0] == messages.SUCCESS
    candidate.refresh_from_db()
    assert candidate.merged_into == customer
    assert customer.identities.filter(value="hanako@example.jp").exists()
    to_confirm.refresh_from_db()
    assert to_confirm.status == SuggestionStatus.CONFIRMED and to_confirm.decided_by == admin_user

    _action(admin_client, MergeSuggestion, "dismiss_suggestions", [to_dismiss])
    to_dismiss.refresh_from_db()
    assert to_dismiss.status == SuggestionStatus.DISMISSED
    assert to_dismiss.candidate.merged_into is None

    response = _action(admin_client, MergeSuggestion, "dismiss_suggestions", [to_confirm])
    assert _messages(response)[0][0] == messages.ERROR


# --- permissions ------------------------------------------------------------------------------


def test_agent_without_staff_flag_cannot_reach_the_admin(client, agent, customer):
    client.force_login(agent.user)
    assert agent.user.groups.filter(name="agent").exists() and not agent.user.is_staff
    for url in (reverse("admin:index"), _url(Customer, "changelist"), _url(Customer, "change", customer.pk)):
        response = client.get(url)
        assert response.status_code == 302 and response.url.startswith(reverse("admin:login")), url
    response = _action(client, Customer, "merge_into_oldest", [customer, make_customer("x")], follow=False)
    assert response.status_code == 302
    assert not CustomerMerge.objects.exists()


def test_stranger_cannot_reach_the_admin(client, stranger):
    client.force_login(stranger)
    assert client.get(reverse("admin:index")).status_code == 302


def test_merge_actions_need_the_merge_permission(client, three_customers):
    oldest, second, _third = three_customers
    viewer = make_user("viewer", role=None, is_staff=True)
    viewer.user_permissions.add(
        *Permission.objects.filter(content_type__app_label="profiles", codename__startswith="view_"),
        Permission.objects.get(content_type__app_label="profiles", codename="change_customer"),
        Permission.objects.get(content_type__app_label="profiles", codename="delete_customer"),
    )
    client.force_login(viewer)

    response = client.get(_url(Customer, "changelist"))
    assert response.status_code == 200
    action_names = [name for name, _label in response.context["action_form"].fields["action"].choices]
    assert "delete_selected" in action_names and "merge_into_oldest" not in action_names

    _action(client, Customer, "merge_into_oldest", [oldest, second])
    assert not CustomerMerge.objects.exists()
    second.refresh_from_db()
    assert second.merged_into is None


# --- query counts -----------------------------------------------------------------------------


def _changelist_queries(client) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(_url(Customer, "changelist")).status_code == 200
    return len(ctx.captured_queries)


def test_customer_changelist_query_count_does_not_grow_with_rows(admin_client, admin_user):
    vip = Tag.objects.create(name="VIP")

    def add_customers(n, start):
        for i in range(start, start + n):
            c = make_customer(f"Bulk {i}", language="en")
            c.tags.add(vip)
            make_identity(c, IdentityKind.EMAIL, f"bulk{i}@example.jp")
            make_identity(c, IdentityKind.PHONE, f"+8190000{i:05d}")
        return c

    target = add_customers(2, 0)
    customer_merge(source=add_customers(1, 2), target=target, actor=admin_user)
    few = _changelist_queries(admin_client)
    customer_merge(source=add_customers(5, 3), target=add_customers(5, 8), actor=admin_user)
    assert _changelist_queries(admin_client) == few
