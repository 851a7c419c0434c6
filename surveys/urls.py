from django.urls import path

from . import views

app_name = "surveys"

urlpatterns = [
    path("a/<str:key>/", views.answer_page, name="answer"),
]
