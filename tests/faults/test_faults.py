"""Faults survived: real processes on a private PostgreSQL and Redis, killed and restarted in the
middle of bursts of inbound SMS, email and widget messages. Every message a client was told was
accepted is stored exactly once and its conversation assigned exactly once. Sizes scale with
``CC_FAULTS_SCALE`` (README: Reliability)."""

import asyncio
import contextlib
import json
import signal
import threading
import time
import uuid

import aiohttp
import pytest

from . import clients, counts
from .clients import Tally, scaled

pytestmark = pytest.mark.production

SETTLE_LIMIT = 120.0  # seconds for recovery (the tick requeues lost work after 30 s) and routing


def _run() -> str:
    return uuid.uuid4().hex[:8]


def _into_burst(burst_seconds: float) -> float:
    """When to strike: a third into the SMS burst (at least a second), so work is in flight."""
    return max(1.0, burst_seconds / 3)


def _in_thread(fn, *args, **kwargs) -> threading.Thread:
    thread = threading.Thread(target=fn, args=args, kwargs=kwargs, daemon=True)
    thread.start()
    return thread


def _settle_and_count(stack, scenario: str, run: str, tallies: dict[str, Tally], sent: int, started: float,
                      extra: str = "") -> counts.Outcome:
    accepted = set().union(*(t.accepted for t in tallies.values()))
    stored, conversations, unrouted = counts.wait_settled(stack.postgres.connect, run, accepted, timeout=SETTLE_LIMIT)
    answers = " ".join(f"{kind}={json.dumps(t.answers, sort_keys=True, separators=(',', ':'))}"
                       for kind, t in tallies.items())
    return counts.outcome(scenario, sent=sent, accepted=accepted, stored=stored, conversations=conversations,
                          unrouted=unrouted, started=started, extra=f"{extra} answers: {answers}".strip(),
                          sent_tokens=set().union(*(t.sent for t in tallies.values())))


def _assert_nothing_lost(outcome: counts.Outcome, stack) -> None:
    with stack.postgres.connect() as conn:
        failed = counts.failed_inbound_events(conn)
    assert outcome.accepted == outcome.sent, (
        f"not every message was accepted in the end: {outcome.line()} never accepted: {outcome.unaccepted[:5]}")
    assert outcome.lost == 0, outcome.line()
    assert outcome.duplicated == 0, outcome.line()
    assert outcome.unrouted == 0, outcome.line()
    assert not failed, f"inbound events left failed: {failed[:3]}"


async def _healthz(base: str) -> tuple[int, dict]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        async with session.get(base + "/healthz") as response:
            try:
                return response.status, await response.json(content_type=None)
            except ValueError:
                return response.status, {}


def test_worker_killed_mid_burst(stack, report):
    """SIGKILL to the only Celery worker while SMS, email and widget messages pour in; a new worker
    starts a few seconds later. Tasks the dead worker held are found again by the tick."""
    run, started = _run(), time.monotonic()
    sms_n, email_n, visitors, per_visitor = scaled(500), scaled(200), max(1, scaled(10)), 10
    tallies = {"sms": Tally(), "email": Tally(), "widget": Tally()}
    mail = _in_thread(clients.smtp_burst, stack.smtp_port, run=run, count=email_n, tally=tallies["email"])

    async def burst():
        async def kill_and_replace():
            await asyncio.sleep(_into_burst(sms_n / 50))
            stack.named["worker"].send_signal(signal.SIGKILL)
            await asyncio.sleep(3)
            await asyncio.to_thread(stack.start_worker)

        await asyncio.gather(
            clients.sms_burst(stack.base, run=run, count=sms_n, rate=50, tally=tallies["sms"]),
            clients.widget_burst(stack.ws_base, run=run, visitors=visitors, per_visitor=per_visitor,
                                 tally=tallies["widget"]),
            kill_and_replace(),
        )

    asyncio.run(burst())
    mail.join(timeout=SETTLE_LIMIT)
    outcome = report(_settle_and_count(stack, "worker SIGKILL", run, tallies,
                                       sms_n + email_n + visitors * per_visitor, started))
    _assert_nothing_lost(outcome, stack)


