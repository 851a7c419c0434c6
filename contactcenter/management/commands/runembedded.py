"""Start the whole embedded system in one process: daphne (HTTP + websockets) with the Celery
worker and beat as threads (contactcenter.embedded), plus the SMTP listener when available."""

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand

# A reconnect storm (every browser after a restart) arrives at once: a listen backlog of 2048
# instead of Twisted's 50 keeps the kernel from resetting connections daphne has not accepted yet,
# and 30 s to finish a websocket handshake (instead of 5) lets a busy daphne catch up on them.
LISTEN_BACKLOG = 2048
WEBSOCKET_CONNECT_TIMEOUT_SECONDS = 30


def daphne_arguments(host: str, port: int) -> list[str]:
    """daphne's listening arguments, as the Procfile's web process passes them."""
    interface = host.replace(":", "\\:")  # an IPv6 address inside Twisted's endpoint string
    return ["-e", f"tcp:port={port}:interface={interface}:backlog={LISTEN_BACKLOG}",
            "--websocket_connect_timeout", str(WEBSOCKET_CONNECT_TIMEOUT_SECONDS)]


class Command(BaseCommand):
    help = "Run the embedded system (one daphne process with in-process Celery worker and beat)."

    def add_arguments(self, parser):
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8000")))

    def handle(self, *args, host: str, port: int, **options):
        if settings.CC_PRODUCTION:
            self.stderr.write("DATABASE_URL and REDIS_URL are set: use the Procfile (honcho start) instead.")
            sys.exit(2)
        os.environ["CC_EMBEDDED_WORKER"] = "1"
        os.environ.setdefault("CC_SELF_URL", f"http://{host}:{port}")
        self.stdout.write(f"Contact center (embedded) on http://{host}:{port}/  — console: /console/, admin: /admin/")
        os.execvp(
            sys.executable,
            [sys.executable, "-m", "daphne", *daphne_arguments(host, port), "contactcenter.asgi:application"],
        )
