from django.urls import path

from . import views

app_name = "simulator"
urlpatterns = [
    path("", views.index, name="index"),
    path("phone/", views.phone, name="phone"),
    path("widget/", views.widget_page, name="widget"),
    path("email/", views.email_client, name="email"),
    path("email/inbox/", views.email_inbox, name="email-inbox"),
    path("email/send/", views.email_send, name="email-send"),
    path("phone/inbox/", views.phone_inbox, name="phone-inbox"),
    path("phone/send/", views.phone_send, name="phone-send"),
    path("phone/call/", views.phone_call, name="phone-call"),
]
