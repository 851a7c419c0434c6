"""bench/routing: 100 agents (3 skills, capacity 3 on SMS) routed by two real Celery workers
(prefork ``-c 2`` each, ``CC_DB_CONN_MAX_AGE=60`` as in the Procfile; ``BENCH_WORKER_POOL`` and
``BENCH_WORKER_CONCURRENCY`` change them).

(a) arrivals: 20 new SMS conversations/s for 30 s through the real ingest path (``message_receive``,
    which enqueues ``route_conversation_task`` after commit), from ARRIVAL_SENDERS sender processes
    (open-loop schedule, like the worker processes that ingest webhooks; ``BENCH_SENDERS=threads``:
    threads of this process, as until 2026-12). Latency = the conversation's commit → the
    commit of its first offer. So that the figure is routing latency, not queueing for capacity,
    capacity keeps flowing: a conversation whose offer has been pending HOLD_SECONDS is resolved
    (which cancels the offer and frees the slot; like any offer closed early, it also enqueues
    ``route_for_agent_task`` for that agent, which finds nothing waiting here). 20/s x 3 s = 60
    offers in flight for 300 slots, so agents never run out; ``waited`` counts arrivals that still
    had no offer when the phase drained (expected 0 on an unloaded machine).
(b) freeing: every agent full (3 accepted conversations each) and a backlog of 500 waiting
    conversations (bulk-created as routing leaves them when nobody is free); then one assigned
    conversation is resolved every 0.1 s (round robin, 30 s, so each agent is freed 3 times).
    ``conversation_resolve`` enqueues ``route_for_agent_task``. Latency = the resolve's commit →
    the commit of the next offer made to that agent.

The database is not empty: before the phases it holds HISTORY conversations handled over the past
week (resolved, with their offers and messages), as any contact center that has run for a while
does, and ANALYZE runs before each phase, as autovacuum keeps statistics in production. From an
empty database (``BENCH_HISTORY=0``) the planner saw empty tables when the routers first prepared
their statements, and kept those sequential-scan plans while the tables grew under the phases
(prepared statements are planned once per connection until statistics change): the lock
statement took 1.26 ms of PostgreSQL's time there against 0.44 ms with history (auto_explain,
2026-12-03), a state no running system is in for long, and autovacuum re-planned at a moment of
its choosing mid-phase, one more source of run-to-run noise.

Commit times are exact: triggers installed in the throwaway test database send ``pg_notify`` on
conversation insert, conversation → resolved, offer insert and worker-heartbeat insert; PostgreSQL
delivers a notification only when the transaction commits, and a separate listener process stamps
each one with ``time.time()`` on arrival (same machine clock for every event, no polling delay).

For reference only (not in the ratio), the baseline's no-op round trip is also sampled PROBE_RATE
times a second during each phase (NoopProbe): what the machine's load alone does to a task that
decides nothing, beside routing's own p95.

Baseline, measured in the same run: the median Celery round trip of the existing
``contactcenter.record_heartbeat`` task (apply_async → a worker runs it → its row insert commits,
seen by the same listener), plus the median of one ``SELECT … FOR UPDATE SKIP LOCKED`` claim of a
waiting conversation row in its own transaction from this process (a conversation parked in a
queue no agent can serve, so that the row is there in every round and routing never touches it).

Rounds: each phase runs in ROUNDS short rounds (ARRIVAL_SECONDS / FREE_SECONDS each, 5 x 6 s = the
30 s of one phase), and the baseline is measured before every round (baseline, round, baseline,
round …; ``_harness.alternate``), so a round's p95 is divided by the baseline measured beside it:
a stretch when the machine is slow (other processes, the hypervisor) weighs on both. A phase's
ratio is the median of its per-round ratios; the bench's ratio the worse phase's, printed with its
spread (min-max); target 2. The latency figures are over every round. After each phase the
invariants are checked (``double_assignments`` must be 0, else exit 1). Prints ``BENCH routing
ratio=… target=2 spread=…-… …``. ``BENCH_SMOKE=1``: 10 agents, a short history, two rounds of 1 s
per phase (``_harness``).
"""

import os
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict

from _harness import (
    REPO,
    ROUNDS,
    SMOKE,
    MachineCpu,
    Processes,
    RoundRatios,
    alternate,
    bench_database,
    bench_line,
    celery_queues,
    database_url,
    median_ms,
    percentile,
)

# This process stands in for the web processes (it ingests the arrivals and resolves): its database
# connections live on, as the Procfile's web pool keeps them, and so prepare the statements they
# repeat (contactcenter/settings.py). Without it every ingest statement was planned afresh here,
# CPU a web process on the Procfile's settings does not spend.
os.environ.setdefault("CC_DB_CONN_MAX_AGE", "60")

AGENTS = 10 if SMOKE else 100
CAPACITY = 3
ARRIVAL_RATE = 10 if SMOKE else 20  # per second
ARRIVAL_SECONDS = 1 if SMOKE else 6  # per round of phase (a)
HOLD_SECONDS = 0.5 if SMOKE else 3.0  # phase (a): how long an offer stays pending before its conversation is resolved
BACKLOG = 40 if SMOKE else 500
FREE_RATE = 10  # per second
FREE_SECONDS = 1 if SMOKE else 6  # per round of phase (b)
WORKERS = 1 if SMOKE else 2
ARRIVAL_SENDERS = 2
# Each sender is a process of its own, as the ingest runs in production (the webhook's task, in a
# worker process, one message at a time). As threads of this process they shared one GIL with each
# other and with the desk, so a committed ingest could wait for another thread's Python before it
# enqueued its routing, and that wait was measured as routing latency (commit -> task enqueued
# p50 1.5-1.7 ms, p95 2.8-3.7 ms with threads; 1.3 ms and 2.4-2.6 ms with processes, 2026-12-03).
# ``BENCH_SENDERS=threads`` runs them as threads, as until 2026-12.
SENDERS = os.environ.get("BENCH_SENDERS", "processes")
# As the Procfile runs them: celery's default prefork pool, four routers in all. (``-P threads``
# measured 1.3x worse at p95 here: a decision is mostly Python, and threads wait for one GIL.)
WORKER_POOL = os.environ.get("BENCH_WORKER_POOL", "prefork")
WORKER_CONCURRENCY = int(os.environ.get("BENCH_WORKER_CONCURRENCY", "2"))
NOOP_SAMPLES = 5 if SMOKE else 12  # per baseline round (2 x 5 rounds x 12: 120 in all)
PROBE_RATE = 2  # per second, during the phases (NoopProbe)
CLAIM_SAMPLES = 5 if SMOKE else 20  # per baseline round
DRAIN_SECONDS = 10 if SMOKE else 20
TARGET = 2.0
# A contact center that has been running: HISTORY conversations handled over the past week (see
# seed_history and the module docstring). ``BENCH_HISTORY=0`` starts from an empty database, as
# the bench did until 2026-12-03.
HISTORY = int(os.environ.get("BENCH_HISTORY", "200" if SMOKE else "20000"))
HISTORY_DAYS = 7

