"""``/supervisor/``: the live wallboard and its interventions; the reports below it when present."""


from django.urls import include, path

from .live import interventions, views

app_name = "supervisor"

urlpatterns = [
    path("", views.wallboard, name="wallboard"),
    path("me/", views.my_day, name="my-day"),
    path("conversations/<int:conversation_id>/assign/", interventions.assign, name="assign"),
    path("conversations/<int:conversation_id>/transfer/", interventions.transfer, name="transfer"),
    path("conversations/<int:conversation_id>/note/", interventions.note, name="note"),
    path("agents/<int:agent_id>/presence/", interventions.presence, name="presence"),
]

# The reports live in their own package (supervisor.reports).
urlpatterns.append(path("reports/", include("supervisor.reports.urls")))
