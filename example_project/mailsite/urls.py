from demo import views
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("", views.home, name="home"),
    path(
        "accounts/login/",
        auth_views.LoginView.as_view(redirect_authenticated_user=True),
        name="login",
    ),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("mail/", include("django_live_oauth_mail.urls")),
    path("compose/", views.compose, name="compose"),
    path("dev/inbox/", views.dev_inbox, name="dev_inbox"),
]
