from django.urls import path

from . import views

app_name = "live_oauth_mail"

urlpatterns = [
    path("", views.accounts, name="accounts"),
    path("connect/", views.connect, name="connect"),
    path("callback/", views.callback, name="callback"),
    path("<int:pk>/disconnect/", views.disconnect, name="disconnect"),
    path("<int:pk>/send-as/", views.send_as_add, name="send_as_add"),
    path("send-as/<int:pk>/remove/", views.send_as_remove, name="send_as_remove"),
]
