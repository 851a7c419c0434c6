"""Sign-in with brute-force throttling.

After ``CC_LOGIN_MAX_FAILURES`` failed attempts for one username, or from one client address,
within ``CC_LOGIN_FAILURE_WINDOW`` seconds, further attempts are refused without checking the
password. Counting is by the username as typed, whether or not the account exists, and the
refusal reads the same for every username, so neither the counter nor the messages tell an
attacker which accounts exist. Counters live in the cache (Redis in production, so every
daphne process shares them).
"""

import hashlib

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.utils.translation import gettext as _

from contactcenter.client_address import request_client_address

MAX_FAILURES = getattr(settings, "CC_LOGIN_MAX_FAILURES", 5)
FAILURE_WINDOW = getattr(settings, "CC_LOGIN_FAILURE_WINDOW", 15 * 60)
_PREFIX = "cc:login-failures"


def _key(kind: str, value: str) -> str:
    # Hashed: usernames are arbitrary client input and cache keys have a restricted alphabet.
    digest = hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{_PREFIX}:{kind}:{digest}"


def _client_address(request) -> str:
    # The one rule for every place that counts by address (X-Forwarded-For only behind our
    # proxies, and then the entry they wrote, never the one a client can forge).
    return request_client_address(request)


def _failure_keys(request, username: str) -> list[str]:
    return [_key("user", username.strip().casefold()), _key("ip", _client_address(request))]


def _record_failure(key: str) -> None:
    # The window starts at the first failure (add) and is not extended by later ones (incr).
    if cache.add(key, 1, FAILURE_WINDOW):
        return
    try:
        cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.add(key, 1, FAILURE_WINDOW)


def is_throttled(request, username: str) -> bool:
    counts = cache.get_many(_failure_keys(request, username))
    return any(int(count) >= MAX_FAILURES for count in counts.values())


class ThrottledLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        if is_throttled(request, username):
            # An unbound form: binding would validate it, and validating checks the password.
            form = self.get_form_class()(request=request, initial={"username": username[:150]})
            context = self.get_context_data(
                form=form,
                throttled_message=_("Too many failed sign-in attempts. Please wait a few minutes and try again."),
            )
            response = self.render_to_response(context)
            response.status_code = 429
            return response
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        for key in _failure_keys(self.request, self.request.POST.get("username", "")):
            _record_failure(key)
        return super().form_invalid(form)

    def form_valid(self, form):
        # A success clears this username's counter; the address counter stays, so one client
        # cannot reset its budget by signing in to an account it owns between guesses.
        cache.delete(_failure_keys(self.request, self.request.POST.get("username", ""))[0])
        return super().form_valid(form)


def set_language(request):
    """The language switcher: remembered on the agent (so every browser they use follows it), then
    Django's own ``set_language`` for the cookie and the redirect."""
    from django.conf import settings as django_settings
    from django.views.i18n import set_language as django_set_language

    language = request.POST.get("language", "")
    if request.method == "POST" and request.user.is_authenticated and language in dict(django_settings.LANGUAGES):
        from conversations.models import Agent

        Agent.objects.filter(user=request.user).update(ui_language=language)
    return django_set_language(request)
