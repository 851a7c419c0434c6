"""ASGI application for bench/delivery's daphnes: ``contactcenter.asgi.application`` built on
``_delivery_settings`` (the project's settings + the floor route). Run from the repository root
with ``bench/`` on PYTHONPATH: ``python -m daphne _delivery_asgi:application``."""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "_delivery_settings"

from contactcenter.asgi import application  # noqa: E402,F401
