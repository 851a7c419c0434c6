"""Presence the agent does not pick: signing out, and a console nobody has open any more, put the
agent offline, as Twilio Flex does (logout sets the worker Offline, and so does a Flex UI that
stays disconnected).

Offline, not merely unavailable: pending offers are rescinded at once (they go to the next agent)
instead of each customer waiting out an offer timeout, and the queues' offline policy
(``routing.offline_requeue``, which only looks at offline agents) takes over their conversations.

Which consoles are open is not in the database. Every console socket writes "agent N seen at T"
to Django's cache (Redis in production, shared by every daphne process and the workers; the
process's own memory in the embedded mode, where daphne and the tick are one process): on
connect, on its traffic (the console pings every 25 s) and on disconnect. The tick job puts an
available agent offline once no console of theirs has been seen for the grace period. Timestamps,
not connection counts: a count kept by several processes goes wrong for good as soon as one of
them dies without running its disconnects, and a reload (disconnect, then connect) or a network
blip would have to be told apart from leaving; a timestamp just gets older, and several tabs or
processes writing it only make it newer.
"""

import logging
import time

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from ..models import Agent, PresenceState, presence_label
from .offers import pending_offers_rescind
from .presence import agent_presence_set, presence_record

logger = logging.getLogger(__name__)

OFFLINE_PRESENCE = "Offline"
# The ``reason`` of the ``agent.presence`` event: they signed out; the tick found no console of theirs.
REASON_SIGNED_OUT = "signed_out"
REASON_DISCONNECTED = "disconnected"

_SEEN_KEY = "cc:console-seen:{}"
_NOTICE_KEY = "cc:presence-notice:{}"
# A socket writes its agent's "seen" at most this often: typing frames come every few seconds, and
# the grace is minutes.
SEEN_REFRESH_SECONDS = 10
# Kept for the agent's return (the next morning, after a weekend): after that the sidebar alone
# says they are offline.
_NOTICE_TIMEOUT = 7 * 24 * 3600


def clock() -> float:
    """Seconds since the epoch (the cache holds plain numbers; tests move this clock)."""
    return time.time()


def console_grace() -> int:
    """``CC_CONSOLE_OFFLINE_GRACE_SECONDS``; 0: consoles are not watched at all."""
    return max(0, int(settings.CC_CONSOLE_OFFLINE_GRACE_SECONDS))


def offline_presence() -> PresenceState:
    """The presence signed-out agents are in: the first offline one (``ordering``, then id), else
    a new "Offline" (like ``missed_offer_presence``; the stored name is data admins may rename, so
    it is stored in English, and the console shows it translated until they do: PresenceState.label)."""
    state = PresenceState.objects.filter(is_offline=True).order_by("ordering", "pk").first()
    if state is not None:
        return state
    state, _created = PresenceState.objects.get_or_create(
        name=OFFLINE_PRESENCE, defaults={"is_available": False, "is_offline": True, "ordering": 100})
    if not state.is_offline:
        # An admin's own "Offline" that is not marked offline (it might even take work): putting
        # signed-out agents there would defeat the point, and renaming it is the admin's call.
        raise ImproperlyConfigured(
            f'The presence "{state.name}" is not marked offline and no other is: mark one offline in the admin.')
    return state


# --- signing out ----------------------------------------------------------------------------------

def agent_sign_out(*, agent: Agent) -> Agent:
    """The agent signed out: offline, their pending offers rescinded (they go to the next agent).
    An agent already offline (in whichever offline presence) is left as they are."""
    if Agent.objects.filter(pk=agent.pk, presence__is_offline=True).exists():
        return agent
    return agent_presence_set(agent=agent, presence=offline_presence(), reason=REASON_SIGNED_OUT)


# --- consoles --------------------------------------------------------------------------------------

def console_seen(*, agent_id: int, at: float | None = None) -> None:
    """A console socket of the agent is open (or just closed) at ``at``. Never raises: a cache
    outage must not take the console down, and an agent not seen is only ever left alone."""
    grace = console_grace()
    if not grace:
        return
    try:
        # Outlives the grace by a day: the tick acts long before; a key gone is an agent never seen.
        cache.set(_SEEN_KEY.format(agent_id), clock() if at is None else at, timeout=grace + 86400)
    except Exception:  # noqa: BLE001 - see the docstring
        logger.warning("could not record console of agent %s as seen", agent_id, exc_info=True)


