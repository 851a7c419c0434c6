"""Start the whole embedded system in one process: daphne (HTTP + websockets) with the Celery
worker and beat as threads (contactcenter.embedded), plus the SMTP listener when available."""

import os
import sys

from django.conf import settings
from django.core.management.base import BaseCommand


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
            [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "contactcenter.asgi:application"],
        )
