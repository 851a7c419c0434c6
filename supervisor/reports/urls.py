from django.urls import path

from . import views

app_name = "supervisor_reports"

urlpatterns = [
    path("", views.reports_page, name="index"),
    path("conversations/", views.reports_conversations, name="conversations"),
    path("export/<slug:table>.csv", views.reports_export, name="export"),
]
