"""How the facts hang on the core without the core knowing: the tick's registry, the merge
registry, ``lifecycle.presence_changed`` and a ``post_save`` listener on agents (the core imports
nothing of ``supervisor``)."""


def agent_presence_saved(sender, instance, created=False, update_fields=None, **kwargs) -> None:
    """``post_save`` of ``Agent``: a save that writes the presence (``routing.presence_record``,
    the admin, a new agent) is a presence change at ``presence_changed_at``. A save that leaves it
    as it was finds the same (agent, instant) row and adds nothing."""
    if update_fields is not None and "presence" not in update_fields:
        return
    from .services import presence_change_record

    presence = instance.presence if instance.presence_id else None
    presence_change_record(agent_id=instance.pk, presence=presence, changed_at=instance.presence_changed_at)


def presence_changed(sender, agent_id, presence, changed_at, reason="", by_agent_id=None, **kwargs) -> None:
    """``lifecycle.presence_changed``: the same change as the save's, with who made it."""
    from .services import presence_change_record

    presence_change_record(agent_id=agent_id, presence=presence, changed_at=changed_at, reason=reason or "",
                           by_agent_id=by_agent_id)


def facts_ready() -> None:
    from django.db.models.signals import post_save

    from contactcenter import tick
    from conversations import lifecycle
    from conversations.models import Agent, Conversation
    from profiles import merge_registry

    from .models import ConversationFact
    from .services import facts_refresh_due

    tick.register("supervisor.facts_refresh", facts_refresh_due)
    # A merge moves conversations to another customer without a timeline entry: their facts follow.
    merge_registry.register(ConversationFact, "customer", follows=(Conversation, "conversation"))
    post_save.connect(agent_presence_saved, sender=Agent, dispatch_uid="supervisor.agent_presence_saved")
    lifecycle.presence_changed.connect(presence_changed, dispatch_uid="supervisor.presence_changed")
