"""bench/delivery's URLconf: bench/webhook's (the project's URLs plus ``bench/insert/``) plus
``bench/insert-notify/``, the delivery floor.

The floor is the least a "store it and tell the agent" endpoint can cost on this stack: a sync
Django view behind the same middleware that does ONE INSERT (a ``WorkerHeartbeat`` row keyed by
the posted token, autocommit) and ONE channel-layer ``group_send`` of a ``console.event`` to the
posted agent's group, which the agent's ``ConsoleConsumer`` socket relays as it relays
``message.created``; then answers 200.
"""

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.http import HttpResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from _webhook_urls import urlpatterns as webhook_urlpatterns
from contactcenter.models import WorkerHeartbeat
from conversations.groups import agent_group


@csrf_exempt
@require_POST
def insert_notify(request):
    token = request.POST["token"]
    WorkerHeartbeat.objects.create(token=token)
    async_to_sync(get_channel_layer().group_send)(
        agent_group(int(request.POST["agent"])), {"type": "console.event", "event": {"type": "bench.floor", "token": token}}
    )
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("bench/insert-notify/", insert_notify), *webhook_urlpatterns]
