"""The project's URLs plus one view that fails, for the error-page tests (test_headers.py)."""

from django.urls import include, path


class DeliberateFailure(Exception):
    pass


def crash(request):
    raise DeliberateFailure("secret-marker-7d1f: this must not reach the browser")


urlpatterns = [
    path("crash/", crash),
    path("", include("contactcenter.urls")),
]
