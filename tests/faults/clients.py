"""What the customers and the agents do in the fault scenarios, as their real clients do it:
Twilio's signed webhooks (retried on anything but a 2xx, as Twilio does), SMTP (retried on a 4xx,
as a sending server does), the widget's websocket (a message resent with the same id until the
server echoes it), and an agent's console socket that reconnects and catches up by sequence
number. Each message carries a unique token in its text: the suite counts the stored ones by it."""

import asyncio
import json
import os
import re
import smtplib
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from email.message import EmailMessage

import aiohttp
from twilio.request_validator import RequestValidator

from . import seed

TOKEN = re.compile(r"tok-[a-z0-9]+-[a-z]+-\d+")
SMS_PATH = "/webhooks/twilio/messaging/"


def scale() -> float:
    """``CC_FAULTS_SCALE`` (default 1): the burst sizes are multiplied by it."""
    try:
        return max(0.01, float(os.environ.get("CC_FAULTS_SCALE", "1")))
    except ValueError:
        return 1.0


def scaled(count: int) -> int:
    return max(1, round(count * scale()))


def token(run: str, kind: str, index: int) -> str:
    return f"tok-{run}-{kind}-{index}"


@dataclass
class Tally:
    """What one client did: tokens it was told were accepted, and the answers it got."""

    accepted: set[str] = field(default_factory=set)
    sent: set[str] = field(default_factory=set)  # every token the client tried to deliver
    answers: dict[str, int] = field(default_factory=dict)
    attempts: int = 0

    def answered(self, what: str) -> None:
        self.answers[what] = self.answers.get(what, 0) + 1


# --- SMS: Twilio's webhooks -----------------------------------------------------------------------

def _auth_token(env: dict) -> str:
    from conversations.channels.twilio_client import auth_token

    return auth_token()


async def sms_burst(base: str, *, run: str, count: int, rate: float, tally: Tally, senders: int = 50,
                    give_up_after: float = 150.0, first_index: int = 0) -> None:
    """``count`` signed inbound SMS at ``rate`` a second, open loop, from ``senders`` phone numbers
    (message ``i`` from number ``i % senders``; ``first_index`` numbers a later round on). Anything but a 2xx (or no
    answer) is retried with the same MessageSid and signature after a back-off, as Twilio retries;
    a 200 means the message was accepted and must never be lost."""
    from conversations.simulator.client import new_message_sid, twilio_sms_params

    validator = RequestValidator(_auth_token({}))
    url = base + SMS_PATH
    deadline = time.monotonic() + give_up_after

    async def one(session, index: int) -> None:
        tok = token(run, "sms", index)
        tally.sent.add(tok)
        params = twilio_sms_params(sender=f"+81901234{index % senders:04d}", to=seed.SMS_NUMBER, sid=new_message_sid(),
                                   body=f"{tok} where is my order?")
        headers = {"X-Twilio-Signature": validator.compute_signature(url, params),
                   "Content-Type": "application/x-www-form-urlencoded"}
        body = urllib.parse.urlencode(params).encode()
        delay = 0.5
        while True:
            tally.attempts += 1
            try:
                async with session.post(url, data=body, headers=headers) as response:
                    await response.read()
                    status = response.status
            except Exception as exc:  # noqa: BLE001 - refused or reset: Twilio retries those too
                status = type(exc).__name__
            tally.answered(str(status))
            if status == 200:
                tally.accepted.add(tok)
                return
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, 4.0)

    async with _session() as session:
        tasks = []
        start = time.monotonic()
        for number in range(count):
            wait = start + number / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            tasks.append(asyncio.create_task(one(session, first_index + number)))
        await asyncio.gather(*tasks)


def _session() -> aiohttp.ClientSession:
    return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=64),
                                 timeout=aiohttp.ClientTimeout(total=20))


# --- email: SMTP ----------------------------------------------------------------------------------

