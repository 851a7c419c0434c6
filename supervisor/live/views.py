"""The wallboard page: server-rendered from the same snapshot the socket sends, so it shows the
board without script; ``static/js/supervisor.js`` then keeps it live over ``/ws/supervisor/``."""

from functools import wraps

from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse
from django.utils.translation import gettext as _

from contactcenter.permissions import is_contact_center_staff, is_supervisor
from conversations.selectors import agent_of

from .board import board_render
from .selectors import agent_day, wallboard_snapshot


def supervisor_required(view):
    """Anonymous: to the login page. Signed in without the supervisor (or admin) role: 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_supervisor(request.user):
            raise PermissionDenied(_("You need a supervisor or admin account."))
        return view(request, *args, **kwargs)

    return wrapper


def console_staff_required(view):
    """Anonymous: to the login page. Signed in without a contact-center role: 403."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_contact_center_staff(request.user):
            raise PermissionDenied(_("You need an agent, supervisor or admin account."))
        return view(request, *args, **kwargs)

    return wrapper


def reports_url() -> str:
    """The reports' page (supervisor.reports)."""
    try:
        return reverse("supervisor_reports:index")
    except NoReverseMatch:
        return ""


@supervisor_required
def wallboard(request):
    board = wallboard_snapshot()
    return render(request, "supervisor/wallboard.html", {
        "board": board, "live": board_render(board, request.LANGUAGE_CODE), "section": "wallboard",
        "reports_url": reports_url()})


@console_staff_required
def my_day(request):
    """An agent's own day, read-only: their figures only (any staff member with an agent profile)."""
    agent = agent_of(request.user)
    if agent is None:
        raise Http404
    return render(request, "supervisor/my_day.html", {"day": agent_day(agent=agent), "agent": agent,
                                                      "is_supervisor": is_supervisor(request.user)})