TRIGGERS = """
CREATE OR REPLACE FUNCTION bench_notify_conversation_insert() RETURNS trigger AS $$
BEGIN PERFORM pg_notify('bench_conv', NEW.id::text); RETURN NULL; END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_conversation_insert AFTER INSERT ON conversations_conversation
    FOR EACH ROW EXECUTE FUNCTION bench_notify_conversation_insert();

CREATE OR REPLACE FUNCTION bench_notify_conversation_resolved() RETURNS trigger AS $$
BEGIN PERFORM pg_notify('bench_resolved', NEW.id || ' ' || COALESCE(NEW.assignee_id, 0)); RETURN NULL; END
$$ LANGUAGE plpgsql;
CREATE TRIGGER bench_conversation_resolved AFTER UPDATE ON conversations_conversation
    FOR EACH ROW WHEN (NEW.status = 'resolved' AND OLD.status IS DISTINCT FROM 'resolved')
    EXECUTE FUNCTION bench_notify_conversation_resolved();

CREATE OR REPLACE FUNCTION bench_notify_offer_insert() RETURNS trigger AS $$
BEGIN PERFORM pg_notify('bench_offer', NEW.id || ' ' || NEW.conversation_id || ' ' || NEW.agent_id || ' '
                        || extract(epoch FROM clock_timestamp())); RETURN NULL; END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_offer_insert AFTER INSERT ON conversations_offer
    FOR EACH ROW EXECUTE FUNCTION bench_notify_offer_insert();

CREATE OR REPLACE FUNCTION bench_notify_heartbeat_insert() RETURNS trigger AS $$
BEGIN PERFORM pg_notify('bench_hb', NEW.token); RETURN NULL; END $$ LANGUAGE plpgsql;
CREATE TRIGGER bench_heartbeat_insert AFTER INSERT ON contactcenter_workerheartbeat
    FOR EACH ROW EXECUTE FUNCTION bench_notify_heartbeat_insert();
"""
CHANNELS = ("bench_conv", "bench_resolved", "bench_offer", "bench_hb")


# --- the listener process -------------------------------------------------------------------------

def listen_main(dsn: str) -> int:
    """Child process: stamp every notification with this machine's clock the moment it arrives."""
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        for channel in CHANNELS:
            conn.execute(f"LISTEN {channel}")
        print("ready", flush=True)
        for notify in conn.notifies():
            sys.stdout.write(f"{time.time():.6f} {notify.channel} {notify.payload}\n")
            sys.stdout.flush()
    return 0


class Events:
    """The listener's stamps, indexed as they come in."""

    def __init__(self, dsn: str, log):
        self.cond = threading.Condition()
        self.conversation_commit: dict[int, float] = {}
        self.resolved: dict[int, tuple[float, int]] = {}  # conversation → (commit time, assignee)
        self.offers: list[tuple[float, int, int, int, float]] = []  # (commit, offer, conversation, agent, insert)
        self.first_offer: dict[int, float] = {}  # conversation → commit time of its first offer
        self.heartbeats: dict[str, float] = {}
        self._ready = threading.Event()
        self.process = subprocess.Popen([sys.executable, __file__, "--listen", dsn], cwd=REPO,
                                        stdout=subprocess.PIPE, stderr=log, text=True)
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError("notification listener did not start")

    def _read(self):
        for line in self.process.stdout:
            parts = line.split()
            if parts == ["ready"]:
                self._ready.set()
                continue
            at, channel, payload = float(parts[0]), parts[1], parts[2:]
            with self.cond:
                if channel == "bench_conv":
                    self.conversation_commit[int(payload[0])] = at
                elif channel == "bench_resolved":
                    self.resolved[int(payload[0])] = (at, int(payload[1]))
                elif channel == "bench_offer":
                    offer, conversation, agent, inserted = int(payload[0]), int(payload[1]), int(payload[2]), float(payload[3])
                    self.offers.append((at, offer, conversation, agent, inserted))
                    self.first_offer.setdefault(conversation, at)
                elif channel == "bench_hb":
                    self.heartbeats[payload[0]] = at
                self.cond.notify_all()

    def wait(self, predicate, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.2))
        return True

    def stop(self):
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --- workers ----------------------------------------------------------------------------------------

class Workers:
    """WORKERS real ``celery worker`` processes on Redis, pointed at the bench test database, no beat.
    Started as the Procfile starts them: persistent database connections (``CC_DB_CONN_MAX_AGE=60``),
    so neither routing nor the no-op baseline pays a new PostgreSQL connection per task. Logs:
    ``var/bench-routing-worker<i>.log``."""

    def __init__(self, db_url: str):
        from contactcenter.celery import app

        self.app = app
        env = dict(os.environ, DATABASE_URL=db_url, CC_EMBEDDED_WORKER="0",
                   CC_DB_CONN_MAX_AGE=os.environ.get("CC_DB_CONN_MAX_AGE", "60"))
        self.processes = Processes()
        self.names = [f"bench-routing{i}-{os.getpid()}" for i in range(WORKERS)]
        queues = celery_queues(app)
        self.procs = [
            (f"routing-worker{i}", name, self.processes.celery_worker(
                f"routing-worker{i}", node=name, env=env, pool=WORKER_POOL, concurrency=WORKER_CONCURRENCY,
                queues=queues))
            for i, name in enumerate(self.names)]

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        for log, name, proc in self.procs:
            self.processes.wait_celery(proc, log, self.app, name, timeout=max(1.0, deadline - time.monotonic()))

    def stop(self) -> None:
        self.processes.stop()