def _email(run: str, index: int) -> tuple[str, bytes]:
    tok = token(run, "email", index)
    message = EmailMessage()
    message["From"] = f"Customer {index} <customer{index % 40}@mail.example.com>"
    message["To"] = seed.EMAIL_ADDRESS
    message["Subject"] = f"Order question {index}"
    message["Message-ID"] = f"<{uuid.uuid4().hex}@mail.example.com>"
    message.set_content(f"{tok} Hello, my parcel has not arrived.\n")
    return tok, message.as_bytes()


def smtp_burst(port: int, *, run: str, count: int, tally: Tally, give_up_after: float = 150.0,
               first_index: int = 0) -> None:
    """``count`` mails over SMTP, one connection each as many senders would. A 4xx, or no answer,
    is retried with the same bytes (the same Message-ID) as a sending server's queue does; a
    250 means the mail was accepted and must never be lost."""
    deadline = time.monotonic() + give_up_after
    for index in range(first_index, first_index + count):
        tok, raw = _email(run, index)
        tally.sent.add(tok)
        delay = 0.5
        while True:
            tally.attempts += 1
            try:
                with smtplib.SMTP("127.0.0.1", port, timeout=20) as smtp:
                    smtp.sendmail(f"customer{index % 40}@mail.example.com", [seed.EMAIL_ADDRESS], raw)
                tally.answered("250")
                tally.accepted.add(tok)
                break
            except smtplib.SMTPRecipientsRefused as exc:
                codes = [code for code, _ in exc.recipients.values()]
                tally.answered(f"RCPT {codes}")
                if any(code >= 500 for code in codes):
                    break  # a permanent refusal: the sending server bounces the mail
            except smtplib.SMTPResponseException as exc:
                tally.answered(str(exc.smtp_code))
                if exc.smtp_code < 400 or exc.smtp_code >= 500:
                    break  # a permanent refusal: the sender bounces it (and the suite reports it)
            except (OSError, smtplib.SMTPException) as exc:
                tally.answered(type(exc).__name__)
            if time.monotonic() > deadline:
                break
            time.sleep(delay)
            delay = min(delay * 2, 4.0)


# --- web chat: the widget's websocket -------------------------------------------------------------

async def widget_burst(ws_base: str, *, run: str, visitors: int, per_visitor: int, tally: Tally,
                       pause: float = 0.05, give_up_after: float = 150.0, visitor_tokens: list[str] | None = None,
                       first_message: int = 0) -> None:
    """``visitors`` widget visitors, each sending ``per_visitor`` messages one after the other and
    waiting for each one's echo; without an echo in a few seconds, or when the socket drops, the
    widget reconnects and resends the same client id (the server stores it once).
    ``visitor_tokens``: the same visitors again (a later round: ``first_message`` numbers on)."""
    deadline = time.monotonic() + give_up_after
    url = f"{ws_base}/ws/widget/?widget={seed.WIDGET_ID}"

    async def visitor(number: int) -> None:
        visitor_token = visitor_tokens[number] if visitor_tokens else uuid.uuid4().hex
        pending = [(f"{run}-{number}-{i}", token(run, "widget", number * 1000 + i))
                   for i in range(first_message, first_message + per_visitor)]
        tally.sent.update(tok for _, tok in pending)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None)) as session:
            while pending and time.monotonic() < deadline:
                try:
                    async with session.ws_connect(url, headers={"Origin": "http://127.0.0.1"}, heartbeat=None) as ws:
                        await ws.send_json({"type": "hello", "widget": seed.WIDGET_ID, "token": visitor_token})
                        while pending:
                            client_id, tok = pending[0]
                            tally.attempts += 1
                            await ws.send_json({"type": "message", "id": client_id, "text": f"{tok} is anyone there?"})
                            if await _echoed(ws, client_id, tally):
                                tally.accepted.add(tok)
                                pending.pop(0)
                                await asyncio.sleep(pause)
                            else:
                                break  # reconnect and resend
                except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as exc:
                    tally.answered(type(exc).__name__)
                await asyncio.sleep(0.5)

    await asyncio.gather(*(visitor(n) for n in range(visitors)))


