"""bench/surveys: 20,000 resolved SMS conversations whose surveys are all due at once.

Correctness: two ticks at once (two threads, each claiming a batch, then sending it as the send
task does) until nothing is due: every survey is sent exactly once (``duplicates=0``,
``missing=0``), through the outbound path (a stored outbound message each). Reports the rate
(surveys sent per second).

Timing: the production tick (``surveys_due_job``: claim a batch of 500 and queue its sending by
name, in batches) against a tick that only claims the same rows (``surveys_claim_due``), over the
same 20,000 due rows, in alternating rounds (the rows are made due again before each side): the
ratio of their p95 tick durations, target ≤ 3. ``BENCH_SMOKE=1``: 200 conversations, two rounds.
"""

import sys
import threading
import time

from _harness import ROUNDS, SMOKE, RoundRatios, alternate, bench_database, bench_line, percentile

CONVERSATIONS = 200 if SMOKE else 20_000
BATCH = 50 if SMOKE else 500
TARGET = 3.0


def populate() -> list[int]:
    from django.contrib.auth.models import User
    from django.utils import timezone

    from conversations.models import Agent, Conversation, Direction, Inbox, Message
    from profiles.models import Customer, Identity
    from surveys.links import new_token
    from surveys.models import SurveyDefinition, SurveyPolicy, SurveyRequest
    import datetime

    now = timezone.now()
    SurveyPolicy.objects.create(quiet_start=datetime.time(0, 0), quiet_end=datetime.time(0, 1))
    definition = SurveyDefinition.objects.create(name="CSAT", kind="csat", question_en="How satisfied were you?")
    agent = Agent.objects.create(user=User.objects.create_user("bench-agent"), display_name="Bench Agent")
    inbox = Inbox.objects.create(name="SMS", kind="sms", address="+815000000001")
    customers = Customer.objects.bulk_create(
        [Customer(display_name=f"Customer {i}", time_zone="UTC") for i in range(CONVERSATIONS)], batch_size=2000)
    Identity.objects.bulk_create([Identity(customer=c, kind="phone", value=f"+8190{i:08d}", verified=True)
                                  for i, c in enumerate(customers)], batch_size=2000)
    conversations = Conversation.objects.bulk_create(
        [Conversation(customer=c, inbox=inbox, channel="sms", status="resolved", resolved_at=now, last_message_at=now,
                      assignee=agent, last_seq=1) for c in customers], batch_size=2000)
    Message.objects.bulk_create(
        [Message(conversation=c, customer_id=c.customer_id, inbox=inbox, channel="sms", direction=Direction.OUTBOUND,
                 author_agent=agent, text="Solved", seq=1, created_at=now) for c in conversations], batch_size=2000)
    requests = SurveyRequest.objects.bulk_create(
        [SurveyRequest(conversation=c, customer_id=c.customer_id, channel="sms", definition=definition, agent=agent,
                       due_at=now, token=new_token()) for c in conversations], batch_size=2000)
    return [r.pk for r in requests]


def make_due() -> None:
    from django.utils import timezone

    from surveys.models import SurveyRequest

    SurveyRequest.objects.update(status="scheduled", claimed_at=None, due_at=timezone.now())


def ticks(tick) -> list[float]:
    """Run ``tick`` until it finds nothing due; the durations (ms) of the ticks that found work."""
    durations = []
    while True:
        start = time.perf_counter()
        found = tick()
        elapsed = (time.perf_counter() - start) * 1000
        if not found:
            return durations
        durations.append(elapsed)


def main() -> int:
    with bench_database() as connection:
        from django.db import connections

        from contactcenter.celery import app
        from conversations.models import Message
        from surveys.delivery import survey_send
        from surveys.models import SurveyRequest
        from surveys.scheduling import surveys_claim_due, surveys_due_job

        populate()
        if connection.vendor == "postgresql":
            with connection.cursor() as cursor:
                cursor.execute("ANALYZE")

        # Correctness and rate: two ticks at once, each sending what it claimed.
        make_due()
        sent_by = []

        def worker():
            try:
                while True:
                    ids = surveys_claim_due(limit=BATCH)
                    if not ids:
                        return
                    for request_id in ids:
                        if survey_send(request_id=request_id) == "sent":
                            sent_by.append(request_id)
            finally:
                connections.close_all()

        started = time.perf_counter()
        threads = [threading.Thread(target=worker) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.perf_counter() - started
        survey_messages = Message.objects.filter(direction="outbound", author_agent__isnull=True)
        per_conversation = survey_messages.values("conversation").distinct().count()
        duplicates = (len(sent_by) - len(set(sent_by))) + (survey_messages.count() - per_conversation)
        missing = CONVERSATIONS - SurveyRequest.objects.filter(status="sent").count()
        rate = len(set(sent_by)) / elapsed if elapsed else 0.0

        # Timing: the tick (claim + queue the sending by name) against a tick that only claims.
        def claim_only(_round):
            make_due()
            return percentile(ticks(lambda: surveys_claim_due(limit=BATCH)), 95)

        def production_tick(_round):
            make_due()
            try:
                return percentile(ticks(lambda: surveys_due_job(limit=BATCH)), 95)
            finally:
                app.control.purge()  # nobody consumes the queued sends here: they were measured, not run

        pairs = alternate(ROUNDS, claim_only, production_tick)
        ratio = RoundRatios(*zip(*pairs, strict=True), label="tick p95")
        print(f"database: {connection.vendor}; {CONVERSATIONS} conversations due at once, batches of {BATCH}")
        print(f"sent {len(set(sent_by))} in {elapsed:.1f}s by two concurrent ticks: {rate:.0f}/s")
        print(ratio.describe())
        print(bench_line("surveys", ratio=ratio, target=TARGET, rate_per_s=round(rate, 1), duplicates=duplicates,
                         missing=missing, conversations=CONVERSATIONS))
        return 0 if duplicates == 0 and missing == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