def console_opened(*, user, at: float | None = None) -> tuple[int | None, dict | None]:
    """A console socket opened for ``user``: record their agent as seen (at ``at``). Returns the
    agent's id (None for a user without one) and, once, the ``agent.presence`` event they missed
    while no console of theirs was open (the tick put them offline), with a message to show them."""
    agent = getattr(user, "agent", None) if hasattr(user, "agent") else None
    if agent is None:
        return None, None
    console_seen(agent_id=agent.pk, at=at)
    try:
        notice = cache.get(_NOTICE_KEY.format(agent.pk))
        if notice is not None:
            cache.delete(_NOTICE_KEY.format(agent.pk))
    except Exception:  # noqa: BLE001 - the notice is a courtesy; the sidebar shows the presence anyway
        logger.warning("could not read the presence notice of agent %s", agent.pk, exc_info=True)
        return agent.pk, None
    if notice is None:
        return agent.pk, None
    current = Agent.objects.filter(pk=agent.pk).values_list("presence_id", "presence_changed_at", "ui_language").first()
    if current is None or (current[0], current[1].isoformat()) != (notice["event"]["presence"], notice["changed_at"]):
        return agent.pk, None  # they (or a supervisor, the API) changed it since: old news
    with translation.override(current[2] or settings.LANGUAGE_CODE):
        # Named as their sidebar names it (in their language when built in), not as stored.
        message = _("Your status was set to %(presence)s: no console of yours was open for a while, so new "
                    "conversations went to other agents. Set your status to Available to take them again.") % {
            "presence": presence_label(notice["event"]["name"])}
    return agent.pk, {**notice["event"], "message": message}


def agents_without_console_offline(*, now: float | None = None, limit: int = 200) -> int:
    """Tick job: available agents none of whose consoles has been seen for the grace period go
    offline (reason "disconnected"); their pending offers go to the next agent."""
    grace = console_grace()
    if not grace:
        return 0
    now = clock() if now is None else now
    agents = list(Agent.objects.filter(presence__is_available=True).order_by("pk")
                  .values_list("pk", "presence_changed_at"))
    if not agents:
        return 0
    seen = cache.get_many([_SEEN_KEY.format(pk) for pk, _changed in agents])
    done = 0
    for pk, changed_at in agents:
        last = seen.get(_SEEN_KEY.format(pk))
        # Never seen (since the cache was last empty: a fresh embedded process, a flushed or
        # evicting Redis) is left alone: the agent may work through the REST API only, or have a
        # console open that has not pinged this process's memory yet. Wrongly putting a working
        # agent offline takes their offers and, with the requeue policy, their customers; leaving
        # a gone agent available costs what it always did (an offer timeout, then "Missed offer").
        if last is None or now - last <= grace:
            continue
        if changed_at.timestamp() > last + grace:
            # Made available when no console had been seen for the grace already: by the REST
            # API, an admin or an integration, not at a console; not ours to undo.
            continue
        if _seen_since(pk, last):
            continue  # a console came back since the batch read
        if agent_presence_disconnected(agent_id=pk, presence_changed_at=changed_at):
            done += 1
            if done >= limit:
                break
    return done


def _seen_since(agent_id: int, last: float) -> bool:
    value = cache.get(_SEEN_KEY.format(agent_id))
    return value is not None and value > last


def agent_presence_disconnected(*, agent_id: int, presence_changed_at) -> bool:
    """Put an agent whose console is gone offline, as ``routing.agent_presence_set`` does (pending
    offers rescinded and re-routed, the change published after commit) with the reason
    "disconnected", but only if their presence is still the available one the caller read
    (``presence_changed_at``): an agent who changed it meanwhile, e.g. a moment ago at a console
    that just came back, keeps theirs. Returns whether it changed."""
    now = timezone.now()
    offline = offline_presence()
    with transaction.atomic():
        # Lock order as in routing: each conversation before its offer, the agent last.
        pending_offers_rescind(agent_id, now)
        agent = Agent.objects.select_for_update(of=("self",)).select_related("presence").get(pk=agent_id)
        if agent.presence is None or not agent.presence.is_available or \
                agent.presence_changed_at != presence_changed_at:
            # Checked only now, under the agent's lock, which comes after the conversations'; the
            # offers closed above are rolled back with their events and their re-routing.
            transaction.set_rollback(True)
            return False
        presence_record(agent, offline, now, reason=REASON_DISCONNECTED)
        notice = {
            "event": {"type": "agent.presence", "agent": agent.pk, "presence": offline.pk, "name": offline.name,
                      "available": offline.is_available, "reason": REASON_DISCONNECTED},
            "changed_at": agent.presence_changed_at.isoformat(),
        }
        # The event itself went out to nobody at the agent's end (no console is open): kept for
        # the first console that opens (console_opened). After commit: never for a change undone.
        transaction.on_commit(lambda: _notice_keep(agent.pk, notice))
    return True


def _notice_keep(agent_id: int, notice: dict) -> None:
    try:
        cache.set(_NOTICE_KEY.format(agent_id), notice, timeout=_NOTICE_TIMEOUT)
    except Exception:  # noqa: BLE001 - a courtesy: the sidebar shows the presence anyway
        logger.warning("could not keep the presence notice of agent %s", agent_id, exc_info=True)
