"""Processing stored Twilio inbound events: idempotent task, retries with backoff, the recovery
tick, the admin, concurrency on PostgreSQL, and the whole path through a real worker."""

import threading
import time
from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from conversations.channels.twilio_messaging import recovery
from conversations.models import Message, TwilioInboundEvent
from conversations.channels.twilio_messaging import ingest as messaging
from conversations.channels.twilio_messaging.ingest import MAX_ATTEMPTS, twilio_inbound_event_process
from conversations.channels.twilio_messaging.tasks import process_twilio_inbound
from profiles.models import Customer

from ..conftest import wait_for
from .twilio_helpers import MESSAGING_PATH, process_inbound_events, run_inbound_task, signed_post, sms_params

pytestmark = pytest.mark.django_db

SID = "SM" + "a" * 32


@pytest.fixture(autouse=True)
def _our_numbers(db):
    from .twilio_helpers import configure_our_numbers

    configure_our_numbers()


def _store(client, sid: str = SID, **params) -> TwilioInboundEvent:
    """The webhook's half only: the stored event, not processed."""
    assert signed_post(client, MESSAGING_PATH, sms_params(sid, **params)).status_code == 200
    return TwilioInboundEvent.objects.get(message_sid=sid)


@pytest.fixture
def enqueued(monkeypatch):
    sent = []
    monkeypatch.setattr(process_twilio_inbound, "apply_async", lambda args=(), kwargs=None, **_: sent.append(args[0]))
    return sent


class BrokenIngest:
    """The ingest fails as an unexpected error would (a bug, a database hiccup) until ``fix()``."""

    def __init__(self, monkeypatch):
        self._monkeypatch, self._original = monkeypatch, messaging.message_receive
        monkeypatch.setattr(messaging, "message_receive", self.broken)

    @staticmethod
    def broken(inbound):
        raise RuntimeError("database hiccup")

    def fix(self):
        self._monkeypatch.setattr(messaging, "message_receive", self._original)


@pytest.fixture
def ingest_broken(monkeypatch):
    return BrokenIngest(monkeypatch)


def _make_due(event: TwilioInboundEvent) -> None:
    TwilioInboundEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() - timedelta(seconds=1))


# --- idempotency ----------------------------------------------------------------------------------

def test_processing_an_event_twice_gives_one_message(client):
    event = _store(client)
    assert run_inbound_task(event.pk) == "processed"
    assert run_inbound_task(event.pk) == "skipped"
    event.refresh_from_db()
    assert event.processed_at is not None and event.attempts == 1
    assert Message.objects.filter(provider_id=SID).count() == 1


def test_an_event_whose_message_is_already_stored_is_marked_processed_without_a_second_message(client):
    """Even past the claim (an event re-opened by hand …), the ingest's own MessageSid dedupe holds."""
    event = _store(client)
    process_inbound_events()
    TwilioInboundEvent.objects.filter(pk=event.pk).update(processed_at=None)
    assert run_inbound_task(event.pk) == "processed"
    assert Message.objects.filter(provider_id=SID).count() == 1


# --- failures -------------------------------------------------------------------------------------

def test_a_failing_event_keeps_its_error_and_is_retried_with_backoff(client, ingest_broken, monkeypatch):
    event = _store(client)
    retries = []
    monkeypatch.setattr(process_twilio_inbound, "retry",
                        lambda countdown: retries.append(countdown) or RuntimeError("retry"))
    before = timezone.now()
    with pytest.raises(RuntimeError, match="retry"):
        process_twilio_inbound(event.pk)
    event.refresh_from_db()
    assert retries == [30.0]
    assert event.attempts == 1 and event.processed_at is None and event.failed_at is None
    assert "RuntimeError: database hiccup" in event.last_error
    assert before + timedelta(seconds=30) <= event.next_attempt_at <= timezone.now() + timedelta(seconds=30)
    assert Message.objects.count() == 0 and Customer.objects.count() == 0  # the failed try left nothing behind

    # A copy of the task arriving before the backoff has passed does not count as a try.
    assert twilio_inbound_event_process(event_id=event.pk).status == "not_due"
    _make_due(event)
    assert twilio_inbound_event_process(event_id=event.pk).retry_in == 60.0  # the next wait doubles
    event.refresh_from_db()
    assert event.attempts == 2

    ingest_broken.fix()  # the cause is fixed
    _make_due(event)
    assert twilio_inbound_event_process(event_id=event.pk).status == "processed"
    event.refresh_from_db()
    assert (event.attempts, event.last_error) == (3, "")
    assert Message.objects.filter(provider_id=SID).count() == 1


