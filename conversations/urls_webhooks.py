from django.urls import path

from . import webhooks

urlpatterns = [
    path("twilio/messaging/", webhooks.twilio_messaging_inbound, name="twilio-messaging"),
    path("twilio/messaging/status/", webhooks.twilio_messaging_status, name="twilio-messaging-status"),
]
