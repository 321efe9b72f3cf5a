from demo import views
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

admin.site.site_header = "live-oauth-mail demo: administration"
admin.site.site_title = "live-oauth-mail demo admin"
# One app to show: the sidebar would only squeeze the mailbox list.
admin.site.enable_nav_sidebar = False

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
    path("dev/smtp-auth/", views.smtp_auth, name="smtp_auth"),
    path("contact/", views.contact, name="contact"),
    path("admin/", admin.site.urls),
    # Browsers ask every page (the admin's too) for /favicon.ico.
    path("favicon.ico", views.favicon, name="favicon"),
]