def broker_idle() -> bool:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        return client.llen("celery") == 0 and client.hlen("unacked") == 0
    finally:
        client.close()


def broker_backlog() -> int:
    import redis

    client = redis.Redis.from_url(os.environ["REDIS_URL"])
    try:
        return client.llen("celery")
    finally:
        client.close()


def quiesce(events: Events, timeout: float = DRAIN_SECONDS) -> bool:
    """Until the broker queue is empty and no offer has been committed for a second."""
    deadline = time.monotonic() + timeout
    last, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        count = len(events.offers)
        if count != last:
            last, since = count, time.monotonic()
        elif time.monotonic() - since >= 1.0 and broker_idle():
            return True
        time.sleep(0.1)
    return False


# --- data -------------------------------------------------------------------------------------------

def populate():
    from django.contrib.auth.models import User

    from conversations.models import (
        DEFAULT_CAPACITY,
        Agent,
        AgentSkill,
        Inbox,
        PresenceState,
        Queue,
        Skill,
    )

    available, _ = PresenceState.objects.get_or_create(name="Available", defaults={"is_available": True})
    if not available.is_available:
        available.is_available = True
        available.save(update_fields=["is_available"])
    skills = [Skill.objects.create(name=f"Bench {c}", slug=f"bench-{c}") for c in "abcdef"]
    queue = Queue.objects.create(name="Bench", slug="bench", is_default=True, auto_accept=False)
    queue.required_skills.add(skills[0], skills[1])  # every agent has both, plus one of four others
    users = User.objects.bulk_create([User(username=f"bench-agent-{i:03d}", password="!") for i in range(AGENTS)])
    agents = Agent.objects.bulk_create([
        Agent(user=user, display_name=f"Agent {i:03d}", presence=available,
              capacity={**DEFAULT_CAPACITY, "sms": CAPACITY}) for i, user in enumerate(users)
    ])
    AgentSkill.objects.bulk_create([
        AgentSkill(agent=agent, skill=skill) for i, agent in enumerate(agents)
        for skill in (skills[0], skills[1], skills[2 + i % 4])
    ])
    inbox = Inbox.objects.create(name="Bench SMS", kind="sms", address="+815000000999", default_queue=queue)
    park_claim_target(inbox)
    return queue, inbox, [a.pk for a in agents]


def park_claim_target(inbox) -> None:
    """The row the baseline's SKIP LOCKED claim finds (claim_ms): a waiting conversation in a queue
    whose skill no agent has, created before any other open one (the claim takes the lowest id),
    so it waits in every round and no routing ever offers or resolves it."""
    from django.utils import timezone

    from conversations.models import Conversation, Queue, Skill
    from profiles.models import Customer

    nobody = Skill.objects.create(name="Bench nobody", slug="bench-nobody")
    parked = Queue.objects.create(name="Bench parked", slug="bench-parked", is_default=False, auto_accept=False)
    parked.required_skills.add(nobody)
    now = timezone.now()
    Conversation.objects.bulk_create([Conversation(
        customer=Customer.objects.create(display_name="claim target"), inbox=inbox, channel="sms", status="open",
        queue=parked, created_at=now, last_message_at=now, waiting_since=now, queued_at=now,
        routing_note="waiting: no eligible agent is free")])


def seed_history(queue, inbox, agent_ids: list[int], count: int) -> None:
    """``count`` conversations already handled over the past HISTORY_DAYS, as a contact center that
    has been running has: resolved, each with the offer its agent accepted, one in ten with a
    rejected or timed-out offer before it, and the customer's message. Bulk-created; ANALYZE
    follows before each phase."""
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import Conversation, Message, Offer
    from profiles.models import Customer

    if count <= 0:
        return
    now = timezone.now()
    span = timedelta(days=HISTORY_DAYS).total_seconds()
    customers = Customer.objects.bulk_create(
        [Customer(display_name=f"history {i}") for i in range(count)], batch_size=2000)
    rows = []
    for i, customer in enumerate(customers):
        opened = now - timedelta(seconds=span * (count - i) / count)
        rows.append(Conversation(
            customer=customer, inbox=inbox, channel="sms", status="resolved", queue=queue,
            assignee_id=agent_ids[i % len(agent_ids)], created_at=opened, last_message_at=opened + timedelta(minutes=5),
            queued_at=opened, assigned_at=opened + timedelta(seconds=20), resolved_at=opened + timedelta(minutes=6),
            routing_note="assigned", last_seq=1))
    conversations = Conversation.objects.bulk_create(rows, batch_size=2000)
    offers = []
    for i, conversation in enumerate(conversations):
        if i % 10 == 0:
            offers.append(Offer(conversation=conversation, agent_id=agent_ids[(i + 1) % len(agent_ids)], queue=queue,
                                channel="sms", step="queue", status="rejected" if i % 20 else "timeout",
                                created_at=conversation.queued_at, decided_at=conversation.queued_at + timedelta(seconds=10)))
        offers.append(Offer(conversation=conversation, agent_id=conversation.assignee_id, queue=queue, channel="sms",
                            step="queue", status="accepted", created_at=conversation.queued_at + timedelta(seconds=10),
                            decided_at=conversation.assigned_at))
    Offer.objects.bulk_create(offers, batch_size=2000)
    Message.objects.bulk_create([
        Message(conversation=conversation, customer_id=conversation.customer_id, inbox=inbox, channel="sms",
                direction="inbound", text="hello", provider_id=f"SMhistory{i:06d}", seq=1,
                created_at=conversation.created_at)
        for i, conversation in enumerate(conversations)], batch_size=2000)


