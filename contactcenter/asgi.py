"""ASGI entry point: HTTP through Django, websockets through Channels.

Websockets pass ``AllowedHostsOriginValidator`` (a foreign Origin is refused before accept, even
with a valid session cookie) and ``AuthMiddlewareStack`` (``scope["user"]`` from the session).
The one exception is the web-chat widget (``/ws/widget/``), embedded on other sites: it gets no
session at all and its Origin is checked against the widget inbox's ``allowed_origins``.
"""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "contactcenter.settings")

from django.core.asgi import get_asgi_application  # noqa: E402

django_asgi_app = get_asgi_application()

from django.conf import settings  # noqa: E402

if settings.CC_SERVE_STATIC:
    # daphne serves /static/ itself (one process, nothing else to install); a CDN or proxy in
    # front of production can take this over by setting CC_SERVE_STATIC=0.
    # It serves with DEBUG off too (the embedded default): Django's handler serves "insecurely".
    from .static_files import StaticFilesWithHeaders

    django_asgi_app = StaticFilesWithHeaders(django_asgi_app)

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from django.urls import re_path  # noqa: E402

from .websocket_urls import websocket_urlpatterns, widget_websocket_urlpatterns  # noqa: E402

from .concurrency import ConcurrencyLimit  # noqa: E402
from .graceful_stop import GracefulStop  # noqa: E402

# Outermost: when daphne stops, requests in flight (queued ones too) finish and sockets disconnect
# before the event loop stops (contactcenter.graceful_stop).
application = GracefulStop(ProtocolTypeRouter(
    {
        "http": ConcurrencyLimit(django_asgi_app, limit=settings.CC_MAX_CONCURRENT_REQUESTS),
        "websocket": URLRouter(
            [
                *widget_websocket_urlpatterns,
                re_path(r"^", AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))),
            ]
        ),
    }
), drain_seconds=settings.CC_HTTP_DRAIN_SECONDS)

if settings.CC_EMBEDDED_WORKER and not settings.CC_PRODUCTION:
    from .embedded import start_smtp_listener, start_worker

    start_worker()
    start_smtp_listener()

from .gc_tuning import tune_gc_after_start_up  # noqa: E402

# Last: everything start-up built is in place (contactcenter.gc_tuning says why).
tune_gc_after_start_up()
