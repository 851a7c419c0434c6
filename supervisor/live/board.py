"""The board as the wallboard sockets send it: the snapshot, its JSON and its HTML per language."""

from django.template.loader import render_to_string
from django.utils import translation

from .events import board_data
from .selectors import wallboard_snapshot


def board_render(snapshot: dict, language: str) -> str:
    with translation.override(language):
        return render_to_string("supervisor/_live.html", {"board": snapshot})


def board_build(languages: set[str]) -> tuple[dict, dict[str, str]]:
    """One read of the database, then the JSON and one rendering per language asked for."""
    snapshot = wallboard_snapshot()
    return board_data(snapshot), {language: board_render(snapshot, language) for language in languages}