def arrive(inbox, number: int) -> int:
    from conversations.services.ingest import InboundMessage, message_receive

    result = message_receive(InboundMessage(
        inbox=inbox, sender_kind="phone", sender_address=f"+8190{12340000 + number}", text="hello",
        provider_id=f"SMbench{number:06d}",
    ))
    assert result.conversation_opened, "each arrival must open a new conversation"
    return result.conversation.pk


def check_invariants() -> dict[str, int]:
    """Zero everywhere means no double assignment (see the module docstring)."""
    from django.db import connection

    queries = {
        "two_pending_offers": """SELECT count(*) FROM (SELECT conversation_id FROM conversations_offer
            WHERE status = 'pending' GROUP BY conversation_id HAVING count(*) > 1) x""",
        "two_accepted_offers": """SELECT count(*) FROM (SELECT conversation_id FROM conversations_offer
            WHERE status = 'accepted' GROUP BY conversation_id HAVING count(*) > 1) x""",
        "offered_while_assigned": """SELECT count(*) FROM conversations_offer o JOIN conversations_conversation c
            ON c.id = o.conversation_id WHERE o.status = 'pending' AND c.assignee_id IS NOT NULL""",
        "accepted_not_assignee": """SELECT count(*) FROM conversations_offer o JOIN conversations_conversation c
            ON c.id = o.conversation_id WHERE o.status = 'accepted' AND c.assignee_id IS DISTINCT FROM o.agent_id""",
        "agents_over_capacity": f"""SELECT count(*) FROM (
            SELECT agent_id, channel, sum(n) AS load FROM (
                SELECT assignee_id AS agent_id, channel, count(*) AS n FROM conversations_conversation
                 WHERE assignee_id IS NOT NULL AND status IN ('open', 'pending') GROUP BY 1, 2
                UNION ALL
                SELECT agent_id, channel, count(*) FROM conversations_offer WHERE status = 'pending' GROUP BY 1, 2
            ) parts GROUP BY 1, 2) loads WHERE channel = 'sms' AND load > {CAPACITY}""",
    }
    with connection.cursor() as cursor:
        result = {}
        for name, sql in queries.items():
            cursor.execute(sql)
            result[name] = cursor.fetchone()[0]
    return result


class Desk(threading.Thread):
    """Phase (a)'s capacity release: a conversation whose offer has been pending HOLD_SECONDS is
    resolved (``conversation_resolve`` cancels the offer, which frees the agent's slot). Cheaper
    than accept + resolve, so the bench adds as little load as possible to the machine under test.
    The canceled offer still enqueues ``route_for_agent_task`` for its agent, as every offer closed
    before it was accepted does: one more task on the workers per resolve, which finds nothing
    waiting (the head lock, one statement) unless an arrival is between its commit and its own
    routing task."""

    def __init__(self):
        super().__init__(daemon=True)
        self.halt = threading.Event()
        self.resolved = 0
        self.error: BaseException | None = None

    def run(self):
        from datetime import timedelta

        from django.db import connection
        from django.utils import timezone

        from conversations.models import Offer
        from conversations.routing.assignment import conversation_resolve

        try:
            while not self.halt.is_set():
                cutoff = timezone.now() - timedelta(seconds=HOLD_SECONDS)
                for cid in list(Offer.objects.filter(status="pending", created_at__lt=cutoff)
                                .values_list("conversation_id", flat=True)):
                    conversation_resolve(conversation_id=cid, by=None)
                    self.resolved += 1
                self.halt.wait(0.1)
        except BaseException as exc:  # noqa: BLE001 - reported by the main thread
            self.error = exc
        finally:
            connection.close()


# --- phases -----------------------------------------------------------------------------------------

def analyze() -> None:
    """Statistics for the rows a phase starts from, as autovacuum keeps them in production: without
    them the planner works from whatever it last saw, which can be better or worse than what a
    running system gets (a pending-offer index was missing and only showed with statistics)."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")


def measure_noop(events: Events, samples: int, tag: str) -> list[float]:
    from contactcenter.tasks import record_heartbeat

    out = []
    for i in range(samples + 5):
        token = f"bench-{tag}-{i}"
        start = time.time()
        record_heartbeat.apply_async(kwargs={"token": token})
        if not events.wait(lambda token=token: token in events.heartbeats, 30):
            raise RuntimeError("no worker ran record_heartbeat within 30 s")
        if i >= 5:  # warm-up first
            out.append((events.heartbeats[token] - start) * 1000)
        time.sleep(0.02)
    return out


class NoopProbe(threading.Thread):
    """For reference, not in the ratio: the same Celery round trip as the baseline
    (``record_heartbeat``), PROBE_RATE a second while a phase runs, so the report shows what the
    machine's load alone does to a task that decides nothing. A few more tasks for the workers,
    and nothing else."""

    def __init__(self, events: Events, tag: str):
        super().__init__(daemon=True)
        self.events, self.tag = events, tag
        self.halt = threading.Event()
        self.samples: list[float] = []
        self.cpu = MachineCpu()  # what the machine did during the phase, reported beside the samples

    def run(self):
        from contactcenter.tasks import record_heartbeat

        events, i = self.events, 0
        while not self.halt.wait(1 / PROBE_RATE):
            token = f"bench-probe-{self.tag}-{i}"
            i += 1
            start = time.time()
            record_heartbeat.apply_async(kwargs={"token": token})
            if events.wait(lambda token=token: token in events.heartbeats, 5):
                self.samples.append((events.heartbeats[token] - start) * 1000)

    def stop(self) -> list[float]:
        self.halt.set()
        self.join(timeout=10)
        self.cpu.stop()
        return self.samples


def on_schedule(steps, *, start: float, rate: float, seconds: float):
    """Open loop: each step ``i`` of ``steps`` at ``start + i / rate`` (time.monotonic(), one clock
    for every process), whatever the previous ones took; yields ``(i, lag behind the schedule in
    s)``. Stops once the machine falls ten seconds behind: it cannot keep the rate, and what was
    done is reported."""
    for i in steps:
        if time.monotonic() - start > seconds + 10:
            return
        due = start + i / rate
        now = time.monotonic()
        if due > now:
            time.sleep(due - now)
        yield i, time.monotonic() - due


def send_share(inbox, first: int, start: float, total: int, record, offset: int = 0) -> None:
    """One sender's share of the arrivals (``first``, ``first`` + ARRIVAL_SENDERS, …):
    ``record(conversation id, lag behind the schedule in s, ingest ms)`` for each. Several senders,
    like several processes taking webhooks: one slow ingest does not hold up the next arrival.
    ``offset``: the round's first arrival number (numbers name senders and SMS, unique in a run)."""
    for i, lag in on_schedule(range(first, total, ARRIVAL_SENDERS), start=start, rate=ARRIVAL_RATE,
                              seconds=ARRIVAL_SECONDS):
        began = time.monotonic()
        cid = arrive(inbox, offset + i)
        record(cid, lag, (time.monotonic() - began) * 1000)


