"""Side listeners on other apps' signals (STYLE.md: signals for side listeners only)."""

import logging

logger = logging.getLogger(__name__)


def consoles_signed_out(sender, request, user, **kwargs) -> None:
    """``user_logged_out``: the console sockets of the session signing out close
    (events.close_consoles_of_session). Django sends the signal before it flushes the session, so
    its key is still the one the sockets were opened with."""
    from .events import close_consoles_of_session

    session = getattr(request, "session", None)
    if session is not None and session.session_key:
        close_consoles_of_session(session.session_key)


def agent_signed_out(sender, request, user, **kwargs) -> None:
    """``user_logged_out``: a signed-out agent goes offline (services.presence.agent_sign_out)."""
    from .models import Agent
    from .services.presence import agent_sign_out

    if user is None or user.pk is None:
        return  # signing out without being signed in
    agent = Agent.objects.filter(user_id=user.pk).first()
    if agent is None:
        return
    try:
        agent_sign_out(agent=agent)
    except Exception:  # noqa: BLE001 - see below
        # Django sends the signal before it flushes the session: raising here would leave the
        # user signed in. The agent stays in their presence, as before signing out did anything.
        logger.exception("could not put agent %s offline on signing out", agent.pk)
