from django.contrib import admin
from django.urls import include, path

from . import views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("mail/", include("django_live_oauth_mail.urls")),
    path("contact/", views.naive_contact),
]
