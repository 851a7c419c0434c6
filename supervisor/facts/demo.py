"""Demo presence history: the demo's weeks of conversations come without the presence changes the
app would have recorded (history starts when it is installed), so the agent status table and
occupancy would show only today. This writes a plausible working day (available 9:00, lunch 12:00,
available 13:00, offline 18:00, contact-center time) for every agent on every past day they accepted
a conversation. For ``make run`` only; idempotent (one row per agent and instant)."""

from datetime import datetime, time

from django.db.models.functions import TruncDate
from django.utils import timezone

from conversations.models import PresenceState

from .models import AgentPresenceChange, ConversationFact, PresenceChangeSource

SHIFT = [(time(9), "Available"), (time(12), "Lunch"), (time(13), "Available"), (time(18), "Offline")]


def demo_presence_history(tz) -> int:
    states = {}
    for name in {name for _at, name in SHIFT}:
        defaults = {"is_available": name == "Available", "is_offline": name == "Offline"}
        states[name] = PresenceState.objects.get_or_create(name=name, defaults=defaults)[0]
    today = timezone.localdate(timezone=tz)
    worked = (ConversationFact.objects.filter(agent__isnull=False, accepted_at__isnull=False)
              .annotate(day=TruncDate("accepted_at", tzinfo=tz)).values_list("agent_id", "day").distinct())
    rows = [
        AgentPresenceChange(agent_id=agent_id, presence=states[name], name=name,
                            is_available=states[name].is_available, is_offline=states[name].is_offline,
                            changed_at=datetime.combine(day, at, tzinfo=tz), source=PresenceChangeSource.AGENT,
                            reason="agent", changed_by_id=agent_id)
        for agent_id, day in worked if day < today for at, name in SHIFT
    ]
    before = AgentPresenceChange.objects.count()
    AgentPresenceChange.objects.bulk_create(rows, ignore_conflicts=True, batch_size=500)
    return AgentPresenceChange.objects.count() - before
