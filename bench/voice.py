"""bench/voice: callers on hold polling our waitUrl, plus new calls, signed, through daphne.

Set-up: a throwaway PostgreSQL database, one ``daphne`` serving ``bench/_voice_asgi.py`` (the
project's application and settings plus the baseline ``bench/twiml/``), ``CC_PUBLIC_URL`` its own
address so Twilio signatures validate as behind a proxy. A voice line whose IVR sends key 1 to the
Support queue; no agent is available, so every caller keeps waiting (routing tasks are queued to
the broker and purged: what is measured is the TwiML path alone). HOLDERS callers dial and choose
1 first (sequentially, not measured).

Load, open loop (asyncio + aiohttp; a request leaves at its scheduled time whatever the earlier
ones did, as Twilio's do): each holder polls the waitUrl every POLL s (staggered), and NEW_RATE new
calls a second dial (incoming webhook) and, once the menu's TwiML has come back and a moment
has passed, choose 1 (gather webhook: queued). Every
request is signed. The baseline round sends the same schedule (same bodies) to a view answering
fixed TwiML through the same stack. ROUNDS alternating rounds of SECONDS s (baseline, voice …);
the ratio is the median over the rounds of p99 voice / p99 baseline (target 3).

Then, with no new call arriving, every queued caller polls the waitUrl once (open loop): the
positions we announce must be exactly 1..N, each told to one caller (``same_position``: callers
told a position another caller was told; ``wrong_position``: callers told none, or one outside
1..N). Exits 1 on errors (any answer but 200) or inexact positions.

``BENCH_SMOKE=1``: 10 holders, 5 new calls/s, two rounds of 1 s (``_harness``).
"""

import argparse
import asyncio
import os
import re
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
    database_url,
    free_port,
)
from webhook import _session, fmt, summarise

HOLDERS = 10 if SMOKE else 100
NEW_RATE = 5 if SMOKE else 20  # new calls per second
# Seconds between a holder's waitUrl requests: Twilio asks again when the wait TwiML has played
# (our announcements and the 14 s of hold music: about 25 s); 10 s is a busier line than that.
POLL = 1.0 if SMOKE else 10.0
SECONDS = 1 if SMOKE else 6  # per round
CHOOSE_AFTER = 0.2  # seconds between a new call's dial and its menu choice
TARGET = 3.0
OUR_NUMBER = "+815031230099"
VOICE = "/webhooks/twilio/voice/"
GATHER = VOICE + "gather/?attempt=0"
WAIT = VOICE + "wait/"
BASELINE = "/bench/twiml/"
POSITION = re.compile(r"現在(\d+)番目")


class Server:
    def __init__(self, db_url: str):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        bench_dir = str(REPO / "bench")
        env = dict(
            os.environ, DATABASE_URL=db_url, CC_EMBEDDED_WORKER="0", CC_PUBLIC_URL=self.base,
            ALLOWED_HOSTS="127.0.0.1,localhost", DJANGO_SETTINGS_MODULE="_voice_settings", CC_DB_POOL="16",
            CC_DB_CONN_MAX_AGE="0",
            PYTHONPATH=os.pathsep.join(p for p in (bench_dir, str(REPO), os.environ.get("PYTHONPATH", "")) if p),
        )
        env.setdefault("SECRET_KEY", "bench-only-secret-key")
        self.processes = Processes()
        self.daphne = self.processes.daphne("voice-daphne", port=self.port, application="_voice_asgi:application",
                                            env=env)
        self.processes.wait_http(self.daphne, "voice-daphne", self.base + VOICE, timeout=60)

    def stop(self) -> None:
        self.processes.stop()


def configure() -> None:
    from conversations.models import Inbox, Queue

    support = Queue.objects.create(name="Support", slug="support", is_default=True, channels=["voice"])
    Inbox.objects.create(kind="voice", name="Bench line", address=OUR_NUMBER, default_queue=support, settings={"ivr": {
        "greeting": {"ja": "お電話ありがとうございます。", "en": "Thank you for calling."},
        "menu": {"ja": "ご注文は1を押してください。", "en": "For orders press 1."},
        "options": [{"key": "1", "name": "orders", "queue": "support"}], "default_option": "orders"}})


