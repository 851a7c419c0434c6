"""bench/webhook: signed inbound SMS at a fixed rate against a real daphne in production mode.

Set-up: a throwaway PostgreSQL database (``test_<name>``), one ``daphne`` process serving
``bench/_webhook_asgi.py`` (the project's ASGI application and settings, plus the baseline route
``bench/insert/`` from ``bench/_webhook_urls.py``; same middleware for both), pointed at that
database and Redis with ``CC_PUBLIC_URL=http://127.0.0.1:<port>`` so Twilio signatures validate as
they would behind a proxy, taking its connections from psycopg's pool (``CC_DB_POOL``; the
baseline view gets the same pool), and one real ``celery worker`` (``-P threads -c 1``, no beat,
``CC_DB_CONN_MAX_AGE=60`` as in the Procfile, run with ``chrt --idle 0``). The webhook verifies
the signature, stores the raw event (one INSERT, unique MessageSid) and answers; the worker runs
``process_twilio_inbound`` (identity, conversation, message, routing) as in production. The
measured time never includes that processing. The worker starts when the load phase ends and then
drains the stored events: in production workers have cores of their own, while on a small machine
(this one has 2 cores for the client, daphne, PostgreSQL, Redis and the worker) its ingest work and
its PostgreSQL sessions would otherwise be measured as the webhook's latency (``--worker-during-load``
runs it throughout, at idle priority; ``--no-worker``: events stored, none processed).

Load, open loop (asyncio + aiohttp, keep-alive pool; a request is sent at its scheduled time
whether or not earlier ones have been answered, like Twilio): RATE requests/s for SECONDS s, every
request a distinct MessageSid from one of SENDERS numbers (so conversations are reused), signed
with ``RequestValidator(auth_token()).compute_signature(url, params)``. Latency = send → 200 with
the body read; anything but a 200 (or a timeout / connection error) is an error.

Baseline, same run, same rate: a minimal sync Django view behind the same middleware that parses
the same signed form body and does ONE INSERT (``WorkerHeartbeat``, autocommit) — i.e. what any
Django webhook costs on this stack. First a short sequential warm-up of each (its median is
reported as the serial service time), then ROUNDS alternating open-loop rounds of SECONDS s each
(baseline, webhook, baseline, webhook …): a p99 moved by one noisy stretch of the machine (the
baseline's read 18 ms in one run and 6 ms in the next) moves one round's ratio, not the result.

Afterwards, once the worker has drained the events (every stored event processed or failed, at
most DRAIN_LIMIT s): every MessageSid answered 200 must be exactly one Message (``duplicates`` =
Message rows beyond one per sid, ``missing`` = sids answered 200 without a Message; events that
failed processing are reported), then RETRIES SMS that were answered 200 are posted again, signed
identically (a Twilio retry): each must get a 200 and no Message or event row may appear for
them. Prints ``BENCH webhook ratio=<median over the rounds of p99 webhook / p99 baseline> target=3
spread=<min>-<max> …`` (the p50/p99 figures are over every round's requests); exits 1 on errors,
duplicates or missing messages.

Options (for comparisons): ``--rate N --seconds S (per round) --rounds N --no-worker --no-pool
--worker-during-load``. ``BENCH_SMOKE=1``: 20/s, two rounds of 1 s, a few retries (``_harness``).
"""

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import time
import urllib.parse

from _harness import (
    REPO,
    ROUNDS,
    SMOKE,
    Processes,
    RoundRatios,
    alternate,
    bench_database,
    bench_line,
    celery_queues,
    database_url,
    free_port,
    percentile,
)

