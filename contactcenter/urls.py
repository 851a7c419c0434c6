from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView

from .auth_views import ThrottledLoginView, set_language, throttled_admin_login

from . import views

urlpatterns = [
    path("", views.home, name="home"),
    path("healthz", views.healthz, name="healthz"),
    path("healthz/", views.healthz),
    path("admin/login/", throttled_admin_login),  # before the admin's own, which it wraps
    path("admin/", admin.site.urls),
    path("accounts/login/", ThrottledLoginView.as_view(), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/setlang/", set_language, name="set_language"),
    path("i18n/", include("django.conf.urls.i18n")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/v1/", include("contactcenter.api_urls")),
    path("webhooks/", include("conversations.urls_webhooks")),
    path("simulator/", include("conversations.simulator.urls")),
    path("console/softphone/", include("conversations.channels.twilio_voice.softphone.urls")),
    path("console/", include(("conversations.console.urls", "console"))),
    path("supervisor/reports/", include("supervisor.reports.urls")),
    path("supervisor/", include("supervisor.urls")),
    path("surveys/", include("surveys.urls")),
]

# A database outage answers 503 with Retry-After (providers retry), anything else the usual 500.
handler500 = "contactcenter.views.server_error"