async def _echoed(ws, client_id: str, tally: Tally, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while True:
        left = end - time.monotonic()
        if left <= 0:
            tally.answered("no echo")
            return False
        try:
            frame = await ws.receive(timeout=left)
        except asyncio.TimeoutError:
            tally.answered("no echo")
            return False
        if frame.type != aiohttp.WSMsgType.TEXT:
            tally.answered(f"closed {ws.close_code}")
            return False
        data = json.loads(frame.data)
        if data.get("type") == "message" and data.get("client_id") == client_id:
            tally.answered("echo")
            return True
        if data.get("type") == "error":
            tally.answered(f"error {data.get('code')} {data.get('reason')}")
            if data.get("code") != 429:
                return False


# --- an agent's console -----------------------------------------------------------------------------

async def console_login(session: aiohttp.ClientSession, base: str, username: str, password: str) -> None:
    async with session.get(base + "/accounts/login/") as response:
        await response.read()
    csrf = session.cookie_jar.filter_cookies(base).get("csrftoken")
    form = {"username": username, "password": password, "csrfmiddlewaretoken": csrf.value if csrf else ""}
    async with session.post(base + "/accounts/login/", data=form, headers={"Referer": base + "/accounts/login/"},
                            allow_redirects=False) as response:
        await response.read()
        assert response.status == 302, f"login of {username} answered {response.status}"


@dataclass
class ConsoleView:
    """What one console holds: per conversation, the sequence numbers it was shown (live events and
    catch-ups), and how often the same number came twice from the server's catch-up."""

    seqs: dict[int, set[int]] = field(default_factory=dict)
    customers: dict[int, int] = field(default_factory=dict)  # conversation -> customer
    catchup_repeats: int = 0
    live_repeats: int = 0  # the same entry pushed live twice
    reconnects: int = 0
    live_events: int = 0
    connected_at: float = 0.0  # time.monotonic() of the last (re)connect
    synced_at: float = 0.0  # time.monotonic() of the last completed /console/sync/
    live: dict[int, set[int]] = field(default_factory=dict)  # conversation -> seqs pushed live

    def seen_map(self, customer: int) -> dict[str, int]:
        return {str(c): max(s) for c, s in self.seqs.items() if self.customers.get(c) == customer and s}


async def console_follow(base: str, ws_base: str, *, username: str, password: str, view: ConsoleView,
                         stop: asyncio.Event, sync_seconds: float = 2.0) -> None:
    """An agent's console, as static/js/console.js behaves: a socket on /ws/console/ recording every
    ``message.created``; a live entry numbered past the next one expected catches its customer up
    first (/console/customers/<id>/catchup/, from the last sequence numbers seen); whenever the
    socket drops, it reconnects and catches up every customer it knows; and after each reconnect
    and every ``sync_seconds`` it compares its work with /console/sync/ (the database's view of
    the agent's conversations) and catches up every conversation found newer, opening the ones it
    never heard of, as an agent does from the refreshed work list."""
    # unsafe: keep cookies set by an IP address host (127.0.0.1), which aiohttp drops by default.
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30),
                                     cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:
        await console_login(session, base, username, password)
        first = True
        while not stop.is_set():
            try:
                async with session.ws_connect(ws_base + "/ws/console/", headers={"Origin": base},
                                              heartbeat=None) as ws:
                    view.connected_at = time.monotonic()
                    if not first:
                        view.reconnects += 1
                        await console_catch_up(session, base, view)
                        await console_sync(session, base, view)
                    first = False
                    next_sync = time.monotonic() + sync_seconds
                    while not stop.is_set():
                        if time.monotonic() >= next_sync:
                            await console_sync(session, base, view)
                            next_sync = time.monotonic() + sync_seconds
                        try:
                            frame = await ws.receive(timeout=0.5)
                        except asyncio.TimeoutError:
                            continue
                        if frame.type != aiohttp.WSMsgType.TEXT:
                            break
                        data = json.loads(frame.data)
                        if data.get("type") == "message.created":
                            view.live_events += 1
                            behind = _behind(view, data)
                            if behind is not None:
                                # An entry before this one never came: catch up from what was seen.
                                await console_catch_up(session, base, view, customers=[behind], whole=False)
                            new_customer = _record(view, data)
                            if new_customer is not None:
                                # The sidebar shows the new conversation and the agent opens it:
                                # the pane loads the customer's whole timeline.
                                await console_catch_up(session, base, view, customers=[new_customer])
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError):
                pass
            if not stop.is_set():
                await asyncio.sleep(0.5)


