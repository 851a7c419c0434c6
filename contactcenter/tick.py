"""Registry for the jobs the periodic ``tick`` task runs.

Apps register a callable in their ``AppConfig.ready()``; each job must be idempotent and find its
own due work in the database. A failing job is logged and does not stop the others.
"""

import logging
from collections.abc import Callable

logger = logging.getLogger(__name__)

_jobs: dict[str, Callable[[], int | None]] = {}


def register(name: str, job: Callable[[], int | None]) -> None:
    _jobs[name] = job


def registered() -> dict[str, Callable[[], int | None]]:
    return dict(_jobs)


def run_due_jobs() -> dict[str, int]:
    done: dict[str, int] = {}
    for name, job in list(_jobs.items()):
        try:
            done[name] = int(job() or 0)
        except Exception:  # noqa: BLE001 - one broken job must not starve the others
            logger.exception("tick job %s failed", name)
            done[name] = -1
    return done
