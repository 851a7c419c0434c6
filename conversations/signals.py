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
    from .routing.console_presence import agent_sign_out

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


# What a console socket was authorised with when it connected: a change to any of these re-checks it.
_AUTH_FIELDS = ("password", "is_active", "is_staff", "is_superuser")


def user_auth_before_save(sender, instance, update_fields=None, **kwargs) -> None:
    """``pre_save`` of the user model: remember what the row holds of ``_AUTH_FIELDS``, so the save
    can tell whether they change. A save of other fields (every login updates last_login) reads
    nothing."""
    if instance.pk is None or (update_fields is not None and not set(update_fields) & set(_AUTH_FIELDS)):
        instance._cc_auth_before = None
        return
    instance._cc_auth_before = sender.objects.filter(pk=instance.pk).values_list(*_AUTH_FIELDS).first()


def user_auth_saved(sender, instance, created=False, **kwargs) -> None:
    """``post_save``: the password, the active flag or a role flag changed (a reset after a
    compromise, someone leaving): every console socket of the user connects again and is
    authenticated again (events.reauthenticate_consoles_of)."""
    before = getattr(instance, "_cc_auth_before", None)
    instance._cc_auth_before = None
    if created or before is None:
        return
    if tuple(getattr(instance, name) for name in _AUTH_FIELDS) != tuple(before):
        from .events import reauthenticate_consoles_of

        reauthenticate_consoles_of(instance.pk)


def user_groups_changed(sender, instance, action, reverse, pk_set, **kwargs) -> None:
    """``m2m_changed`` of User.groups: roles (agent, supervisor, admin) are groups, so a role taken
    away re-checks the user's consoles too; from the group's side, every member's."""
    from .events import reauthenticate_consoles_of

    if reverse and action == "pre_clear":
        # A group emptied: who was in it is known only before.
        for user_id in instance.user_set.values_list("pk", flat=True):
            reauthenticate_consoles_of(user_id)
        return
    if action not in ("post_add", "post_remove", "post_clear"):
        return
    if not reverse:
        reauthenticate_consoles_of(instance.pk)
    elif pk_set:
        for user_id in pk_set:
            reauthenticate_consoles_of(user_id)
