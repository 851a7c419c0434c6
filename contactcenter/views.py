import sys

from django.conf import settings
from django.db import DatabaseError, InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.views import defaults
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import health

# What a 503 tells a client to wait: a PostgreSQL restart is seconds, and Twilio, mail servers and
# load balancers retry on their own schedule anyway.
RETRY_AFTER_SECONDS = 5


def _database_down(exc: BaseException | None) -> bool:
    """The request failed for a reason of the database's own that a retry can cure: it could not
    be reached, dropped the connection (OperationalError, InterfaceError; the breaker's
    DatabaseUnavailable is one), or a deadlock; not a bug or a bad query (other DatabaseErrors)."""
    for _ in range(10):  # the chain of causes, bounded
        if exc is None:
            return False
        if isinstance(exc, (OperationalError, InterfaceError)):
            return True
        if isinstance(exc, DatabaseError):
            return False
        exc = exc.__cause__ or exc.__context__
    return False


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500 (outside DEBUG). A request that failed because the database is unreachable is
    answered 503 with Retry-After, so Twilio and other webhook senders retry it later rather than
    treat it as a bug, and a load balancer sees the outage; anything else stays a plain 500. No
    template: rendering must not need the database that just failed."""
    if _database_down(sys.exc_info()[1]):
        response = HttpResponse("Service temporarily unavailable: the database cannot be reached.\n",
                                status=503, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
        return response
    return defaults.server_error(request)


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = health.run_checks()
    down = [name for name, result in checks.items() if result["status"] != "up"]
    body = {"status": "down" if down else "ok", "mode": settings.CC_MODE, "checks": checks}
    if down:
        body["down"] = down
    response = JsonResponse(body, status=503 if down else 200)
    if down:
        response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    return response


def home(request: HttpRequest):
    return redirect("console:home")