def test_after_the_last_attempt_the_event_stays_failed_in_the_admin_and_can_be_processed_again(
        client, admin_client, ingest_broken, enqueued, django_capture_on_commit_callbacks):
    event = _store(client)
    for _ in range(MAX_ATTEMPTS):
        _make_due(event)
        twilio_inbound_event_process(event_id=event.pk)
    event.refresh_from_db()
    assert event.failed_at is not None and event.attempts == MAX_ATTEMPTS
    assert "database hiccup" in event.last_error
    TwilioInboundEvent.objects.filter(pk=event.pk).update(next_attempt_at=timezone.now() - timedelta(hours=1))
    assert recovery.requeue_unprocessed_inbound() == 0  # given up: not retried forever

    changelist = reverse("admin:conversations_twilioinboundevent_changelist")
    page = admin_client.get(changelist, {"state": "failed"})
    assert page.status_code == 200 and SID in page.content.decode() and "database hiccup" in page.content.decode()

    ingest_broken.fix()
    enqueued.clear()
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(changelist, {"action": "process_again", "_selected_action": [event.pk]})
    assert response.status_code == 302
    assert enqueued == [event.pk]
    assert run_inbound_task(event.pk) == "processed"
    assert Message.objects.filter(provider_id=SID).count() == 1


def test_stored_events_are_view_only_in_the_admin(client, admin_client):
    processed = _store(client)
    process_inbound_events()
    failed = _store(client, sid="SM" + "b" * 32, to="+815099999999")  # none of our numbers
    process_inbound_events()
    pending = _store(client, sid="SM" + "c" * 32)
    changelist = reverse("admin:conversations_twilioinboundevent_changelist")
    for state, event in (("processed", processed), ("failed", failed), ("pending", pending)):
        page = admin_client.get(changelist, {"state": state}).content.decode()
        assert event.message_sid in page
        change = reverse("admin:conversations_twilioinboundevent_change", args=[event.pk])
        assert admin_client.get(change).status_code == 200
    failed_page = admin_client.get(reverse("admin:conversations_twilioinboundevent_change", args=[failed.pk]))
    assert "No SMS inbox has the number" in failed_page.content.decode()
    assert admin_client.get(reverse("admin:conversations_twilioinboundevent_add")).status_code == 403
    url = reverse("admin:conversations_twilioinboundevent_change", args=[pending.pk])
    assert admin_client.post(url, {"attempts": 5}).status_code == 403
    delete = reverse("admin:conversations_twilioinboundevent_delete", args=[pending.pk])
    assert admin_client.post(delete, {"post": "yes"}).status_code == 403
    assert TwilioInboundEvent.objects.count() == 3


# --- recovery -------------------------------------------------------------------------------------

def test_recovery_requeues_events_left_unprocessed_and_only_those(client, enqueued):
    lost = _store(client, sid="SM" + "1" * 32)  # its task never ran (lost, or the worker died)
    fresh = _store(client, sid="SM" + "2" * 32)  # its task is surely still queued
    backing_off = _store(client, sid="SM" + "3" * 32)  # failed once, next try not due yet
    done = _store(client, sid="SM" + "4" * 32)
    run_inbound_task(done.pk)
    enqueued.clear()
    old = timezone.now() - timedelta(minutes=5)
    TwilioInboundEvent.objects.filter(pk__in=[lost.pk, done.pk]).update(received_at=old, next_attempt_at=old)
    TwilioInboundEvent.objects.filter(pk=backing_off.pk).update(
        received_at=old, attempts=1, next_attempt_at=timezone.now() + timedelta(seconds=20))

    assert recovery.requeue_unprocessed_inbound() == 1
    assert enqueued == [lost.pk]
    assert fresh.pk not in enqueued
    # Queued once per grace period, not on every tick while the task waits in a long queue.
    assert recovery.requeue_unprocessed_inbound() == 0
    assert run_inbound_task(lost.pk) == "processed"
    assert Message.objects.filter(provider_id=lost.message_sid).count() == 1


