from django.urls import path

from . import views

urlpatterns: list = [
    path("customers/", views.CustomerListApi.as_view(), name="api-customer-list"),
    path("customers/<int:customer_id>/", views.CustomerApi.as_view(), name="api-customer-detail"),
    path("customers/<int:customer_id>/timeline/", views.CustomerTimelineApi.as_view(), name="api-customer-timeline"),
    path("customers/<int:customer_id>/access-log/", views.CustomerAccessLogApi.as_view(),
         name="api-customer-access-log"),
    path("customers/<int:customer_id>/merge/", views.CustomerMergeApi.as_view(), name="api-customer-merge"),
    path("customer-merges/<int:merge_id>/", views.CustomerMergeDetailApi.as_view(), name="api-customer-merge-detail"),
    path("customer-merges/<int:merge_id>/undo/", views.CustomerMergeUndoApi.as_view(), name="api-customer-merge-undo"),
]