RATE = 20 if SMOKE else 100  # requests per second
SECONDS = 1 if SMOKE else 6  # per round: ROUNDS rounds of each (5 x 6 s = 30 s per endpoint)
SENDERS = 200
RETRIES = 5 if SMOKE else 50
WARMUP = 10 if SMOKE else 60  # sequential requests per endpoint before the rounds
RETRY_SETTLE = 0.5 if SMOKE else 2.0  # seconds after the retries before their rows are counted
REQUEST_TIMEOUT = 30.0  # seconds; a request not answered by then is an error
MAX_CONNECTIONS = 256  # client keep-alive pool (open loop: new connections while others wait)
# One worker thread: its queries run in PostgreSQL at normal priority, next to daphne's, on the
# same few cores; one is enough to drain the burst after the load (DRAIN_LIMIT).
WORKER_THREADS = 1
# The worker yields the CPUs to daphne, which share this machine's few cores: it runs only when
# daphne leaves a core idle (SCHED_IDLE; nice 19 where chrt is missing).
WORKER_LOW_PRIORITY = ["chrt", "--idle", "0"] if shutil.which("chrt") else ["nice", "-n", "19"]
DB_POOL = 16  # daphne's psycopg pool (CC_DB_POOL)
DRAIN_LIMIT = 300.0  # seconds the worker gets to process every stored event after the load
TARGET = 3.0
WEBHOOK_PATH = "/webhooks/twilio/messaging/"
BASELINE_PATH = "/bench/insert/"
OUR_NUMBER = "+815012340000"


# --- processes ------------------------------------------------------------------------------------