@pytest.mark.django_db(transaction=True)
def test_broker_down_at_the_webhook_the_event_is_committed_and_the_tick_processes_it_later(client, monkeypatch):
    from kombu.exceptions import OperationalError

    def refuse(*args, **kwargs):
        raise OperationalError("Error 111 connecting to broker: Connection refused")

    monkeypatch.setattr(process_twilio_inbound, "apply_async", refuse)
    assert signed_post(client, MESSAGING_PATH, sms_params(SID)).status_code == 200
    event = TwilioInboundEvent.objects.get()
    assert event.processed_at is None

    monkeypatch.undo()
    queued = []
    monkeypatch.setattr(process_twilio_inbound, "apply_async", lambda args=(), **_: queued.append(args[0]))
    TwilioInboundEvent.objects.update(next_attempt_at=timezone.now() - timedelta(minutes=1))
    assert recovery.requeue_unprocessed_inbound() == 1
    assert run_inbound_task(*queued) == "processed"
    assert Message.objects.get().provider_id == SID


def test_recovery_job_runs_on_the_tick():
    from contactcenter import tick

    assert "requeue_unprocessed_inbound" in tick.registered()
    assert "prune_processed_inbound" in tick.registered()


def test_processed_events_are_pruned_after_the_retention_failed_and_pending_ones_never(client, settings):
    settings.CC_INBOUND_EVENT_RETENTION_DAYS = 30
    old_processed, recent_processed, old_failed, old_pending = (
        _store(client, sid) for sid in ("SM" + "1" * 32, "SM" + "2" * 32, "SM" + "3" * 32, "SM" + "4" * 32))
    long_ago = timezone.now() - timedelta(days=31)
    TwilioInboundEvent.objects.filter(pk=old_processed.pk).update(processed_at=long_ago, received_at=long_ago)
    TwilioInboundEvent.objects.filter(pk=recent_processed.pk).update(processed_at=timezone.now())
    TwilioInboundEvent.objects.filter(pk=old_failed.pk).update(failed_at=long_ago, received_at=long_ago)
    TwilioInboundEvent.objects.filter(pk=old_pending.pk).update(received_at=long_ago)

    assert recovery.prune_processed_inbound() == 1
    assert set(TwilioInboundEvent.objects.values_list("pk", flat=True)) == {
        recent_processed.pk, old_failed.pk, old_pending.pk}
    # Throttled: the next tick within ten minutes does not look again.
    TwilioInboundEvent.objects.filter(pk=recent_processed.pk).update(processed_at=long_ago)
    assert recovery.prune_processed_inbound() == 0


# --- the real path: webhook → broker → worker ------------------------------------------------------

@pytest.mark.django_db(transaction=True)
def test_webhook_then_worker_puts_the_message_on_the_customers_timeline(client, celery_worker):
    from profiles.timeline import customer_timeline

    response = signed_post(client, MESSAGING_PATH, sms_params(SID, body="荷物が届きません"))
    assert response.status_code == 200
    message = wait_for(lambda: Message.objects.filter(provider_id=SID).first())
    assert message.text == "荷物が届きません"
    assert wait_for(lambda: TwilioInboundEvent.objects.filter(processed_at__isnull=False).exists())
    entries = customer_timeline(customer_id=message.customer_id).entries
    assert [(e.type, e.item.pk) for e in entries] == [("message", message.pk)]
    assert message.customer.identities.get().value == "+819012345678"


# --- PostgreSQL concurrency -----------------------------------------------------------------------

def _in_threads(target, count: int) -> list:
    from django.db import connections

    barrier = threading.Barrier(count)
    results, errors = [], []

    def run():
        try:
            barrier.wait()
            results.append(target())
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return results


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_concurrent_duplicate_posts_give_one_event_and_all_are_200(enqueued):
    statuses = _in_threads(lambda: signed_post(Client(), MESSAGING_PATH, sms_params(SID)).status_code, 6)
    assert statuses == [200] * 6
    assert TwilioInboundEvent.objects.count() == 1
    assert enqueued == [TwilioInboundEvent.objects.get().pk]  # processing queued once


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_concurrent_processing_of_one_event_gives_one_message(client):
    event = _store(client)
    outcomes = _in_threads(lambda: twilio_inbound_event_process(event_id=event.pk).status, 4)
    assert outcomes.count("processed") == 1 and set(outcomes) <= {"processed", "skipped"}
    assert Message.objects.filter(provider_id=SID).count() == 1
    event.refresh_from_db()
    assert event.attempts == 1


