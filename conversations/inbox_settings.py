"""Reading and checking an inbox's ``settings`` mapping: pure functions, importing nothing of ours,
so the models may use them (``Inbox.clean``) as well as the channels that act on the settings."""


def imap_entries(settings) -> list[dict]:
    """Every mailbox mapping under an inbox's ``settings["imap"]`` (one mapping or a list), complete
    or not: what the poller reads and what the admin checks (``Inbox.clean``)."""
    config = settings.get("imap") if isinstance(settings, dict) else None
    configs = config if isinstance(config, list) else [config]
    return [c for c in configs if isinstance(c, dict)]


def stores_imap_password(settings) -> bool:
    """Whether a mailbox under ``settings["imap"]`` holds its password itself: refused when an inbox
    is saved in the admin (``Inbox.clean``), still read for inboxes saved before, and named to the
    admin who opens one (``InboxAdmin``) and in the workers' log at each login (the IMAP poller)."""
    return any("password" in mailbox for mailbox in imap_entries(settings))


# Each channel's own check of its inbox settings (e.g. the voice IVR), registered by the channel's
# ``ready()``; ``Inbox.clean`` asks it, so the model needs no channel import.
_SETTINGS_CHECKS: dict = {}


def register_settings_check(kind: str, check) -> None:
    """``check(settings) -> list[str]``: the problems of an inbox of ``kind``'s settings, worded
    for the admin (empty when fine)."""
    _SETTINGS_CHECKS[kind] = check


def settings_problems(kind: str, settings) -> list[str]:
    check = _SETTINGS_CHECKS.get(kind)
    return list(check(settings)) if check is not None else []
