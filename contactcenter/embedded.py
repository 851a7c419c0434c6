"""The embedded runtime: a real Celery worker and beat (and the SMTP listener) running as
threads of the web process.

In embedded mode (no ``DATABASE_URL``/``REDIS_URL``) the broker is kombu's in-memory transport.
A task queued by a request is serialised onto that broker and consumed by a genuine
``celery.worker.WorkController`` in a daemon thread, exactly the code path a separate
``celery worker`` process runs in production; no ``task_always_eager`` shortcut.
"""

import logging
import threading

from celery import beat
from celery.worker import WorkController

from .celery import app

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_started: dict[str, object] = {}


def start_worker(*, with_beat: bool = True, queues: list[str] | None = None) -> WorkController:
    """Start the in-process worker (and beat) once; return the worker."""
    with _lock:
        if "worker" in _started:
            return _started["worker"]  # type: ignore[return-value]
        worker = WorkController(
            app=app,
            hostname="embedded@localhost",
            pool="solo",  # SQLite has one writer; one task at a time keeps it simple and correct
            concurrency=1,
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel="WARNING",
            **({"queues": queues} if queues else {}),
        )
        thread = threading.Thread(target=worker.start, name="celery-embedded-worker", daemon=True)
        thread.start()
        _started["worker"] = worker
        _started["worker_thread"] = thread
        if with_beat:
            # celery.beat.Scheduler keeps its schedule in memory: nothing to write on disk.
            service = beat.EmbeddedService(app, thread=True, scheduler_cls="celery.beat:Scheduler")
            service.start()
            _started["beat"] = service
        logger.info("embedded Celery worker%s started", " and beat" if with_beat else "")
        return worker


def start_smtp_listener() -> object | None:
    """The SMTP listener (``manage.py smtpd``) as a thread of this process; None when its port is
    taken (another listener already runs: mail still arrives there)."""
    from conversations.management.commands.smtpd import make_controller

    with _lock:
        if "smtp" in _started:
            return _started["smtp"]
        controller = make_controller()
        try:
            controller.start()
        except (OSError, RuntimeError) as exc:
            logger.warning("SMTP listener not started (%s): is another one running?", exc)
            return None
        _started["smtp"] = controller
        logger.info("embedded SMTP listener on %s:%s", controller.hostname, controller.port)
        return controller


def stop_worker() -> None:
    with _lock:
        smtp = _started.pop("smtp", None)
        if smtp is not None:
            smtp.stop()
        service = _started.pop("beat", None)
        if service is not None:
            service.stop()
        worker = _started.pop("worker", None)
        thread = _started.pop("worker_thread", None)
        if worker is not None:
            worker.stop(in_sighandler=False)
        if thread is not None:
            thread.join(timeout=10)