@pytest.mark.production
@pytest.mark.django_db(transaction=True)
def test_a_worker_finding_the_event_claimed_skips_it_without_waiting(client):
    from django.db import connections, transaction

    event = _store(client)
    locked, release = threading.Event(), threading.Event()

    def hold():
        try:
            with transaction.atomic():
                TwilioInboundEvent.objects.select_for_update().get(pk=event.pk)
                locked.set()
                release.wait(10)
        finally:
            connections.close_all()

    holder = threading.Thread(target=hold)
    holder.start()
    try:
        assert locked.wait(10)
        started = time.monotonic()
        assert twilio_inbound_event_process(event_id=event.pk).status == "skipped"
        assert time.monotonic() - started < 2
    finally:
        release.set()
        holder.join(10)
    assert Message.objects.count() == 0


# --- destinations that are none of our numbers (issue 21 §6) ----------------------------------------


@pytest.mark.parametrize("to", ["", "+815099999999", "junk", "whatsapp:", "+81 50 1234 0000"])
def test_a_message_to_a_number_no_inbox_has_is_a_failed_event_never_a_new_inbox(client, admin_client, to):
    from conversations.models import Inbox

    inboxes = set(Inbox.objects.values_list("pk", flat=True))
    params = sms_params(SID, to=to, body="停止")
    if not to:
        params.pop("To")
    response = signed_post(client, MESSAGING_PATH, params)
    assert response.status_code == 200
    assert "<Message>" not in response.content.decode()  # no confirmation on a number that is not ours
    assert process_inbound_events() == ["failed"]
    assert set(Inbox.objects.values_list("pk", flat=True)) == inboxes
    assert not Message.objects.exists() and not Customer.objects.exists()
    event = TwilioInboundEvent.objects.get(message_sid=SID)
    assert event.failed_at is not None and event.processed_at is None
    assert "No SMS inbox has the number" in event.last_error
    # Visible where admins look, with its reason.
    page = admin_client.get(reverse("admin:conversations_twilioinboundevent_changelist"), {"state": "failed"})
    assert SID in page.content.decode()


def test_a_failed_event_for_a_number_configured_later_is_processed_again(client, admin_client):
    from conversations.models import Inbox

    signed_post(client, MESSAGING_PATH, sms_params(SID, to="+815099999999"))
    assert process_inbound_events() == ["failed"]
    Inbox.objects.create(kind="sms", address="+815099999999", name="New number")
    event = TwilioInboundEvent.objects.get(message_sid=SID)
    messaging.twilio_inbound_events_retry(event_ids=[event.pk])
    assert run_inbound_task(event.pk) == "processed"
    assert Message.objects.get().inbox.address == "+815099999999"


# --- senders our phone metadata does not know (issue 21 §10) ------------------------------------------


def test_a_burst_from_senders_our_metadata_does_not_list_reaches_the_conversations(client):
    """``+8190…0…`` numbers are possible Japanese numbers that ``phonenumbers`` does not list as
    valid; a short code and an alphanumeric sender do not parse at all. The provider delivered
    them: every message is stored, each sender's in one conversation."""
    from conversations.models import Conversation
    from profiles.models import Identity

    senders = ["+819007397108", "+819007397109", "+819012345678", "+14155550100", "+819087654321",
               "+819000000001", "12345", "ShopAlert"]
    sent = 0
    for round_ in range(5):
        for index, sender in enumerate(senders):
            sid = f"SM{round_:02d}{index:02d}" + "e" * 28
            assert signed_post(client, MESSAGING_PATH, sms_params(sid, sender=sender, body=f"{sender} #{round_}")
                               ).status_code == 200
            sent += 1
    outcomes = process_inbound_events()
    assert outcomes == ["processed"] * sent
    assert Message.objects.count() == sent
    assert not TwilioInboundEvent.objects.filter(failed_at__isnull=False).exists()
    for sender in senders:
        identity = Identity.objects.get(value=sender)  # E.164 as given, or the raw address
        conversation = Conversation.objects.get(customer=identity.customer)
        assert sorted(conversation.messages.values_list("text", flat=True)) == [f"{sender} #{n}" for n in range(5)]


def test_an_agent_finds_the_customer_of_a_possible_number_in_any_written_form(client, agent):
    from rest_framework.test import APIClient

    signed_post(client, MESSAGING_PATH, sms_params(SID, sender="+819007397108"))
    process_inbound_events()
    api = APIClient()
    api.force_login(agent.user)
    for written in ("090-0739-7108", "+81 90 0739 7108"):
        response = api.get(reverse("api-customer-list"), {"phone": written})
        assert response.status_code == 200, response.content
        assert [row["identities"][0]["value"] for row in response.json()["results"]] == ["+819007397108"]
