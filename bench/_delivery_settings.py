"""Settings for bench/delivery's daphnes: bench/webhook's (the project's settings, same middleware)
with a URLconf that adds the delivery floor (``bench/_delivery_urls.py``).

``CC_BENCH_LAYER_SOCKET_TIMEOUT=<seconds>`` (diagnosis only, off in the benchmark): give the
channel layer's Redis connections that read timeout instead of redis-py's default (5 s since
redis-py 8, the same as channels_redis' blocking read, which then fails on an idle process and
closes a console socket with 1011): what the project's settings would do with that fix.
"""

import os

from _webhook_settings import *  # noqa: F403

ROOT_URLCONF = "_delivery_urls"

if os.environ.get("CC_BENCH_LAYER_SOCKET_TIMEOUT"):
    _config = CHANNEL_LAYERS["default"].get("CONFIG", {})  # noqa: F405
    _config["hosts"] = [
        {"address": host, "socket_timeout": float(os.environ["CC_BENCH_LAYER_SOCKET_TIMEOUT"])}
        if isinstance(host, str) else host
        for host in _config.get("hosts", [])
    ]
