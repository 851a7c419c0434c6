"""Sign-in, throttled by ``login_throttle`` (per username and address, never a lock of the
username itself), and the language switch."""

from django.contrib.auth.views import LoginView
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from . import login_throttle


class ThrottledLoginView(LoginView):
    template_name = "registration/login.html"
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        username = request.POST.get("username", "")
        refusal = login_throttle.login_refusal(request, username)
        if refusal is not None:
            return self._refused(username, refusal)
        return super().post(request, *args, **kwargs)

    def _refused(self, username: str, refusal: login_throttle.Refusal):
        if refusal.kind == "slow-down":
            message = ngettext(
                "Too many failed sign-in attempts for this account. Please slow down: wait %(seconds)d second "
                "and try again.",
                "Too many failed sign-in attempts for this account. Please slow down: wait %(seconds)d seconds "
                "and try again.",
                refusal.retry_after,
            ) % {"seconds": refusal.retry_after}
        else:
            message = _("Too many failed sign-in attempts. Please wait a few minutes and try again.")
        # An unbound form: binding would validate it, and validating checks the password.
        form = self.get_form_class()(request=self.request, initial={"username": username[:150]})
        response = self.render_to_response(self.get_context_data(form=form, throttled_message=message))
        response.status_code = 429
        response["Retry-After"] = str(refusal.retry_after)
        return response

    def form_invalid(self, form):
        login_throttle.login_failed(self.request, self.request.POST.get("username", ""))
        return super().form_invalid(form)

    def form_valid(self, form):
        login_throttle.login_succeeded(self.request, self.request.POST.get("username", ""))
        return super().form_valid(form)


def throttled_admin_login(request, extra_context=None):
    """The admin's own sign-in form, behind the same throttle as the console's (otherwise
    ``/admin/login/`` would be an unthrottled door to every password)."""
    from django.contrib import admin
    from django.http import HttpResponse

    if request.method != "POST":
        return admin.site.login(request, extra_context)
    username = request.POST.get("username", "")
    refusal = login_throttle.login_refusal(request, username)
    if refusal is not None:
        response = HttpResponse(
            _("Too many failed sign-in attempts. Please wait a few minutes and try again."),
            status=429, content_type="text/plain; charset=utf-8")
        response["Retry-After"] = str(refusal.retry_after)
        return response
    response = admin.site.login(request, extra_context)
    # The admin answers a sign-in with a redirect and a refused one with the form again.
    if response.status_code == 302 and request.user.is_authenticated:
        login_throttle.login_succeeded(request, username)
    elif response.status_code == 200:
        login_throttle.login_failed(request, username)
    return response


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