def phase_arrivals(events: Events, inbox, enqueued: dict, round_index: int = 0) -> dict:
    """One round of phase (a): ARRIVAL_RATE/s for ARRIVAL_SECONDS s, drained."""
    total = ARRIVAL_RATE * ARRIVAL_SECONDS
    offset = round_index * total
    if SENDERS == "processes":
        return _arrivals_from_processes(events, inbox, total, offset, round_index)
    desk = Desk()
    desk.start()
    probe = NoopProbe(events, f"a{round_index}")
    probe.start()
    ids, lags, ingest_ms, errors = [], [0.0], [], []
    lock = threading.Lock()
    start = time.monotonic()

    def record(cid: int, lag: float, ms: float) -> None:
        with lock:
            ids.append(cid)
            lags.append(lag)
            ingest_ms.append(ms)

    def sender(first: int):
        from django.db import connection

        try:
            send_share(inbox, first, start, total, record, offset)
        except BaseException as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    senders = [threading.Thread(target=sender, args=(n,), daemon=True) for n in range(ARRIVAL_SENDERS)]
    try:
        for thread in senders:
            thread.start()
        for thread in senders:
            thread.join(ARRIVAL_SECONDS + 30)
        elapsed = time.monotonic() - start
        late = max(lags)
        if errors:
            raise errors[0]
        events.wait(lambda: all(c in events.first_offer for c in ids), DRAIN_SECONDS)
    finally:
        probe_ms = probe.stop()
        desk.halt.set()
        desk.join(timeout=30)
    if desk.error:
        raise desk.error
    return _arrivals_result(events, ids, lags, ingest_ms, enqueued, elapsed, late, desk.resolved) | {
        "probe_ms": probe_ms, "cpu": probe.cpu}


def _sender_main(pipe, first: int, db_url: str) -> None:
    """A sender process (spawned): Django on the bench database, then its share of the arrivals on
    the schedule the parent sends; back to the parent: the (conversation, lag, ingest ms) rows, when
    each conversation's routing task was enqueued, and the error if any."""
    os.environ["DATABASE_URL"] = db_url
    import django

    django.setup()
    from celery.signals import after_task_publish
    from django.db import connection

    from contactcenter.tasks import record_heartbeat
    from conversations.models import Inbox
    from conversations.services import ingest  # noqa: F401 - imported before the clock starts

    enqueued: dict[int, float] = {}

    def on_publish(sender=None, body=None, **_kwargs):
        if sender == "conversations.route_conversation":
            enqueued.setdefault(int(body[0][0]), time.time())

    after_task_publish.connect(on_publish, weak=False)
    record_heartbeat.apply_async(kwargs={"token": f"bench-sender-{os.getpid()}"})  # the broker connection
    pipe.send("booted")
    rows, error = [], None
    try:
        start, total, inbox_id, offset = pipe.recv()
        inbox = Inbox.objects.get(pk=inbox_id)
        pipe.send("ready")
        send_share(inbox, first, start, total, lambda *row: rows.append(row), offset)
    except BaseException as exc:  # noqa: BLE001 - reported by the parent
        error = repr(exc)
    finally:
        connection.close()
    pipe.send((rows, enqueued, error))


def _arrivals_from_processes(events: Events, inbox, total: int, offset: int, round_index: int) -> dict:
    import multiprocessing

    from django.db import connection

    context = multiprocessing.get_context("spawn")  # nothing of this process's threads or sockets
    pipes, procs = [], []
    for first in range(ARRIVAL_SENDERS):
        parent_end, child_end = context.Pipe()
        proc = context.Process(target=_sender_main, args=(child_end, first, database_url(connection)), daemon=True)
        proc.start()
        pipes.append(parent_end)
        procs.append(proc)
    # Django set up in every sender first (seconds on a busy machine), then the schedule is fixed.
    for pipe in pipes:
        if not pipe.poll(60) or pipe.recv() != "booted":
            raise RuntimeError("a sender process did not set Django up within 60 s")
    start = time.monotonic() + 1.0  # CLOCK_MONOTONIC: one clock for every process
    for pipe in pipes:
        pipe.send((start, total, inbox.pk, offset))
    for pipe in pipes:
        if not pipe.poll(max(1.0, start - time.monotonic() + 5)) or pipe.recv() != "ready":
            raise RuntimeError("a sender process did not start in time")
    if time.monotonic() > start:
        raise RuntimeError("the sender processes started after the schedule's start")
    desk = Desk()
    desk.start()
    probe = NoopProbe(events, f"a{round_index}")
    probe.start()
    ids, lags, ingest_ms, enqueued = [], [0.0], [], {}
    try:
        for pipe in pipes:
            if not pipe.poll(ARRIVAL_SECONDS + 40):
                raise RuntimeError("a sender process did not finish")
            rows, their_enqueued, error = pipe.recv()
            if error:
                raise RuntimeError(f"a sender process failed: {error}")
            for cid, lag, ms in rows:
                ids.append(cid)
                lags.append(lag)
                ingest_ms.append(ms)
            enqueued.update(their_enqueued)
        elapsed = time.monotonic() - start
        events.wait(lambda: all(c in events.first_offer for c in ids), DRAIN_SECONDS)
    finally:
        probe_ms = probe.stop()
        desk.halt.set()
        desk.join(timeout=30)
        for proc in procs:
            proc.join(10)
    if desk.error:
        raise desk.error
    return _arrivals_result(events, ids, lags, ingest_ms, enqueued, elapsed, max(lags), desk.resolved) | {
        "probe_ms": probe_ms, "cpu": probe.cpu}


