"""The app's views, mounted where the benchmark links mailboxes through them."""

from django.urls import include, path

urlpatterns = [path("mail/", include("django_live_oauth_mail.urls"))]
