"""The three roles and what each may do; kept in sync after every migrate."""

from django.contrib.auth.models import Group, Permission

_READ_MODELS = [
    "profiles.customer", "profiles.identity", "profiles.touchpoint", "profiles.customernote", "profiles.consent",
    "profiles.tag", "profiles.mergesuggestion", "profiles.customermerge",
    "conversations.inbox", "conversations.conversation", "conversations.message", "conversations.attachment",
    "conversations.queue", "conversations.skill", "conversations.agent", "conversations.presencestate",
    "conversations.messagestatusevent",
]
_AGENT_WRITES = [
    "profiles.change_customer", "profiles.add_identity", "profiles.change_identity", "profiles.add_customernote",
    "profiles.add_touchpoint", "profiles.change_mergesuggestion", "profiles.merge_customer", "profiles.add_tag",
    "conversations.add_message", "conversations.change_conversation",
]
# Who viewed a customer (profiles.CustomerAccess): supervisors and admins, never agents.
_SUPERVISOR_READS = ["profiles.view_customeraccess"]
_SUPERVISOR_WRITES = _AGENT_WRITES + [
    "profiles.add_customer", "conversations.change_agent", "conversations.change_queue", "conversations.add_conversation",
]
_ADMIN_APPS = ["profiles", "conversations", "contactcenter", "auth", "authtoken"]

ROLE_NAMES = ("agent", "supervisor", "admin")


def _perms(codes: list[str]) -> list[Permission]:
    found = []
    for code in codes:
        app_label, codename = code.split(".", 1)
        found.extend(Permission.objects.filter(content_type__app_label=app_label, codename=codename))
    return found


def _view_perms() -> list[str]:
    return [f"{label.split('.')[0]}.view_{label.split('.')[1]}" for label in _READ_MODELS]


def ensure_roles(**_kwargs) -> dict[str, Group]:
    groups = {name: Group.objects.get_or_create(name=name)[0] for name in ROLE_NAMES}
    groups["agent"].permissions.set(_perms(_view_perms() + _AGENT_WRITES))
    groups["supervisor"].permissions.set(_perms(_view_perms() + _SUPERVISOR_READS + _SUPERVISOR_WRITES))
    groups["admin"].permissions.set(Permission.objects.filter(content_type__app_label__in=_ADMIN_APPS))
    return groups
