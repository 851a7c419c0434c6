"""Who may use the console and the API: members of the agent, supervisor or admin group."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.utils.translation import gettext_lazy as _
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


def role_required(allowed, refusal):
    """A page decorator: anonymous, to the login page; signed in without the role
    (``allowed(user)`` false), 403 saying ``refusal``."""

    def decorator(view):
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            if not request.user.is_authenticated:
                return redirect_to_login(request.get_full_path())
            if not allowed(request.user):
                raise PermissionDenied(refusal)
            return view(request, *args, **kwargs)

        return wrapper

    return decorator


# Console pages and fragments: agents, supervisors, admins.
console_staff_required = role_required(is_contact_center_staff, _("You need an agent, supervisor or admin account."))
# The supervisors' pages (wallboard, reports).
supervisor_required = role_required(is_supervisor, _("You need a supervisor or admin account."))
