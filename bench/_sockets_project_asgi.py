"""The project's ASGI application (contactcenter.asgi: every middleware, the real consumers,
the start-up garbage-collection tuning) on bench/_sockets_settings.py."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "_sockets_settings")

from contactcenter.asgi import application  # noqa: F401
