"""Queueing work by the task's registered name, after commit, without importing task modules.

Services say ``enqueue_on_commit(ROUTE_CONVERSATION, conversation_id)`` where
``ROUTE_CONVERSATION = task_name("conversations.route_conversation")``: only task modules import
task modules, which keeps the import graph a tree (Zulip's ``queue_event_on_commit``; STYLE.md
habit 16). A name is declared once, at import, with :func:`task_name`; every declared name is
checked against the Celery app's registry when the apps are ready (:func:`check_task_names`), so a
misspelt or removed task fails the start of every process, not silently at the first send.

The database is the truth (DESIGN.md): a task that could not be queued is found again by the
periodic tick (``conversations.recovery``), so a failed enqueue is logged, never raised into a
webhook's response (which would make the provider retry a message we already committed).
"""

import logging

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction

logger = logging.getLogger(__name__)

_declared: dict[str, str] = {}  # task name -> the module that declared it


class UnknownTask(ImproperlyConfigured):
    pass


def task_name(name: str) -> str:
    """Declare a task name this module queues by; returns the name. Checked at start-up."""
    import sys

    caller = sys._getframe(1).f_globals.get("__name__", "?")
    _declared.setdefault(name, caller)
    return name


def _registered():
    from .celery import app

    return app.tasks


def tasks_ready(*, packages: tuple[str, ...] = ()) -> None:
    """Import every task module now and check the declared names (an app's ``ready()``).

    Celery imports the task modules it discovers only when a worker starts; a web process that
    just queues work would not have them registered. ``packages`` adds task modules that live
    below an app's top level (``<package>.tasks``), which Celery's discovery does not look for.
    """
    from .celery import app

    app.autodiscover_tasks(force=True)
    if packages:
        app.autodiscover_tasks(list(packages), force=True)
    check_task_names()


def check_task_names() -> None:
    """Raise :class:`UnknownTask` naming every declared task that no task module registers."""
    registered = _registered()
    missing = sorted(f"{name} (declared in {module})" for name, module in _declared.items() if name not in registered)
    if missing:
        raise UnknownTask("No Celery task is registered under: " + ", ".join(missing))


def task_for(name: str):
    """The registered task called ``name``; raise :class:`UnknownTask` at once if there is none."""
    try:
        return _registered()[name]
    except KeyError:
        raise UnknownTask(f"No Celery task is registered under {name!r}") from None


def enqueue(name: str, *args, countdown: float | None = None, **kwargs) -> bool:
    """Queue ``name`` now (outside a transaction's commit hook). A broker failure is logged and
    answered False: the tick's recovery finds the work in the database."""
    task = task_for(name)
    try:
        task.apply_async(args=args, kwargs=kwargs, countdown=countdown, retry=False)
    except Exception:  # noqa: BLE001 - broker down: the tick's recovery job will pick it up
        logger.warning("could not enqueue %s%r; the periodic recovery will retry", name, args, exc_info=True)
        return False
    return True


def enqueue_on_commit(name: str, *args, **kwargs) -> None:
    """Queue ``name`` when the current transaction commits (at once outside one). An unknown name
    raises here, inside the caller's transaction, not later in a commit hook."""
    task_for(name)
    transaction.on_commit(lambda: enqueue(name, *args, **kwargs))
