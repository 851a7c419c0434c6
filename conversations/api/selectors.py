"""Reads for the routing API with fixed query counts."""

from django.db.models import Count, Max, Min, Q
from django.utils import timezone

from ..models import Agent, Conversation, ConversationStatus, Offer, OfferStatus, Queue

WAITING = Q(status=ConversationStatus.OPEN, assignee__isnull=True, abandoned_at__isnull=True)


def queue_stats() -> list[dict]:
    """Every active queue with live counts (three queries whatever the number of queues)."""
    queues = list(Queue.objects.filter(is_active=True).prefetch_related("queueskill_set__skill").order_by("name"))
    counts = {
        row["queue_id"]: row for row in Conversation.objects.filter(queue__in=queues).values("queue_id").annotate(
            waiting=Count("id", filter=WAITING),
            assigned=Count("id", filter=Q(status__in=["open", "pending"], assignee__isnull=False)),
            oldest=Min("queued_at", filter=WAITING),
        )
    }
    offered = dict(Offer.objects.filter(status=OfferStatus.PENDING, queue__in=queues).values("queue_id")
                   .annotate(n=Count("id")).values_list("queue_id", "n"))
    now = timezone.now()
    result = []
    for queue in queues:
        row = counts.get(queue.pk, {})
        oldest = row.get("oldest")
        result.append({
            "id": queue.pk, "name": queue.name, "slug": queue.slug, "channels": queue.channels,
            "required_skills": [r.skill.slug for r in queue.queueskill_set.all()],
            # The least level of each, as /agents/ gives an agent's: {"billing": 3}.
            "required_skill_levels": {r.skill.slug: r.min_level for r in queue.queueskill_set.all()},
            "priority": queue.priority,
            "sla_seconds": queue.sla_seconds, "allow_pick": queue.allow_pick, "auto_accept": queue.auto_accept,
            "waiting": row.get("waiting", 0), "offered": offered.get(queue.pk, 0), "assigned": row.get("assigned", 0),
            "longest_wait_seconds": int((now - oldest).total_seconds()) if oldest else 0,
        })
    return result


def agent_states() -> list[dict]:
    agents = list(Agent.objects.select_related("presence").prefetch_related("agentskill_set__skill").order_by("display_name"))
    held = {}
    for row in (Conversation.objects.filter(assignee__in=agents, status__in=["open", "pending"])
                .values("assignee_id", "channel").annotate(n=Count("id"))):
        held.setdefault(row["assignee_id"], {})[row["channel"]] = row["n"]
    offered = {}
    for row in Offer.objects.filter(agent__in=agents, status=OfferStatus.PENDING).values("agent_id", "channel").annotate(n=Count("id")):
        offered.setdefault(row["agent_id"], {})[row["channel"]] = row["n"]
    return [{
        "id": a.pk, "display_name": a.display_name, "languages": a.languages,
        "skills": {s.skill.slug: s.level for s in a.agentskill_set.all()},
        "presence": {"id": a.presence_id, "name": a.presence.name if a.presence else None,
                     "available": bool(a.presence and a.presence.is_available)},
        "presence_changed_at": a.presence_changed_at, "capacity": a.capacity,
        "load": held.get(a.pk, {}), "offers": offered.get(a.pk, {}), "last_assigned_at": a.last_assigned_at,
    } for a in agents]


def routing_explained(conversation: Conversation) -> dict:
    offers = list(conversation.offers.select_related("agent", "queue").order_by("created_at", "pk"))
    return {
        "conversation": conversation.pk, "queue": conversation.queue.slug if conversation.queue else None,
        "queue_reason": conversation.queue_reason,
        "assignee": conversation.assignee_id, "queued_at": conversation.queued_at, "assigned_at": conversation.assigned_at,
        "abandoned_at": conversation.abandoned_at, "note": conversation.routing_note,
        "offers": [{
            "id": o.pk, "agent": o.agent_id, "agent_name": o.agent.display_name, "step": o.step, "status": o.status,
            "queue": o.queue.slug if o.queue else None, "created_at": o.created_at, "decided_at": o.decided_at,
            "explanation": o.explanation,
        } for o in offers],
    }


def latest_offer_at():
    return Offer.objects.aggregate(latest=Max("created_at"))["latest"]
