"""The wallboard page: server-rendered from the same snapshot the socket sends, so it shows the
board without script; ``static/js/supervisor.js`` then keeps it live over ``/ws/supervisor/``."""


from django.http import Http404
from django.shortcuts import render
from django.urls import NoReverseMatch, reverse

from contactcenter.permissions import console_staff_required, is_supervisor, supervisor_required
from conversations.selectors import agent_of

from .board import board_render
from .selectors import agent_day, wallboard_snapshot


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