class Server:
    """One daphne process (and optionally one celery worker) on the bench database. Logs:
    ``var/bench-webhook-daphne.log``, ``var/bench-webhook-worker.log``."""

    def __init__(self, db_url: str, *, worker: bool, pool: bool = True, worker_now: bool = True):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        bench_dir = str(REPO / "bench")
        env = dict(
            os.environ, DATABASE_URL=db_url, CC_EMBEDDED_WORKER="0", CC_PUBLIC_URL=self.base,
            ALLOWED_HOSTS="127.0.0.1,localhost", DJANGO_SETTINGS_MODULE="_webhook_settings",
            # daphne takes its connections from psycopg's pool (settings: CC_DB_POOL), unless --no-pool.
            CC_DB_POOL=str(DB_POOL if pool else 0), CC_DB_CONN_MAX_AGE="0",
            PYTHONPATH=os.pathsep.join(p for p in (bench_dir, str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        )
        env.setdefault("SECRET_KEY", "bench-only-secret-key")
        self.processes = Processes()
        self.daphne = self.processes.daphne("webhook-daphne", port=self.port, application="_webhook_asgi:application",
                                            env=env)
        self.worker_name = None
        self.worker_proc = None
        self._env = env
        if worker and worker_now:
            self.start_worker()

    def start_worker(self) -> None:
        from contactcenter.celery import app

        self.worker_name = f"bench-webhook-{os.getpid()}"
        self.worker_proc = self.processes.celery_worker(
            "webhook-worker", node=self.worker_name, pool="threads", concurrency=WORKER_THREADS,
            queues=celery_queues(app), prefix=tuple(WORKER_LOW_PRIORITY),
            # Long-lived worker threads keep their connections, as the Procfile runs them.
            env=dict(self._env, CC_DB_POOL="0", CC_DB_CONN_MAX_AGE="60"))

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        # GET on the webhook: 405 once Django is serving.
        self.processes.wait_http(self.daphne, "webhook-daphne", self.base + WEBHOOK_PATH, timeout=timeout)
        self.wait_worker(deadline)

    def wait_worker(self, deadline: float | None = None) -> None:
        if self.worker_name:
            from contactcenter.celery import app

            timeout = (deadline - time.monotonic()) if deadline else 60
            self.processes.wait_celery(self.worker_proc, "webhook-worker", app, self.worker_name,
                                       timeout=max(1.0, timeout))

    def tracebacks(self) -> int:
        """Tracebacks daphne logged (an exception in a view or in daphne itself)."""
        return self.processes.tracebacks("webhook-daphne")

    def stop(self) -> None:
        self.processes.stop()


# --- requests -------------------------------------------------------------------------------------

def sms_requests(base: str, path: str, count: int, tag: str) -> list[tuple[str, bytes, dict, str]]:
    """``count`` signed inbound SMS: (url, form body, headers, MessageSid), senders round robin."""
    from twilio.request_validator import RequestValidator

    from conversations.channels.twilio_client import auth_token
    from conversations.simulator.client import new_message_sid, twilio_sms_params

    validator = RequestValidator(auth_token())
    url = base + path
    out = []
    for i in range(count):
        sid = new_message_sid()
        params = twilio_sms_params(sender=f"+81901234{i % SENDERS:04d}", to=OUR_NUMBER, sid=sid,
                                   body=f"bench {tag} message {i}: is my order on its way?")
        headers = {"X-Twilio-Signature": validator.compute_signature(url, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        out.append((url, urllib.parse.urlencode(params).encode(), headers, sid))
    return out


async def _one(session, url: str, body: bytes, headers: dict) -> tuple[float, int | str]:
    start = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            await response.read()
            status = response.status
    except Exception as exc:  # noqa: BLE001 - a timeout or a refused/reset connection: an error
        status = type(exc).__name__
    return (time.perf_counter() - start) * 1000, status


def _session():
    import aiohttp

    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=MAX_CONNECTIONS, keepalive_timeout=60),
        timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT),
    )


async def _sequential(reqs) -> list[tuple[float, int | str]]:
    async with _session() as session:
        return [await _one(session, url, body, headers) for url, body, headers, _sid in reqs]


async def _open_loop(reqs, rate: float) -> dict:
    """Send request i at start + i/rate regardless of earlier answers; gather every answer."""
    loop = asyncio.get_running_loop()
    async with _session() as session:
        tasks, lags = [], []
        start = loop.time() + 0.1
        for i, (url, body, headers, _sid) in enumerate(reqs):
            due = start + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            lags.append(max(0.0, loop.time() - due) * 1000)
            tasks.append(asyncio.create_task(_one(session, url, body, headers)))
        sent_for = loop.time() - start
        results = await asyncio.gather(*tasks)
        elapsed = loop.time() - start
    return {"results": results, "lags": lags, "send_seconds": sent_for, "seconds": elapsed}


def summarise(results: list[tuple[float, int | str]]) -> dict:
    ok = [ms for ms, status in results if status == 200]
    errors: dict[str, int] = {}
    for _ms, status in results:
        if status != 200:
            errors[str(status)] = errors.get(str(status), 0) + 1
    return {
        "n": len(results), "ok": len(ok), "errors": sum(errors.values()), "error_kinds": errors,
        "p50": percentile(ok, 50) if ok else float("nan"), "p90": percentile(ok, 90) if ok else float("nan"),
        "p99": percentile(ok, 99) if ok else float("nan"), "max": max(ok) if ok else float("nan"),
    }


def fmt(s: dict) -> str:
    return (f"p50 {s['p50']:.1f} ms, p90 {s['p90']:.1f} ms, p99 {s['p99']:.1f} ms, max {s['max']:.1f} ms; "
            f"{s['ok']}/{s['n']} answered 200" + (f", errors {s['error_kinds']}" if s["errors"] else ""))


def warm_up(name: str, base: str, path: str) -> float:
    """WARMUP sequential requests; their median after the first third: the serial service time."""
    warm_results = asyncio.run(_sequential(sms_requests(base, path, WARMUP, f"{name}-warmup")))
    warm_errors = [s for _ms, s in warm_results if s != 200]
    if warm_errors:
        raise RuntimeError(f"{name} warm-up: {len(warm_errors)} of {WARMUP} not 200 (first: {warm_errors[0]}); "
                           "see var/bench-webhook-daphne.log")
    return statistics.median(ms for ms, _s in warm_results[WARMUP // 3:])


def load_round(name: str, index: int, base: str, path: str, rate: float, seconds: float) -> dict:
    """One open-loop round of ``rate``/s for ``seconds`` s: its summary, requests and answers."""
    reqs = sms_requests(base, path, max(1, int(rate * seconds)), f"{name}-r{index}")
    load = os.getloadavg()[0]
    phase = asyncio.run(_open_loop(reqs, rate))
    summary = summarise(phase["results"])
    summary.update(load=load, max_lag_ms=max(phase["lags"]), send_seconds=phase["send_seconds"],
                   seconds=phase["seconds"], reqs=reqs, results=phase["results"])
    return summary


def pooled(rounds: list[dict], serial_ms: float) -> dict:
    """Every round of one endpoint together: percentiles over all its requests, the worst lag, the
    busiest start, the longest round."""
    results = [r for one in rounds for r in one["results"]]
    summary = summarise(results)
    summary.update(serial_ms=serial_ms, load=max(one["load"] for one in rounds),
                   max_lag_ms=max(one["max_lag_ms"] for one in rounds),
                   send_seconds=max(one["send_seconds"] for one in rounds),
                   seconds=max(one["seconds"] for one in rounds),
                   reqs=[q for one in rounds for q in one["reqs"]], results=results)
    return summary


# --- checks ---------------------------------------------------------------------------------------

def _stored(model_field: tuple, sids: list[str]):
    model, field = model_field
    return model.objects.filter(**{f"{field}__in": sids})


def stored_counts(model_field: tuple, sids: list[str]) -> tuple[int, int]:
    """(rows for these sids, distinct sids among them) of ``(model, sid field)``."""
    from django.db.models import Count

    agg = _stored(model_field, sids).aggregate(rows=Count("id"), distinct=Count(model_field[1], distinct=True))
    return agg["rows"], agg["distinct"]


def stored_sids(model_field: tuple, sids: list[str]) -> set[str]:
    return set(_stored(model_field, sids).values_list(model_field[1], flat=True))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rate", type=float, default=RATE)
    parser.add_argument("--seconds", type=float, default=SECONDS, help="per round")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help="alternating rounds of each endpoint")
    parser.add_argument("--no-worker", action="store_true", help="no celery worker (events stored, not processed)")
    parser.add_argument("--worker-during-load", action="store_true",
                        help="run the worker (idle priority) during the load instead of after it")
    parser.add_argument("--no-pool", action="store_true", help="daphne opens a connection per request")
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.CC_PRODUCTION:
        print("webhook bench needs production mode (PostgreSQL + Redis, daphne): skipped")
        print(bench_line("webhook", ratio=0.0, target=TARGET, db="sqlite", skipped=1))
        return 0

    from contactcenter.celery import app
    from contactcenter.models import WorkerHeartbeat
    from conversations.models import Channel, Conversation, Inbox, Message, TwilioInboundEvent

    began = time.monotonic()
    with bench_database() as connection:
        db_url = database_url(connection)
        # Our number is a configured inbox: a message to an address no inbox has is a failed event.
        Inbox.objects.create(name="Bench SMS", kind=Channel.SMS, address=OUR_NUMBER)
        app.control.purge()
        server = None
        try:
            server = Server(db_url, worker=not args.no_worker, pool=not args.no_pool,
                            worker_now=args.worker_during_load)
            server.wait_ready()
            load_start = os.getloadavg()[0]
            serial = {"baseline": warm_up("baseline", server.base, BASELINE_PATH),
                      "webhook": warm_up("webhook", server.base, WEBHOOK_PATH)}
            rounds = alternate(
                args.rounds,
                lambda i: load_round("baseline", i, server.base, BASELINE_PATH, args.rate, args.seconds),
                lambda i: load_round("webhook", i, server.base, WEBHOOK_PATH, args.rate, args.seconds))
            base = pooled([b for b, _h in rounds], serial["baseline"])
            hook = pooled([h for _b, h in rounds], serial["webhook"])
            ratios = RoundRatios([b["p99"] for b, _h in rounds], [h["p99"] for _b, h in rounds], label="p99 webhook / p99 baseline")
            if not args.no_worker and not args.worker_during_load:
                server.start_worker()
                server.wait_worker()

            # Requests the client gave up on (timeouts) may still be running in daphne, and the worker
            # is still processing what was stored: wait for both.
            settle_seconds, waiting = drain(worker=not args.no_worker)
            # Every sid answered 200 is exactly one Message (without a worker: one stored event).
            stored = (Message, "provider_id") if not args.no_worker else (TwilioInboundEvent, "message_sid")
            sids = [sid for _u, _b, _h, sid in hook["reqs"]]
            ok_sids = [sid for (_u, _b, _h, sid), (_ms, st) in zip(hook["reqs"], hook["results"], strict=True)
                       if st == 200]
            rows, distinct = stored_counts(stored, sids)
            missing = len(set(ok_sids) - stored_sids(stored, ok_sids))
            events = TwilioInboundEvent.objects.filter(message_sid__in=sids)
            failed = events.filter(failed_at__isnull=False).count()
            lags = sorted((e.processed_at - e.received_at).total_seconds() * 1000
                          for e in events.filter(processed_at__isnull=False).only("received_at", "processed_at"))
            # Retries of SMS that were stored (answered 200): Twilio re-posting what we already have.
            ok = set(ok_sids)
            step = max(1, len(ok) // RETRIES)
            retry = [r for r in hook["reqs"] if r[3] in ok][::step][:RETRIES]
            retry_sids = [r[3] for r in retry]
            events_of_retries = (TwilioInboundEvent, "message_sid")
            before = stored_counts(stored, retry_sids)[0] + stored_counts(events_of_retries, retry_sids)[0]
            retry_results = asyncio.run(_sequential(retry))
            retry_errors = sum(1 for _ms, st in retry_results if st != 200)
            time.sleep(RETRY_SETTLE)  # a retry must queue nothing; if it did, give the worker time to show it
            new_rows = stored_counts(stored, retry_sids)[0] + stored_counts(events_of_retries, retry_sids)[0] - before
            rows_after, distinct_after = stored_counts(stored, sids)
            duplicates = (rows_after - distinct_after) + new_rows
            baseline_rows = WorkerHeartbeat.objects.filter(token__in=[s for *_x, s in base["reqs"]]).count()
            conversations = Conversation.objects.count()
            queued = broker_backlog()
            tracebacks = server.tracebacks()
            load_end = os.getloadavg()[0]
        finally:
            if server is not None:
                server.stop()
            try:
                app.control.purge()
            except Exception:  # noqa: BLE001
                pass
            connection.close()

    errors = hook["errors"] + base["errors"] + retry_errors
    rate = int(args.rate) if args.rate == int(args.rate) else args.rate
    seconds = int(args.seconds) if args.seconds == int(args.seconds) else args.seconds
    connections = f"psycopg pool of {DB_POOL}" if not args.no_pool else "a connection per request"
    worker = (f"one celery worker (-P threads -c {WORKER_THREADS}, {' '.join(WORKER_LOW_PRIORITY)})"
              if not args.no_worker else "no celery worker")
    print(f"database: postgresql + redis; one daphne process on 127.0.0.1:{server.port} ({connections}); {worker}; "
          f"{os.cpu_count()} CPUs, load average {load_start:.1f} at start, {load_end:.1f} at end")
    if load_start > 1.5:
        print("note: the machine was already busy when the bench started (other processes); latencies include that")
    print(f"open loop: {rate}/s, {args.rounds} alternating rounds of {seconds} s per endpoint, {SENDERS} senders, aiohttp keep-alive pool "
          f"(max {MAX_CONNECTIONS} connections), timeout {REQUEST_TIMEOUT:g} s")
    for name, s in (("baseline (1 INSERT view)", base), ("webhook (signed inbound SMS)", hook)):
        print(f"{name}: serial {s['serial_ms']:.1f} ms/request (sequential warm-up median, "
              f"~{1000 / s['serial_ms']:.0f}/s for one daphne); under load: {fmt(s)}")
        print(f"    every round sent in at most {s['send_seconds']:.1f} s (max client lag {s['max_lag_ms']:.0f} ms), "
              f"last answer at most {s['seconds']:.1f} s after its start; load average at most {s['load']:.1f} "
              f"at a round's start")
    processing = (f"the worker processed the events {percentile(lags, 50) / 1000:.1f} s (p50), "
                  f"{percentile(lags, 99) / 1000:.1f} s (p99) after they were received"
                  if lags else "none processed")
    print(f"after the webhook phase: settled in {settle_seconds:.1f} s ({waiting} events still waiting); "
          f"{processing}; {failed} failed")
    print(f"stored: {rows} {stored[0].__name__} rows for {len(sids)} sids ({distinct} distinct), {missing} answered "
          f"200 but not stored; {conversations} conversations; baseline rows {baseline_rows}/{len(base['reqs'])}")
    print(f"retries: {len(retry)} already-sent SMS posted again: {len(retry) - retry_errors} answered 200, "
          f"{new_rows} new rows for them; tasks left on the broker at the end: {queued}; "
          f"tracebacks in var/bench-webhook-daphne.log: {tracebacks}")
    if base["errors"]:
        print("note: the baseline itself had errors (overloaded): its p99 covers only the 200s and the ratio "
              "understates the webhook's cost")
    print(f"{ratios.describe()} (target {TARGET:g}); total {time.monotonic() - began:.0f} s")
    print(bench_line(
        "webhook", ratio=ratios, target=TARGET, db="postgresql", rate=rate, seconds=seconds,
        webhook_p50_ms=hook["p50"], webhook_p99_ms=hook["p99"], baseline_p50_ms=base["p50"],
        baseline_p99_ms=base["p99"], errors=errors, duplicates=duplicates, sent=hook["n"], missing=missing,
        webhook_serial_ms=hook["serial_ms"], baseline_serial_ms=base["serial_ms"],
        max_lag_ms=round(max(hook["max_lag_ms"], base["max_lag_ms"])), worker=0 if args.no_worker else 1,
        worker_during_load=int(bool(args.worker_during_load)),
        failed=failed, processed_p99_s=round(percentile(lags, 99) / 1000, 1) if lags else -1,
        pool=0 if args.no_pool else DB_POOL,
        load_start=round(load_start, 1),
    ))
    if errors or duplicates or missing:
        print(f"FAIL: errors={errors} duplicates={duplicates} missing={missing}", file=sys.stderr)
        return 1
    return 0


def drain(*, worker: bool, limit: float = DRAIN_LIMIT) -> tuple[float, int]:
    """Wait until no event has been stored for 2 s and, with a worker, none waits for processing
    (at most ``limit`` s). Returns (seconds waited, events still waiting)."""
    from conversations.models import TwilioInboundEvent

    waiting_events = TwilioInboundEvent.objects.filter(processed_at__isnull=True, failed_at__isnull=True)
    start = last_change = time.monotonic()
    count, waiting = TwilioInboundEvent.objects.count(), -1
    while time.monotonic() - start < limit:
        time.sleep(0.5)
        now = TwilioInboundEvent.objects.count()
        if now != count:
            count, last_change = now, time.monotonic()
            continue
        waiting = waiting_events.count() if worker else 0
        if time.monotonic() - last_change >= 2.0 and waiting == 0:
            break
    return time.monotonic() - start, waiting


def broker_backlog() -> int:
    from contactcenter.celery import app

    try:
        with app.connection_for_read() as conn:
            return conn.default_channel.client.llen(app.conf.task_default_queue)
    except Exception:  # noqa: BLE001 - informational only
        return -1


if __name__ == "__main__":
    sys.exit(main())
