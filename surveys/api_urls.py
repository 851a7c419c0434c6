from django.urls import path

from . import api

urlpatterns = [
    path("survey-responses/", api.SurveyResponseListApi.as_view(), name="api-survey-responses"),
    path("survey-measures/", api.SurveyMeasuresApi.as_view(), name="api-survey-measures"),
]
