from django.urls import path

from .channels.twilio_messaging import webhooks
from .channels.email import webhook as webhooks_email

urlpatterns = [
    path("twilio/messaging/", webhooks.twilio_messaging_inbound, name="twilio-messaging"),
    path("twilio/messaging/status/", webhooks.twilio_messaging_status, name="twilio-messaging-status"),
    path("email/", webhooks_email.email_inbound, name="email-inbound"),
]
