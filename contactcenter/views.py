from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.shortcuts import redirect
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from . import health


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = health.run_checks()
    down = [name for name, result in checks.items() if result["status"] != "up"]
    body = {"status": "down" if down else "ok", "mode": settings.CC_MODE, "checks": checks}
    if down:
        body["down"] = down
    return JsonResponse(body, status=503 if down else 200)


def home(request: HttpRequest):
    return redirect("console:home")
