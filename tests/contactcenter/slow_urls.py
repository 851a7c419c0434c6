"""The project's URLs plus one view that holds its thread until the test lets it go, for
test_graceful_stop.py (a request in flight when the server stops)."""

import threading

from django.http import HttpResponse
from django.urls import include, path

entered = threading.Event()
release = threading.Event()


def slow(request):
    entered.set()
    release.wait(10)
    return HttpResponse("done")


urlpatterns = [
    path("slow/", slow),
    path("", include("contactcenter.urls")),
]