class Caller:
    """One caller's signed requests (signature over ``CC_PUBLIC_URL`` + path, as Twilio signs)."""

    def __init__(self, base: str, index: int, tag: str):
        from twilio.request_validator import RequestValidator

        from conversations.channels.twilio_client import auth_token
        from conversations.simulator.voice import call_params, new_call_sid

        self.base, self.validator = base, RequestValidator(auth_token())
        self.params = call_params(call_sid=new_call_sid(), sender=f"+8190{index:08d}", to=OUR_NUMBER)
        self.tag = tag

    def request(self, path: str, *, url_path: str | None = None, **extra) -> tuple[str, bytes, dict]:
        params = {**self.params, **extra}
        signed_url = self.base + path
        headers = {"X-Twilio-Signature": self.validator.compute_signature(signed_url, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        return self.base + (url_path or path), urllib.parse.urlencode(params).encode(), headers


async def _post(session, url, body, headers, kind):
    start = time.perf_counter()
    try:
        async with session.post(url, data=body, headers=headers) as response:
            text = await response.read()
            status = response.status
    except Exception as exc:  # noqa: BLE001 - a timeout or a reset connection: an error
        text, status = b"", type(exc).__name__
    return (time.perf_counter() - start) * 1000, status, kind, text


async def _schedule(requests: list[tuple[float, list[tuple], str]]) -> list[tuple[float, int | str, str, bytes]]:
    """Open loop: each entry (due, steps, kind) starts at start + due whatever earlier ones did;
    its steps ((url, body, headers), pause) run in order, each after the previous one's answer and
    the pause (a call's menu choice comes after the menu was played, as with Twilio). Every
    answer, with its body."""
    loop = asyncio.get_running_loop()

    async def run(session, steps, kind):
        answers = []
        for (url, body, headers), pause, step_kind in steps:
            if pause:
                await asyncio.sleep(pause)
            answers.append(await _post(session, url, body, headers, step_kind or kind))
        return answers

    async with _session() as session:
        tasks = []
        start = loop.time() + 0.1
        for due, steps, kind in sorted(requests, key=lambda r: r[0]):
            delay = start + due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(run(session, steps, kind)))
        return [answer for answers in await asyncio.gather(*tasks) for answer in answers]


def _single(request) -> list:
    return [(request, 0.0, "")]


def round_requests(base: str, holders: list[Caller], index: int, *, baseline: bool, seconds: float,
                   new_calls: list[Caller]) -> list:
    """The round's schedule: every holder's polls, and new calls dialing then choosing 1."""
    requests = []
    for h, holder in enumerate(holders):
        due = (h / max(1, len(holders))) * POLL
        while due < seconds:
            requests.append((due, _single(holder.request(WAIT, url_path=BASELINE if baseline else None,
                                                         QueuePosition="1", QueueTime=str(int(due)))), "wait"))
            due += POLL
    for n in range(int(NEW_RATE * seconds)):
        caller = Caller(base, 500_000 + index * 10_000 + n + (5_000 if baseline else 0), f"r{index}")
        due = n / NEW_RATE
        requests.append((due, [
            (caller.request(VOICE, url_path=BASELINE if baseline else None), 0.0, "dial"),
            (caller.request(GATHER, url_path=BASELINE if baseline else None, Digits="1"), CHOOSE_AFTER, "choose"),
        ], "call"))
        if not baseline:
            new_calls.append(caller)
    return requests


def p99_of(results) -> dict:
    return summarise([(ms, status) for ms, status, _kind, _text in results])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--holders", type=int, default=HOLDERS)
    parser.add_argument("--seconds", type=float, default=SECONDS)
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings

    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or not settings.CC_PRODUCTION:
        print("voice bench needs production mode (PostgreSQL + Redis, daphne): skipped")
        print(bench_line("voice", ratio=0.0, target=TARGET, db="sqlite", skipped=1))
        return 0
    from contactcenter.celery import app

    with bench_database() as connection:
        db_url = database_url(connection)
        app.control.purge()
        configure()
        server = Server(db_url)
        try:
            holders = [Caller(server.base, i, "holder") for i in range(args.holders)]
            setup = [(i * 0.02, [(c.request(VOICE), 0.0, "dial"), (c.request(GATHER, Digits="1"), 0.0, "choose")], "call")
                     for i, c in enumerate(holders)]
            setup_results = asyncio.run(_schedule(setup))
            setup_errors = [s for _ms, s, _k, _t in setup_results if s != 200]
            if setup_errors:
                print(f"set-up: {len(setup_errors)} callers not queued (first: {setup_errors[0]}); see var/bench-voice-daphne.log")
                return 1
            new_calls: list[Caller] = []
            rounds = alternate(
                args.rounds,
                lambda i: asyncio.run(_schedule(round_requests(server.base, holders, i, baseline=True,
                                                               seconds=args.seconds, new_calls=new_calls))),
                lambda i: asyncio.run(_schedule(round_requests(server.base, holders, i, baseline=False,
                                                               seconds=args.seconds, new_calls=new_calls))))
            base_rounds = [p99_of(b) for b, _v in rounds]
            voice_rounds = [p99_of(v) for _b, v in rounds]
            ratios = RoundRatios([b["p99"] for b in base_rounds], [v["p99"] for v in voice_rounds],
                                 label="p99 voice / p99 fixed TwiML")
            everything = [r for _b, v in rounds for r in v]
            voice_all = p99_of(everything)
            by_kind = {kind: p99_of([r for r in everything if r[2] == kind]) for kind in ("wait", "dial", "choose")}

            # Quiescent: every queued caller asks once where they stand.
            queued = holders + new_calls
            check = [(i / 50.0, _single(c.request(WAIT, QueuePosition="1", QueueTime="60")), "wait")
                     for i, c in enumerate(queued)]
            answers = asyncio.run(_schedule(check))
            told = []
            for _ms, status, _kind, text in answers:
                match = POSITION.search(text.decode("utf-8", "replace")) if status == 200 else None
                told.append(int(match.group(1)) if match else None)
            valid = [p for p in told if p is not None and 1 <= p <= len(queued)]
            same_position = len(valid) - len(set(valid))
            wrong_position = len(told) - len(valid)
            check_errors = sum(1 for _ms, s, _k, _t in answers if s != 200)
            errors = voice_all["errors"] + sum(b["errors"] for b in base_rounds) + check_errors
            tracebacks = server.processes.tracebacks("voice-daphne")
        finally:
            server.stop()
            app.control.purge()

    print(f"holders {args.holders} polling every {POLL:g} s + {NEW_RATE}/s new calls, {args.rounds} rounds of {args.seconds:g} s")
    print(f"voice (all requests): {fmt(voice_all)}")
    for kind, summary in by_kind.items():
        if summary["n"]:
            print(f"  {kind}: {fmt(summary)}")
    print("baseline rounds p99: " + ", ".join(f"{b['p99']:.1f}" for b in base_rounds) + " ms")
    print(ratios.describe())
    print(f"positions: {len(queued)} callers waiting, told {len(set(valid))} distinct positions; "
          f"same_position={same_position} wrong_position={wrong_position}; daphne tracebacks {tracebacks}")
    print(bench_line("voice", ratio=ratios, target=TARGET, p99_ms=voice_all["p99"], errors=errors,
                     same_position=same_position, wrong_position=wrong_position, callers=len(queued)))
    return 1 if errors or same_position or wrong_position else 0


if __name__ == "__main__":
    sys.exit(main())