def _arrivals_result(events: Events, ids, lags, ingest_ms, enqueued, elapsed, late, resolved) -> dict:
    from conversations.models import Offer

    quiesce(events)
    latencies, pickup, routing, insert_commit = [], [], [], []
    created = dict(Offer.objects.filter(conversation_id__in=ids).order_by("conversation_id", "created_at")
                   .values_list("conversation_id", "created_at").distinct("conversation_id"))
    first_insert = {}
    for at, _offer, conversation, _agent, inserted in events.offers:
        first_insert.setdefault(conversation, (at, inserted))
    for cid in ids:
        if cid not in events.first_offer or cid not in events.conversation_commit:
            continue
        committed, offered = events.conversation_commit[cid], events.first_offer[cid]
        latencies.append((offered - committed) * 1000)
        if cid in created:
            route_start = created[cid].timestamp()  # Offer.created_at = route_conversation()'s start
            pickup.append((route_start - committed) * 1000)
            routing.append((offered - route_start) * 1000)
        insert_commit.append((first_insert[cid][0] - first_insert[cid][1]) * 1000)
    from collections import Counter

    from conversations.models import Conversation

    waited_ids = [c for c in ids if c not in events.first_offer]
    waited_notes = dict(Counter(Conversation.objects.filter(pk__in=waited_ids).values_list("routing_note", flat=True)))
    enqueue = [(enqueued[c] - events.conversation_commit[c]) * 1000 for c in ids
               if c in enqueued and c in events.conversation_commit]
    return {
        "waited_notes": waited_notes, "ingest_ms": ingest_ms, "ids": ids, "latencies": latencies, "waited": len(ids) - len(latencies), "elapsed": elapsed, "late": late,
        "resolved": resolved,
        "commit_to_enqueue": enqueue, "commit_to_route_start": pickup, "route_start_to_offer_commit": routing,
        "offer_insert_to_commit": insert_commit,
    }


def phase_freeing(events: Events, inbox, queue, agent_ids: list[int], baseline) -> dict:
    """Phase (b): every agent full and a backlog waiting, then ROUNDS rounds of frees, ``baseline(i)``
    measured before round ``i`` (``_harness.alternate``); the result has ``baselines`` and the
    latencies of each round (``round_latencies``)."""
    from datetime import timedelta

    from django.utils import timezone

    from conversations.models import Agent, Conversation, Offer
    from conversations.routing.offers import RoutingError, offer_accept
    from conversations.routing.assignment import conversation_resolve
    from profiles.models import Customer

    # Everyone full: accept what is pending, then top every agent up to CAPACITY accepted conversations.
    for offer_id, agent_id in list(Offer.objects.filter(status="pending").values_list("pk", "agent_id")):
        try:
            offer_accept(offer_id=offer_id, agent=Agent(pk=agent_id))
        except RoutingError:
            pass
    held = defaultdict(list)
    for cid, agent_id in Conversation.objects.filter(assignee_id__in=agent_ids, channel="sms",
                                                     status__in=["open", "pending"]).values_list("pk", "assignee_id"):
        held[agent_id].append(cid)
    need = [(agent_id, CAPACITY - len(held[agent_id])) for agent_id in agent_ids if len(held[agent_id]) < CAPACITY]
    count = sum(n for _a, n in need)
    customers = Customer.objects.bulk_create([Customer(display_name=f"held {i}") for i in range(count)])
    now = timezone.now()
    rows, it = [], iter(customers)
    for agent_id, n in need:
        for _ in range(n):
            rows.append(Conversation(customer=next(it), inbox=inbox, channel="sms", status="open", queue=queue,
                                     assignee_id=agent_id, assigned_at=now, queued_at=now, created_at=now,
                                     last_message_at=now))
    for conversation in Conversation.objects.bulk_create(rows):
        held[conversation.assignee_id].append(conversation.pk)
    assert all(len(held[a]) == CAPACITY for a in agent_ids), "could not fill every agent"
    offers_before = len(events.offers)

    # The backlog: BACKLOG waiting conversations in the queue, as routing leaves them when nobody is
    # free (queued, routing note set, no offer). Bulk-created: ingesting and routing 500 through
    # the workers would take ~40 s of this machine's two CPUs and measure nothing new.
    backlog_start = time.monotonic()
    customers = Customer.objects.bulk_create([Customer(display_name=f"waiting {i}") for i in range(BACKLOG)])
    now = timezone.now()
    Conversation.objects.bulk_create([
        Conversation(customer=customer, inbox=inbox, channel="sms", status="open", queue=queue,
                     created_at=now - timedelta(seconds=BACKLOG - i), last_message_at=now - timedelta(seconds=BACKLOG - i),
                     waiting_since=now - timedelta(seconds=BACKLOG - i), queued_at=now - timedelta(seconds=BACKLOG - i),
                     routing_note="waiting: no eligible agent is free")
        for i, customer in enumerate(customers)
    ])
    quiesce(events, timeout=5)
    analyze()
    backlog_seconds = time.monotonic() - backlog_start
    backlog_offers = len(events.offers) - offers_before
    invariants_before = check_invariants()

    # Free one slot every 1/FREE_RATE s, round robin, so each agent is freed every AGENTS/FREE_RATE s.
    freed = []  # (conversation, agent, round)
    per_round = FREE_RATE * FREE_SECONDS
    queue_left = 0

    def served():
        per_agent = defaultdict(int)
        for _t, _o, _c, agent, _i in events.offers[offers_before:]:
            per_agent[agent] += 1
        wanted = defaultdict(int)
        for _cid, agent, _r in freed:
            wanted[agent] += 1
        return all(per_agent[a] >= n for a, n in wanted.items())

    def free_round(index: int) -> dict:
        nonlocal queue_left
        late = 0.0
        probe = NoopProbe(events, f"b{index}")
        probe.start()
        start = time.monotonic()
        for k, lag in on_schedule(range(per_round), start=start, rate=FREE_RATE, seconds=FREE_SECONDS):
            late = max(late, lag)
            agent_id = agent_ids[(index * per_round + k) % len(agent_ids)]
            cid = held[agent_id].pop()
            conversation_resolve(conversation_id=cid, by=None)
            freed.append((cid, agent_id, index))
        elapsed = time.monotonic() - start
        probe_ms = probe.stop()
        events.wait(served, DRAIN_SECONDS)
        # Whatever routing is still queued now is load the frees generated that the workers could not
        # absorb (route_for_agent_task walks up to 20 waiting conversations per free): count it, drop it.
        left = broker_backlog()
        if left:
            from contactcenter.celery import app

            app.control.purge()
            queue_left += left
        quiesce(events)
        return {"elapsed": elapsed, "late": late, "probe_ms": probe_ms, "cpu": probe.cpu}

    pairs = alternate(ROUNDS, baseline, free_round)
    rounds = [r for _b, r in pairs]

    # Match every free (resolve commit) to the first later offer committed to the same agent.
    with events.cond:
        offers_by_agent = defaultdict(list)
        for at, _o, _c, agent, _i in events.offers[offers_before:]:
            offers_by_agent[agent].append(at)
        frees = sorted((events.resolved[cid][0], agent, index) for cid, agent, index in freed
                       if cid in events.resolved)
    used = defaultdict(int)
    latencies, unserved = [], 0
    round_latencies = [[] for _ in range(ROUNDS)]
    for at, agent, index in frees:
        times = sorted(offers_by_agent[agent])
        position = used[agent]
        while position < len(times) and times[position] <= at:
            position += 1
        if position < len(times):
            latencies.append((times[position] - at) * 1000)
            round_latencies[index].append(latencies[-1])
            used[agent] = position + 1
        else:
            unserved += 1
    return {
        "latencies": latencies, "round_latencies": round_latencies, "baselines": [b for b, _r in pairs],
        "unserved": unserved + len(freed) - len(frees), "elapsed": sum(r["elapsed"] for r in rounds),
        "late": max(r["late"] for r in rounds), "frees": len(freed), "queue_left": queue_left,
        "probe_ms": [ms for r in rounds for ms in r["probe_ms"]], "cpu": MachineCpu.average([r["cpu"] for r in rounds]),
        "backlog_seconds": backlog_seconds, "backlog_offers": backlog_offers, "invariants_before": invariants_before,
    }