async def console_sync(session: aiohttp.ClientSession, base: str, view: ConsoleView) -> None:
    """/console/sync/: catch up each of the agent's conversations the database holds newer entries of."""
    async with session.get(base + "/console/sync/") as response:
        payload = await response.json()
    newer: dict[int, bool] = {}  # customer -> whether the console knew them
    for conversation in payload["conversations"]:
        seen = view.seqs.get(conversation["id"], set())
        if conversation["last_seq"] > max(seen, default=0):
            known = conversation["customer"] in view.customers.values()
            newer[conversation["customer"]] = known
            view.customers.setdefault(conversation["id"], conversation["customer"])
    for customer, known in newer.items():
        await console_catch_up(session, base, view, customers=[customer], whole=not known)
    view.synced_at = time.monotonic()


def _behind(view: ConsoleView, data: dict) -> int | None:
    """The customer to catch up when a live entry skips sequence numbers the console never got."""
    conversation, seq, customer = data.get("conversation"), data.get("seq"), data.get("customer")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    if isinstance(customer, dict):
        customer = customer.get("id")
    seen = view.seqs.get(conversation)
    if not seen or not isinstance(seq, int) or not isinstance(customer, int) or seq <= max(seen) + 1:
        return None
    return customer


def _record(view: ConsoleView, data: dict) -> int | None:
    """Record a live entry; the customer if the console had not heard of them before."""
    conversation = data.get("conversation")
    if isinstance(conversation, dict):
        conversation = conversation.get("id")
    seq = data.get("seq")
    customer = data.get("customer")
    if isinstance(customer, dict):
        customer = customer.get("id")
    if not isinstance(conversation, int) or not isinstance(seq, int):
        return None
    live = view.live.setdefault(conversation, set())
    if seq in live:
        view.live_repeats += 1
    live.add(seq)
    view.seqs.setdefault(conversation, set()).add(seq)
    if not isinstance(customer, int):
        return None
    new = customer not in view.customers.values()
    view.customers[conversation] = customer
    return customer if new else None


async def console_catch_up(session: aiohttp.ClientSession, base: str, view: ConsoleView,
                           customers: list[int] | None = None, whole: bool = True) -> None:
    """After a reconnect: every known customer from what the console saw. ``customers``: those
    only, from what was seen of them, or with ``whole`` a pane opened on them, which loads their
    whole timeline (nothing seen yet)."""
    for customer in customers if customers is not None else sorted(set(view.customers.values())):
        seen = {} if customers is not None and whole else view.seen_map(customer)
        complete = False
        while not complete:
            query = urllib.parse.urlencode({"seen": json.dumps(seen)})
            async with session.get(f"{base}/console/customers/{customer}/catchup/?{query}") as response:
                payload = await response.json()
            complete = payload.get("complete", True)
            for entry in payload.get("entries", []):
                conversation, seq = entry["conversation"], entry["seq"]
                if seq is None:
                    continue
                if seq <= int(seen.get(str(conversation), 0)):
                    view.catchup_repeats += 1  # the server sent something the console had said it saw
                view.seqs.setdefault(conversation, set()).add(seq)
                view.customers.setdefault(conversation, customer)
            seen = {str(k): v for k, v in payload.get("seen", seen).items()}
            if not complete:
                break  # the real console reloads the pane then; the final check reads the rest
