from django.urls import path

from . import auth_views, views

urlpatterns = [
    path("", views.console_home, name="home"),
    path("login/", auth_views.ThrottledLoginView.as_view(), name="login"),
    path("customers/<int:customer_id>/", views.customer_detail, name="customer"),
]
