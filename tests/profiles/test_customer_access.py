"""Who sees a customer (issue 21's decision): the directory is open to all staff by default;
``CC_CUSTOMER_ACCESS = "served"`` limits agents to the customers of the queues they serve and
those they served (the scope ``conversations`` registers in ``profiles.access_registry``);
supervisors and admins see all. Every view of a customer's 360 or timeline is logged, once per
viewer, customer and door kind within a window, and only supervisors and admins read the log."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from conversations.models import AgentSkill, Offer, Queue, Skill
from profiles.models import CustomerAccess, CustomerAccessDoor

from ..factories import make_agent, make_conversation, make_customer, make_inbox, make_message

pytestmark = pytest.mark.django_db


def api(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def served(settings):
    settings.CC_CUSTOMER_ACCESS = "served"


@pytest.fixture
def people(db):
    """Alice serves Billing (she has its skill); Bob does not. Hanako wrote to Billing, Taro to
    Sales (Bob once replied to him), Jiro was offered to Bob; Kumi never wrote at all."""
    skill = Skill.objects.create(name="Billing", slug="billing")
    billing = Queue.objects.create(name="Billing", slug="billing")
    billing.required_skills.add(skill)
    sales_skill = Skill.objects.create(name="Sales", slug="sales")
    sales = Queue.objects.create(name="Sales", slug="sales")
    sales.required_skills.add(sales_skill)
    alice, bob = make_agent("alice"), make_agent("bob")
    AgentSkill.objects.create(agent=alice, skill=skill)
    inbox = make_inbox("sms")
    hanako, taro, jiro, kumi = (make_customer(name) for name in ("Hanako", "Taro", "Jiro", "Kumi"))
    make_message(make_conversation(hanako, inbox, queue=billing), "refund?")
    taro_conversation = make_conversation(taro, inbox, queue=sales)
    make_message(taro_conversation, "price?")
    make_message(taro_conversation, "It is 100 yen.", direction="outbound", author_agent=bob)
    jiro_conversation = make_conversation(jiro, inbox, queue=sales)
    Offer.objects.create(conversation=jiro_conversation, agent=bob, queue=sales, channel="sms", step="queue",
                         expires_at=timezone.now() + timedelta(minutes=2))
    return {"alice": alice, "bob": bob, "carol": make_agent("carol", role="supervisor"),
            "hanako": hanako, "taro": taro, "jiro": jiro, "kumi": kumi}


def sees(user, customer) -> dict:
    """What each door answers ``user`` about ``customer``."""
    from django.test import Client

    client = Client()
    client.force_login(user)
    return {
        "console": client.get(reverse("console:customer", args=[customer.pk])).status_code,
        "older": client.get(reverse("console:older", args=[customer.pk])).status_code,
        "detail": api(user).get(f"/api/v1/customers/{customer.pk}/").status_code,
        "timeline": api(user).get(f"/api/v1/customers/{customer.pk}/timeline/").status_code,
    }


ALLOWED = {"console": 200, "older": 200, "detail": 200, "timeline": 200}
REFUSED = {"console": 404, "older": 404, "detail": 404, "timeline": 404}


def test_by_default_every_agent_sees_every_customer(people):
    for customer in ("hanako", "taro", "jiro", "kumi"):
        assert sees(people["alice"].user, people[customer]) == ALLOWED


def test_served_agents_see_the_customers_of_their_queues_and_those_they_served(people, served):
    alice, bob = people["alice"].user, people["bob"].user
    assert sees(alice, people["hanako"]) == ALLOWED  # wrote to a queue she serves
    assert sees(alice, people["taro"]) == REFUSED and sees(alice, people["kumi"]) == REFUSED
    assert sees(bob, people["taro"]) == ALLOWED  # he replied to him
    assert sees(bob, people["jiro"]) == ALLOWED  # offered to him
    assert sees(bob, people["hanako"]) == REFUSED
    # The directory lists only those, through the API and the console.
    listed = {row["display_name"] for row in api(alice).get("/api/v1/customers/").json()["results"]}
    assert listed == {"Hanako"}
    from django.test import Client

    client = Client()
    client.force_login(alice)
    page = client.get(reverse("console:customers")).content.decode()
    assert "Hanako" in page and "Taro" not in page and "Kumi" not in page


def test_served_leaves_supervisors_and_admins_seeing_everyone(people, served, admin_user):
    for customer in ("hanako", "taro", "jiro", "kumi"):
        assert sees(people["carol"].user, people[customer]) == ALLOWED
        assert sees(admin_user, people[customer]) == ALLOWED


def test_profiles_imports_nothing_of_conversations():
    """The restriction plugs in through the registry: ``profiles`` never imports ``conversations``."""
    import pathlib

    root = pathlib.Path(__file__).resolve().parents[2] / "profiles"
    offenders = [str(path) for path in root.rglob("*.py")
                 if "from conversations" in path.read_text() or "import conversations" in path.read_text()]
    assert offenders == []


# --- the access log -----------------------------------------------------------------------------------------

def log_rows(customer) -> list[tuple[str, str]]:
    return list(CustomerAccess.objects.filter(customer=customer).order_by("id").values_list("username", "door"))


def test_each_door_writes_one_row(people, settings):
    from django.test import Client

    settings.CC_CUSTOMER_ACCESS_LOG_WINDOW_SECONDS = 0  # every view its own row: each door seen on its own
    alice, hanako = people["alice"], people["hanako"]
    conversation = hanako.conversations.get()
    conversation.assignee = alice
    conversation.save(update_fields=["assignee"])
    client = Client()
    client.force_login(alice.user)
    assert client.get(reverse("console:conversation", args=[conversation.pk])).status_code == 200
    assert client.get(reverse("console:customer", args=[hanako.pk])).status_code == 200
    assert client.get(reverse("console:customer", args=[hanako.pk]), {"fragment": "panes"}).status_code == 200
    assert client.get(reverse("console:older", args=[hanako.pk])).status_code == 200
    assert client.get(reverse("console:catchup", args=[hanako.pk])).status_code == 200
    assert api(alice.user).get(f"/api/v1/customers/{hanako.pk}/").status_code == 200
    assert api(alice.user).get(f"/api/v1/customers/{hanako.pk}/timeline/").status_code == 200
    assert log_rows(hanako) == [
        ("alice", CustomerAccessDoor.CONSOLE_CONVERSATION), ("alice", CustomerAccessDoor.CONSOLE_CUSTOMER),
        ("alice", CustomerAccessDoor.CONSOLE_CUSTOMER), ("alice", CustomerAccessDoor.CONSOLE_TIMELINE),
        ("alice", CustomerAccessDoor.CONSOLE_TIMELINE), ("alice", CustomerAccessDoor.API_CUSTOMER),
        ("alice", CustomerAccessDoor.API_TIMELINE)]
    # The directory list is not a view of anyone's 360 or timeline; a refused view logs nothing.
    api(alice.user).get("/api/v1/customers/")
    settings.CC_CUSTOMER_ACCESS = "served"
    assert sees(alice.user, people["taro"]) == REFUSED
    assert CustomerAccess.objects.count() == 7


def test_the_same_viewer_within_the_window_is_one_row_per_door_kind(people):
    from django.test import Client

    alice, bob, hanako = people["alice"], people["bob"], people["hanako"]
    client = Client()
    client.force_login(alice.user)
    for _ in range(3):  # opening, reopening and scrolling up: one console visit
        client.get(reverse("console:customer", args=[hanako.pk]))
        client.get(reverse("console:older", args=[hanako.pk]))
    api(alice.user).get(f"/api/v1/customers/{hanako.pk}/timeline/")
    api(alice.user).get(f"/api/v1/customers/{hanako.pk}/timeline/")
    api(bob.user).get(f"/api/v1/customers/{hanako.pk}/")
    assert log_rows(hanako) == [("alice", CustomerAccessDoor.CONSOLE_CUSTOMER),
                                ("alice", CustomerAccessDoor.API_TIMELINE), ("bob", CustomerAccessDoor.API_CUSTOMER)]
    # After the window the same visit is logged again.
    from django.core.cache import cache

    cache.clear()  # the window's marks live in the cache: as if it had passed
    client.get(reverse("console:older", args=[hanako.pk]))
    assert log_rows(hanako)[-1] == ("alice", CustomerAccessDoor.CONSOLE_TIMELINE)


def test_supervisors_and_admins_read_the_log_agents_do_not(people, admin_user):
    from django.test import Client

    alice, carol, hanako = people["alice"], people["carol"], people["hanako"]
    api(alice.user).get(f"/api/v1/customers/{hanako.pk}/")
    url = f"/api/v1/customers/{hanako.pk}/access-log/"
    assert api(alice.user).get(url).status_code == 403
    for reader in (carol.user, admin_user):
        response = api(reader).get(url)
        assert response.status_code == 200
        assert [(row["username"], row["door"]) for row in response.json()["results"]] == [("alice", "api_customer")]
    # The Django admin: supervisors and admins see it, read-only; agents are not even staff.
    changelist = reverse("admin:profiles_customeraccess_changelist")
    row = CustomerAccess.objects.get()
    for reader in (carol.user, admin_user):
        client = Client()
        client.force_login(reader)
        assert client.get(changelist).status_code == 200
        assert client.get(reverse("admin:profiles_customeraccess_change", args=[row.pk])).status_code == 200
        assert client.get(reverse("admin:profiles_customeraccess_add")).status_code == 403
        assert client.post(reverse("admin:profiles_customeraccess_delete", args=[row.pk]),
                           {"post": "yes"}).status_code == 403
    assert CustomerAccess.objects.count() == 1
    client = Client()
    client.force_login(alice.user)
    assert client.get(changelist).status_code == 302  # to the admin login: no admin for agents
    assert not alice.user.has_perm("profiles.view_customeraccess")
