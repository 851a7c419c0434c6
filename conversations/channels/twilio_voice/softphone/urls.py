from django.urls import path

from . import softphone_views as views

app_name = "softphone"

urlpatterns = [
    path("token/", views.token, name="token"),
    path("current/", views.current_call, name="current"),
    path("settings/", views.voice_settings, name="settings"),
    path("conversations/<int:conversation_id>/", views.call_state, name="call"),
    *[path(f"conversations/<int:conversation_id>/{name}/", view, name=name) for name, view in views.CONTROLS.items()],
    path("customers/<int:customer_id>/call/", views.click_to_call, name="click-to-call"),
    path("recordings/<int:attachment_id>/", views.recording, name="recording"),
]
