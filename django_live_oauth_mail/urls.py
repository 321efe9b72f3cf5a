from django.urls import path

from . import views

app_name = "live_oauth_mail"

urlpatterns = [
    path("", views.accounts, name="accounts"),
    path("connect/", views.connect, name="connect"),
    path("callback/", views.callback, name="callback"),
    path("<int:pk>/disconnect/", views.disconnect, name="disconnect"),
]
