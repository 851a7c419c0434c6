import zoneinfo

from django.conf import settings
from django.utils import timezone, translation


class NoStoreMiddleware:
    """Nothing Django answers may be kept by a browser or proxy cache: console pages, fragments and
    API answers carry customer data, and error pages may too. Static files never pass through
    here (contactcenter.static_files serves them). A view that sets its own Cache-Control keeps it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Cache-Control", "no-store")
        return response


class ContentSecurityPolicyMiddleware:
    """A strict CSP: no inline script anywhere, customer content can never execute."""

    POLICY = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self' ws: wss:; frame-src 'self'; frame-ancestors 'none'; "
        "base-uri 'none'; form-action 'self'; object-src 'none'"
    )
    # Django's admin (5.2) runs without inline script: its constants travel in data- attributes
    # of script tags loaded from /static/. Its one inline <style> (a change list with no action
    # bar, which none of ours is) only sets a column width, so blocking it costs nothing.
    ADMIN_POLICY = (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "frame-ancestors 'none'; form-action 'self'; base-uri 'self'; object-src 'none'"
    )

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        policy = self.ADMIN_POLICY if request.path.startswith("/admin/") else self.POLICY
        response.headers.setdefault("Content-Security-Policy", policy)
        response.headers.setdefault("Referrer-Policy", "same-origin")
        return response


class UserTimezoneMiddleware:
    """Activate the signed-in agent's time zone (UTC in the database, local time on screen) and
    their language: the console follows the agent, whatever browser they sit at."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        tz_name = settings.CC_DEFAULT_TIME_ZONE
        user = getattr(request, "user", None)
        if user is not None and user.is_authenticated:
            agent = getattr(user, "agent", None) if hasattr(user, "agent") else None
            if agent is not None and agent.time_zone:
                tz_name = agent.time_zone
            if agent is not None and agent.ui_language:
                translation.activate(agent.ui_language)
                request.LANGUAGE_CODE = translation.get_language()
        try:
            timezone.activate(zoneinfo.ZoneInfo(tz_name))
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            timezone.activate(zoneinfo.ZoneInfo("UTC"))
        try:
            return self.get_response(request)
        finally:
            timezone.deactivate()
