"""ASGI application for bench/webhook's daphne: ``contactcenter.asgi.application`` built on
``_webhook_settings`` (the project's settings + the baseline route). Run from the repository root
with ``bench/`` on PYTHONPATH: ``python -m daphne _webhook_asgi:application``.

``CC_BENCH_PROFILE=<path>`` (diagnosis only, off in the benchmark): cProfile the thread Django's
sync views run on (asgiref's thread-sensitive executor: one thread for every request) and write
the stats, sorted by cumulative time, to ``<path>`` every 100 requests.
"""

import os

os.environ["DJANGO_SETTINGS_MODULE"] = "_webhook_settings"

from contactcenter.asgi import application  # noqa: E402,F401

if os.environ.get("CC_BENCH_PROFILE"):
    import cProfile
    import io
    import pstats
    import threading

    from django.core.signals import request_finished, request_started

    # Django's ASGI handler runs each request's sync code in its own ThreadSensitiveContext, i.e.
    # its own thread: one profiler per thread, all finished ones merged when written out.
    _local = threading.local()
    _done: list[cProfile.Profile] = []
    _prefix = os.environ.get("CC_BENCH_PROFILE_PATH", "/webhooks/")

    def _start(scope=None, environ=None, **_kwargs):
        path = (scope or {}).get("path") or (environ or {}).get("PATH_INFO", "")
        if not path.startswith(_prefix):
            return
        _local.profile = cProfile.Profile()
        _local.profile.enable()

    def _finish(**_kwargs):
        profile = getattr(_local, "profile", None)
        if profile is None:
            return
        profile.disable()
        _local.profile = None
        _done.append(profile)
        if len(_done) % 50 == 0:
            out = io.StringIO()
            stats = pstats.Stats(*_done, stream=out)
            stats.sort_stats("cumulative").print_stats(70)
            out.write("\n\n=== by own time ===\n")
            stats.sort_stats("tottime").print_stats(30)
            with open(os.environ["CC_BENCH_PROFILE"], "w") as fh:
                fh.write(f"requests: {len(_done)}\n" + out.getvalue())

    request_started.connect(_start, weak=False)
    request_finished.connect(_finish, weak=False)