def p95(values: list[float]) -> float:
    """A round's p95; 0 for a round that measured nothing (its ratio then reads 0, visibly)."""
    return percentile(values, 95) if values else 0.0


def pool_arrivals(rounds: list[dict]) -> dict:
    """Phase (a)'s rounds as one: every list joined, counts summed, the worst lag, the mean CPU."""
    from collections import Counter

    pooled = {key: [v for r in rounds for v in r[key]] for key in (
        "ingest_ms", "ids", "latencies", "commit_to_enqueue", "commit_to_route_start",
        "route_start_to_offer_commit", "offer_insert_to_commit", "probe_ms")}
    notes = Counter()
    for r in rounds:
        notes.update(r["waited_notes"])
    return pooled | {
        "waited_notes": dict(notes), "waited": sum(r["waited"] for r in rounds),
        "elapsed": sum(r["elapsed"] for r in rounds), "late": max(r["late"] for r in rounds),
        "resolved": sum(r["resolved"] for r in rounds), "cpu": MachineCpu.average([r["cpu"] for r in rounds]),
    }


def claim_ms() -> float:
    from django.db import connection, transaction

    def claim():
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT id FROM conversations_conversation WHERE status = 'open' AND assignee_id IS NULL "
                "AND abandoned_at IS NULL ORDER BY id LIMIT 1 FOR UPDATE SKIP LOCKED"
            )
            assert cursor.fetchone() is not None

    return median_ms(claim, repeat=CLAIM_SAMPLES)


def fmt(values: list[float]) -> str:
    if not values:
        return "n/a"
    return f"p50 {percentile(values, 50):.1f} ms, p95 {percentile(values, 95):.1f} ms, max {max(values):.1f} ms (n={len(values)})"


