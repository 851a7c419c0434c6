"""ASGI application for bench/voice's daphne: ``contactcenter.asgi.application`` on
``_voice_settings``. Run from the repository root with ``bench/`` on PYTHONPATH."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "_voice_settings"

from contactcenter.asgi import application  # noqa: F401