def test_redis_restarted_mid_burst(stack, report):
    """Redis killed (everything in it lost: queued tasks, channel-layer groups, cache) and started
    again during a burst. Webhooks keep answering 200 (the raw event is in PostgreSQL), the tick
    finds what was never queued, and the agents' consoles reconnect and catch up by sequence
    number. Then the layer's group memberships are lost with no connection dropping (a restart
    quicker than the clients' retries, a failover): every console must notice by itself (4503)
    and reconnect. A second round from every customer comes after that: in the end each console
    holds every entry of its conversations after their assignment exactly once."""
    run, started = _run(), time.monotonic()
    sms_n, email_n, visitors, per_visitor = scaled(300), scaled(60), max(1, scaled(5)), 10
    senders = max(1, sms_n // 10)  # ten SMS per conversation, most of them after its assignment
    mail_senders = min(email_n, 40)  # clients.smtp_burst: mail i comes from customer i % 40
    tallies = {"sms": Tally(), "email": Tally(), "widget": Tally()}
    views = {name: clients.ConsoleView() for name in stack.seeded["agents"]}
    visitor_tokens = [uuid.uuid4().hex for _ in range(visitors)]
    mail = _in_thread(clients.smtp_burst, stack.smtp_port, run=run, count=email_n, tally=tallies["email"])
    restarted: list[float] = []
    worker_exits: list[int] = []

    async def supervise_worker(stop: asyncio.Event):
        """As a process manager does (systemd Restart=always): kombu 5.7's worker can exit with
        "Unrecoverable error" when its Redis connection drops (celery/kombu#659-like race in
        restore_unacked); a new one is started and the exit is reported in the counts line. The
        events that worker never published are caught up by the consoles' sync."""
        while not stop.is_set():
            proc = stack.named["worker"]
            if proc.poll() is not None:
                worker_exits.append(proc.returncode)
                # Redis may not be back yet: the new worker then connects when it is.
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(stack.start_worker)
            await asyncio.sleep(0.5)

    async def _all_reconnected_after(moment: float) -> None:
        deadline = time.monotonic() + RECONNECT_LIMIT
        while time.monotonic() < deadline and any(v.connected_at <= moment for v in views.values()):
            await asyncio.sleep(0.5)

    async def burst():
        stop = asyncio.Event()
        supervisor = asyncio.create_task(supervise_worker(stop))
        consoles = [asyncio.create_task(clients.console_follow(
            stack.base, stack.ws_base, username=name, password=stack.seeded["password"], view=view, stop=stop))
            for name, view in views.items()]
        # Every console signed in and connected before anything breaks (logins hash passwords:
        # slow on a busy machine).
        deadline = time.monotonic() + 60
        while any(not v.connected_at for v in views.values()) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)

        async def restart_redis():
            await asyncio.sleep(_into_burst(sms_n / 30))
            stack.redis.stop(signal.SIGKILL)
            await asyncio.sleep(3)
            stack.redis.start()
            restarted.append(time.monotonic())

        await asyncio.gather(
            clients.sms_burst(stack.base, run=run, count=sms_n, rate=30, tally=tallies["sms"], senders=senders),
            clients.widget_burst(stack.ws_base, run=run, visitors=visitors, per_visitor=per_visitor,
                                 tally=tallies["widget"], visitor_tokens=visitor_tokens),
            restart_redis(),
        )
        await asyncio.to_thread(mail.join, SETTLE_LIMIT)
        await _all_reconnected_after(restarted[-1])
        # Then the memberships go without the connections dropping, as after a restart quicker than
        # the clients' retries or a failover to a replica without them: no socket error tells the
        # consoles; they must notice (CC_CHANNEL_LAYER_CHECK_SECONDS) and reconnect.
        await asyncio.to_thread(stack.redis.forget_groups, "cc-faults")
        restarted.append(time.monotonic())
        await _all_reconnected_after(restarted[-1])
        # A second round from every customer, after the restart: live to the reconnected consoles.
        second_mail = _in_thread(clients.smtp_burst, stack.smtp_port, run=run, count=mail_senders,
                                 tally=tallies["email"], first_index=40 * -(-email_n // 40))
        await asyncio.gather(
            clients.sms_burst(stack.base, run=run, count=senders, rate=30, tally=tallies["sms"], senders=senders,
                              first_index=sms_n),
            clients.widget_burst(stack.ws_base, run=run, visitors=visitors, per_visitor=2, tally=tallies["widget"],
                                 visitor_tokens=visitor_tokens, first_message=per_visitor),
        )
        await asyncio.to_thread(second_mail.join, SETTLE_LIMIT)
        await asyncio.to_thread(counts.wait_settled, stack.postgres.connect, run,
                                set().union(*(t.accepted for t in tallies.values())), timeout=SETTLE_LIMIT)
        # The last live events reach the consoles, and each completes a sync after everything
        # settled: an event lost on the way is caught up by then, as the console's timer does.
        settled = time.monotonic()
        await asyncio.sleep(1)
        deadline = time.monotonic() + RECONNECT_LIMIT
        while time.monotonic() < deadline and any(v.synced_at <= settled for v in views.values()):
            await asyncio.sleep(0.5)
        stop.set()
        await asyncio.gather(*consoles, supervisor)

    asyncio.run(burst())
    sent = sms_n + senders + email_n + mail_senders + visitors * (per_visitor + 2)
    gaps, repeats, followed, reconnects = _console_gaps(stack, views, run)
    outcome = report(_settle_and_count(
        stack, "Redis restart", run, tallies, sent, started,
        extra=f"consoles: conversations={followed} gaps={gaps} repeats={repeats} reconnects={reconnects} "
              f"worker exits (restarted as a process manager would)={worker_exits}"))
    assert tallies["sms"].answers.keys() == {"200"}, f"an SMS webhook did not answer 200: {tallies['sms'].answers}"
    _assert_nothing_lost(outcome, stack)
    assert followed > 0, "the consoles heard of no conversation"
    assert gaps == 0 and repeats == 0, outcome.line()
    late = [name for name, view in views.items() if view.connected_at <= restarted[-1]]
    assert not late, f"consoles that did not reconnect after the layer forgot their groups: {late}"


RECONNECT_LIMIT = 30.0  # seconds for every console to notice a restarted Redis and reconnect


def _console_gaps(stack, views, run: str) -> tuple[int, int, int, int]:
    """(entries a console missed, entries its catch-ups sent twice, conversations checked,
    reconnects). Each agent's console must have received, live or by catch-up, every entry of each
    conversation of the run assigned to that agent numbered after the assignment (from then on
    the entries are the agent's to see), whether or not its socket ever told it about that
    conversation."""
    gaps = repeats = checked = reconnects = 0
    with stack.postgres.connect() as conn:
        for username, view in views.items():
            repeats += view.catchup_repeats + view.live_repeats
            reconnects += view.reconnects
            assigned = conn.execute(
                "SELECT c.id, (SELECT max(e.seq) FROM conversations_message e WHERE e.conversation_id = c.id "
                "AND e.kind = 'event' AND e.event_type = 'assigned') FROM conversations_conversation c "
                "JOIN conversations_agent a ON a.id = c.assignee_id JOIN auth_user u ON u.id = a.user_id "
                "WHERE u.username = %s AND c.id IN (SELECT conversation_id FROM conversations_message "
                "WHERE direction = 'inbound' AND text LIKE %s)", [username, f"%tok-{run}-%"]).fetchall()
            for conversation, assigned_seq in assigned:
                stored = {row[0] for row in conn.execute(
                    "SELECT seq FROM conversations_message WHERE conversation_id = %s AND seq > %s",
                    [conversation, assigned_seq or 0]).fetchall()}
                if stored:
                    checked += 1
                gaps += len(stored - view.seqs.get(conversation, set()))
    return gaps, repeats, checked, reconnects


def test_postgres_restarted_mid_burst(stack, report):
    """PostgreSQL stopped hard (every backend killed) during a burst and started again: /healthz
    says 503 naming the database meanwhile, webhooks answer 5xx so Twilio and the mail server
    retry (nothing is answered 2xx and lost), and everything resumes once it is back."""
    run, started = _run(), time.monotonic()
    sms_n, email_n = scaled(200), scaled(40)
    tallies = {"sms": Tally(), "email": Tally()}
    health: list[tuple[int, dict]] = []
    mail = _in_thread(clients.smtp_burst, stack.smtp_port, run=run, count=email_n, tally=tallies["email"])

    async def burst():
        async def restart_postgres():
            await asyncio.sleep(_into_burst(sms_n / 20))
            await asyncio.to_thread(stack.postgres.stop, "immediate")
            for _ in range(6):
                await asyncio.sleep(0.5)
                health.append(await _healthz(stack.base))
            await asyncio.sleep(2)
            await asyncio.to_thread(stack.postgres.start)

        await asyncio.gather(
            clients.sms_burst(stack.base, run=run, count=sms_n, rate=20, tally=tallies["sms"]),
            restart_postgres(),
        )

    asyncio.run(burst())
    mail.join(timeout=SETTLE_LIMIT)
    outcome = report(_settle_and_count(stack, "PostgreSQL restart", run, tallies, sms_n + email_n, started,
                                       extra=f"healthz while down: {sorted({s for s, _ in health})}"))
    down = [body for status, body in health if status == 503]
    assert down, f"/healthz never said 503 while PostgreSQL was down: {health}"
    assert all(body.get("checks", body).get("database", {}).get("status") == "down" for body in down), down
    refused = {a for a in tallies["sms"].answers if a != "200"}
    assert all(a.startswith("5") or not a.isdigit() for a in refused), f"SMS answered non-5xx: {refused}"
    _assert_nothing_lost(outcome, stack)
    deadline = time.monotonic() + 30
    while asyncio.run(_healthz(stack.base))[0] != 200:
        assert time.monotonic() < deadline, f"/healthz not 200 after PostgreSQL returned: {asyncio.run(_healthz(stack.base))}"
        time.sleep(1)


GRACE = 30.0  # seconds a process manager gives a process between SIGTERM and SIGKILL (systemd: 90)


def test_sigterm_while_busy(stack, report):
    """SIGTERM to daphne and to the worker while requests and tasks are in flight: both exit within
    the grace time, and nothing they accepted is lost (their replacements finish it)."""
    run, started = _run(), time.monotonic()
    sms_n, visitors, per_visitor = scaled(300), max(1, scaled(5)), 10
    tallies = {"sms": Tally(), "widget": Tally()}
    stopped: dict[str, float] = {}
    codes: dict[str, int] = {}

    async def burst():
        async def terminate_and_replace():
            await asyncio.sleep(_into_burst(sms_n / 40))
            daphne, worker = stack.named["daphne"], stack.named["worker"]
            sent_at = time.monotonic()
            daphne.send_signal(signal.SIGTERM)
            worker.send_signal(signal.SIGTERM)

            def wait(name, proc):
                try:
                    codes[name] = proc.wait(timeout=GRACE + 30)
                except Exception:  # noqa: BLE001 - still running: reported as over the grace time
                    proc.kill()
                    codes[name] = -9
                stopped[name] = time.monotonic() - sent_at

            await asyncio.gather(asyncio.to_thread(wait, "daphne", daphne), asyncio.to_thread(wait, "worker", worker))
            await asyncio.to_thread(stack.start_daphne)
            await asyncio.to_thread(stack.start_worker)

        await asyncio.gather(
            clients.sms_burst(stack.base, run=run, count=sms_n, rate=40, tally=tallies["sms"]),
            clients.widget_burst(stack.ws_base, run=run, visitors=visitors, per_visitor=per_visitor,
                                 tally=tallies["widget"]),
            terminate_and_replace(),
        )

    asyncio.run(burst())
    outcome = report(_settle_and_count(
        stack, "SIGTERM daphne+worker", run, tallies, sms_n + visitors * per_visitor, started,
        extra="stopped in " + " ".join(f"{name}={seconds:.1f}s(exit {codes[name]})" for name, seconds in stopped.items())))
    for name, seconds in stopped.items():
        assert seconds <= GRACE, f"{name} took {seconds:.1f} s to stop after SIGTERM (grace {GRACE:g} s)"
    _assert_nothing_lost(outcome, stack)
