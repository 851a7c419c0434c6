from django.urls import path

from conversations.consumers import ConsoleConsumer
from conversations.channels.webchat.consumer import WidgetConsumer, WidgetOriginValidator
from supervisor.live.consumers import WallboardConsumer

websocket_urlpatterns = [
    path("ws/console/", ConsoleConsumer.as_asgi()),
    path("ws/supervisor/", WallboardConsumer.as_asgi()),
]

# The widget runs on customers' own sites: no session, and its Origin is checked against the
# inbox's ``allowed_origins`` (WidgetOriginValidator) instead of ALLOWED_HOSTS (see asgi.py).
widget_websocket_urlpatterns = [
    path("ws/widget/", WidgetOriginValidator(WidgetConsumer.as_asgi())),
]
