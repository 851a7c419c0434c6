"""Celery tasks of the voice channel: the REST requests that follow an agent taking a call."""

import logging

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task(name="conversations.voice_put_through", autoretry_for=(OSError,), retry_backoff=True, max_retries=3,
             ignore_result=True)
def voice_put_through(conversation_id: int, agent_id: int) -> str:
    """A voice conversation was assigned (an offer accepted, a supervisor's assignment, a
    transfer): its caller and the agent meet in the conversation's conference
    (``softphone.controls.call_put_through``; a no-op when the agent's Answer did it already)."""
    from ...models import Agent
    from .softphone.controls import CallControlError, call_put_through

    agent = Agent.objects.filter(pk=agent_id).first()
    if agent is None:
        return "no_agent"
    try:
        return call_put_through(conversation_id=conversation_id, agent=agent)
    except CallControlError as exc:
        # Twilio refused (the caller hung up meanwhile) or the agent has no phone: their console
        # shows the call waiting with Answer, which says why when pressed.
        logger.info("could not put conversation %s through to agent %s: %s", conversation_id, agent_id,
                    "; ".join(exc.messages))
        return "refused"
