"""``/supervisor/``: the live wallboard and its interventions; the reports below it when present."""


from django.urls import path

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

# The reports (supervisor.reports) are mounted at /supervisor/reports/ by contactcenter/urls.py,
# in their own namespace ("supervisor_reports").
