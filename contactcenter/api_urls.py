from django.urls import include, path

urlpatterns = [
    path("", include("profiles.api.urls")),
    path("", include("conversations.api.urls")),
    path("", include("surveys.api_urls")),
]
