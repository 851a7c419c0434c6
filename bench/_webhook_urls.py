"""bench/webhook's URLconf: the project's URLs plus ``bench/insert/``, the baseline.

The baseline is the smallest useful webhook: a sync Django view behind the same middleware that
parses the same form body and does ONE INSERT (a ``WorkerHeartbeat`` row keyed by the
MessageSid, autocommit), then answers 200.
"""

from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from contactcenter.models import WorkerHeartbeat
from contactcenter.urls import urlpatterns as project_urlpatterns


@csrf_exempt
@require_POST
def insert_one(request):
    WorkerHeartbeat.objects.create(token=request.POST["MessageSid"])
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("bench/insert/", insert_one), *project_urlpatterns]