def main() -> int:
    import django

    django.setup()
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.CC_PRODUCTION:
        print("routing bench needs production mode (PostgreSQL + Redis, real celery workers): skipped")
        print(bench_line("routing", ratio=0.0, target=TARGET, db="sqlite", skipped=1))
        return 0

    with bench_database() as connection:
        from celery.signals import after_task_publish

        from contactcenter.celery import app

        enqueued: dict[int, float] = {}

        def on_publish(sender=None, body=None, **_kwargs):
            if sender == "conversations.route_conversation":
                try:
                    enqueued.setdefault(int(body[0][0]), time.time())
                except (TypeError, IndexError, ValueError):
                    pass

        after_task_publish.connect(on_publish, weak=False)
        with connection.cursor() as cursor:
            cursor.execute(TRIGGERS)
        queue, inbox, agent_ids = populate()
        seed_history(queue, inbox, agent_ids, HISTORY)
        db_url = database_url(connection)
        (REPO / "var").mkdir(exist_ok=True)
        listener_log = open(REPO / "var" / "bench-routing-listener.log", "w")  # noqa: SIM115
        events = workers = None
        try:
            app.control.purge()
            events = Events(db_url, listener_log)
            workers = Workers(db_url)
            workers.wait_ready()

            analyze()
            load_start = os.getloadavg()[0]
            noop_samples, claims = [], []

            def baseline_round(phase: str):
                def measure(index: int) -> float:
                    samples, claim = measure_noop(events, NOOP_SAMPLES, f"{phase}{index}"), claim_ms()
                    noop_samples.extend(samples)
                    claims.append(claim)
                    return statistics.median(samples) + claim
                return measure

            a_pairs = alternate(ROUNDS, baseline_round("a"), lambda i: phase_arrivals(events, inbox, enqueued, i))
            a = pool_arrivals([r for _b, r in a_pairs])
            inv_a = check_invariants()
            b = phase_freeing(events, inbox, queue, agent_ids, baseline_round("b"))
            inv_b = check_invariants()
            load_end = os.getloadavg()[0]
        finally:
            if workers is not None:
                workers.stop()
            if events is not None:
                events.stop()
            listener_log.close()
            after_task_publish.disconnect(on_publish)

    noop_ms, claim = statistics.median(noop_samples), statistics.median(claims)
    a_ratios = RoundRatios([bl for bl, _r in a_pairs], [p95(r["latencies"]) for _b, r in a_pairs], label="arrivals")
    b_ratios = RoundRatios(b["baselines"], [p95(lat) for lat in b["round_latencies"]], label="freeing")
    ratios = RoundRatios.worst(a_ratios, b_ratios)
    baseline = statistics.median(a_ratios.baselines + b_ratios.baselines)
    doubles = sum(inv_a.values()) + sum(b["invariants_before"].values()) + sum(inv_b.values())
    a_p50, a_p95 = percentile(a["latencies"], 50), percentile(a["latencies"], 95)
    b_p50, b_p95 = (percentile(b["latencies"], 50), percentile(b["latencies"], 95)) if b["latencies"] else (0.0, 0.0)

    print(f"database: postgresql + redis, {HISTORY} conversations of history; {AGENTS} agents x 3 skills, capacity {CAPACITY} on sms; "
          f"{WORKERS} celery workers (-P {WORKER_POOL} -c {WORKER_CONCURRENCY}); {os.cpu_count()} CPUs, "
          f"load average {load_start:.1f} at start, {load_end:.1f} at end")
    if load_start > 1.5:
        print("note: the machine was already busy when the bench started (other processes); latencies include that")
    print(f"baseline, measured before each of the {ROUNDS} rounds of each phase: celery round trip (record_heartbeat, "
          f"apply_async -> row committed) median {noop_ms:.2f} ms + SKIP LOCKED claim median {claim:.2f} ms; "
          f"per round median {baseline:.2f} ms (from {min(a_ratios.baselines + b_ratios.baselines):.2f} to "
          f"{max(a_ratios.baselines + b_ratios.baselines):.2f} ms)")
    print(f"(a) {len(a['ids'])} arrivals in {ROUNDS} rounds, {a['elapsed']:.1f} s of sending (max lag {a['late'] * 1000:.0f} ms); offered "
          f"conversations resolved after {HOLD_SECONDS:g} s pending: {a['resolved']}; waited without offer: {a['waited']}")
    if a["waited"]:
        print(f"    routing notes of the arrivals without an offer ('' = never routed yet): {a['waited_notes']}")
    print(f"    message_receive (ingest, {ARRIVAL_SENDERS} sender {SENDERS}): {fmt(a['ingest_ms'])}")
    print(f"    conversation commit -> offer commit: {fmt(a['latencies'])}")
    print(f"    of which: commit -> task enqueued {fmt(a['commit_to_enqueue'])}")
    print(f"              commit -> route_conversation start (Offer.created_at) {fmt(a['commit_to_route_start'])}")
    print(f"              route start -> offer commit {fmt(a['route_start_to_offer_commit'])}")
    print(f"              offer insert -> offer commit {fmt(a['offer_insert_to_commit'])}")
    print(f"(b) backlog {BACKLOG} waiting created in {b['backlog_seconds']:.1f} s (offers made while full: "
          f"{b['backlog_offers']}); {b['frees']} frees in {ROUNDS} rounds, {b['elapsed']:.1f} s of freeing "
          f"(max lag {b['late'] * 1000:.0f} ms); frees without a following offer: {b['unserved']}; "
          f"routing tasks still queued {DRAIN_SECONDS} s after a round's last free (purged): {b['queue_left']}")
    print(f"    resolve commit -> next offer commit to that agent: {fmt(b['latencies'])}")
    print(f"for reference, not in the ratio: the baseline's no-op round trip sampled {PROBE_RATE}/s during the phases: "
          f"(a) {fmt(a['probe_ms'])}; (b) {fmt(b['probe_ms'])}")
    print(f"the machine during the phases: (a) {a['cpu'].describe()}; (b) {b['cpu'].describe()}")
    print(f"invariants after (a): {inv_a}; before frees: {b['invariants_before']}; after (b): {inv_b}")
    print(f"p95 over the baseline of the same round: {a_ratios.describe()}")
    print(f"    {b_ratios.describe()}")
    print(bench_line(
        "routing", ratio=ratios, target=TARGET, worse=ratios.label,
        arrival_ratio=f"{a_ratios.median:.2f}", freed_ratio=f"{b_ratios.median:.2f}", db="postgresql", arrival_p50_ms=a_p50, arrival_p95_ms=a_p95,
        freed_p50_ms=b_p50, freed_p95_ms=b_p95, baseline_ms=baseline, noop_ms=noop_ms, claim_ms=claim,
        double_assignments=doubles, offered=len(a["latencies"]), waited=a["waited"], unserved=b["unserved"],
        arrivals=len(a["ids"]), frees=b["frees"], queue_left=b["queue_left"], load_start=round(load_start, 1),
        history=HISTORY, noop_during_a_p95_ms=percentile(a["probe_ms"], 95) if a["probe_ms"] else 0.0,
        noop_during_b_p95_ms=percentile(b["probe_ms"], 95) if b["probe_ms"] else 0.0,
        **{f"{figure}_{phase}_pct": round(value, 1) for phase, cpu in (("a", a["cpu"]), ("b", b["cpu"]))
           for figure, value in (("cpu_busy", cpu.busy_pct), ("cpu_steal", cpu.steal_pct)) if value is not None},
    ))
    if doubles:
        print("FAIL: double assignments found", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--listen":
        sys.exit(listen_main(sys.argv[2]))
    sys.exit(main())
