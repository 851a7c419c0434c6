"""Who may use the console and the API: members of the agent, supervisor or admin group."""

from rest_framework.permissions import BasePermission

STAFF_GROUPS = ("agent", "supervisor", "admin")
SUPERVISOR_GROUPS = ("supervisor", "admin")


def is_contact_center_staff(user) -> bool:
    if not user or not user.is_authenticated or not user.is_active:
        return False
    if user.is_superuser:
        return True
    return user.groups.filter(name__in=STAFF_GROUPS).exists()


def is_supervisor(user) -> bool:
    """A supervisor or an admin (or a superuser): sees every conversation and every customer."""
    return bool(user and user.is_authenticated) and (
        user.is_superuser or user.groups.filter(name__in=SUPERVISOR_GROUPS).exists()
    )


class IsContactCenterStaff(BasePermission):
    message = "You need an agent, supervisor or admin account."

    def has_permission(self, request, view) -> bool:
        return is_contact_center_staff(request.user)
