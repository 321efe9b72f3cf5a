"""Settings of the example project, read from the environment with django-environ.

Real environment variables win; ``example_project/.env`` fills in the rest if
it exists (it is optional and gitignored; ``.env.example`` documents every
variable). Empty values count as unset.

Two modes, chosen by ``LIVE_OAUTH_MAIL_CLIENT_ID``:

* empty (the default): **stand-ins**. ``manage.py demo`` runs local stand-ins
  for Microsoft's identity platform and SMTP server (from
  ``django_live_oauth_mail.testing``) in the same process, and the app talks
  to them with their demo client id and secret. No network needed.
* set: **real Microsoft**, with your app registration, the real authority and
  smtp.office365.com.
"""

from __future__ import annotations

from pathlib import Path

import django
import environ

BASE_DIR = Path(__file__).resolve().parent.parent  # example_project/

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")  # never overrides real environment variables


def _value(name: str, default: str = "") -> str:
    """The variable's value, or ``default`` when it is unset or empty."""
    return env.str(name, default="").strip() or default


def _flag(name: str, default: bool) -> bool:
    value = _value(name)
    if not value:
        return default
    return value.lower() in {"1", "true", "yes", "on"}


SECRET_KEY = _value(
    "SECRET_KEY", "django-insecure-example-project-only-never-use-in-production"
)
DEBUG = _flag("DEBUG", True)
ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=[]) or ["127.0.0.1", "localhost"]

DATABASES = {
    "default": env.db_url_config(
        _value("DATABASE_URL", f"sqlite:///{BASE_DIR / 'db.sqlite3'}")
    )
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    # The site and the worker write to one SQLite file: take the write lock
    # when a transaction starts, so neither fails on upgrading a read lock.
    DATABASES["default"].setdefault("OPTIONS", {})["transaction_mode"] = "IMMEDIATE"

# Django's tasks framework (the django-tasks backport on 5.2): the contact
# form's mail is queued and sent by the worker, paced per mailbox.
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    # The admin's CSS and JavaScript; runserver serves them while DEBUG is on.
    "django.contrib.staticfiles",
    "django_live_oauth_mail",
    # Queued mail's tasks live in the database; `manage.py demo` runs a
    # worker (`manage.py db_worker`) beside the site.
    "django_tasks_db",
    # Rate limits on the anonymous contact form (and its system checks).
    "django_ratelimit",
    "demo",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    # request.user becomes the acting user, so a view's send() goes out through
    # the signed-in user's own mailbox (or a shared one), never someone else's.
    "django_live_oauth_mail.middleware.SendingAsMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "mailsite.urls"
WSGI_APPLICATION = "mailsite.wsgi.application"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        # Project templates come first, so templates/live_oauth_mail/base.html
        # restyles the app's pages to match the rest of the site.
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "demo.context_processors.demo_site",
            ]
        },
    }
]

STATIC_URL = "static/"
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "home"
LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_TZ = True

# The user `manage.py demo` creates (and prints) so you can sign in at once.
# It is staff, allowed to view and change linked mailboxes in the admin.
DEMO_USERNAME = "demo"
DEMO_PASSWORD = "demo-password"  # noqa: S105 - a local demo account

# django-ratelimit counts in this cache, so it must be one that every process
# serving the site shares and that increments atomically: Redis or Memcached,
# e.g. CACHE_URL=redis://127.0.0.1:6379/1. Unset, the demo counts in memory,
# which is enough for it alone: one process serves every request (`manage.py
# demo` runs runserver without the autoreloader; the worker serves none).
CACHES = {"default": env.cache_url_config(_value("CACHE_URL", "locmemcache://"))}
if CACHES["default"]["BACKEND"].endswith(".LocMemCache"):
    # Its checks rightly say this memory is not shared between processes.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.E003", "django_ratelimit.W001"]
elif CACHES["default"]["BACKEND"] == "django.core.cache.backends.redis.RedisCache":
    # Django's own Redis backend increments atomically too; django-ratelimit
    # lists only django-redis's.
    SILENCED_SYSTEM_CHECKS = ["django_ratelimit.W001"]

# How many messages the contact form queues, per visitor (by IP address) and
# for the whole site, in django-ratelimit's "count/period" form (period: s, m,
# h or d, with an optional multiple: "5/10m"). Anonymous visitors have no
# mailbox of their own: without a limit a script can queue thousands of
# messages on the site's shared mailbox, and mail the site sends from it
# (password resets) waits behind them.
CONTACT_LIMIT_PER_VISITOR = _value("CONTACT_LIMIT_PER_VISITOR", "5/h")
CONTACT_LIMIT_SITE_WIDE = _value("CONTACT_LIMIT_SITE_WIDE", "50/h")

# Where the contact form's messages go. Empty: to the shared mailbox that
# sends them.
CONTACT_RECIPIENTS = [
    address for address in env.list("CONTACT_RECIPIENTS", default=[]) if address
]

# -- django-live-oauth-mail -----------------------------------------------------

# Mail sent in a request goes out at once; the contact form uses QUEUED_BACKEND,
# which queues it for the worker (demo/views.py).
QUEUED_BACKEND = "django_live_oauth_mail.backends.QueuedEmailBackend"
if django.VERSION >= (6, 1):
    MAILERS = {
        "default": {"BACKEND": "django_live_oauth_mail.backends.EmailBackend"},
        "queued": {"BACKEND": QUEUED_BACKEND},
    }
else:
    EMAIL_BACKEND = "django_live_oauth_mail.backends.EmailBackend"

ENCRYPTION_KEYS = [
    key for key in env.list("LIVE_OAUTH_MAIL_ENCRYPTION_KEYS", default=[]) if key
]

USE_STANDINS = not _value("LIVE_OAUTH_MAIL_CLIENT_ID")

# Where `manage.py demo` runs the stand-ins (ignored with real Microsoft).
DEMO_STANDIN_HOST = "127.0.0.1"
DEMO_IDENTITY_PORT = int(_value("DEMO_IDENTITY_PORT", "8001"))
DEMO_SMTP_PORT = int(_value("DEMO_SMTP_PORT", "8025"))
DEMO_GRAPH_PORT = int(_value("DEMO_GRAPH_PORT", "8003"))
# The stand-in sign-in pages, served over plain HTTP (no certificate warning).
DEMO_PAGES_PORT = int(_value("DEMO_PAGES_PORT", "8002"))
# The site's own mailbox on the stand-ins: `manage.py demo` links it (owned by
# DEMO_SITE_MAILBOX_OWNER, a user who cannot sign in) and marks it shared, so
# the contact form and mail without a from_email can send from it.
DEMO_SITE_MAILBOX = "noreply@contoso.com"
DEMO_SITE_MAILBOX_OWNER = "website"

# The From address is the linked mailbox chosen on the compose page; this is
# only the fallback for mail that names no sender. With ROUTING "owner" such
# mail goes out only if a shared mailbox (or shared Send As address) has this
# address, or LIVE_OAUTH_MAIL["DEFAULT_ACCOUNT"] is set.
DEFAULT_FROM_EMAIL = DEMO_SITE_MAILBOX if USE_STANDINS else "webmaster@localhost"
SERVER_EMAIL = DEFAULT_FROM_EMAIL

if USE_STANDINS:
    LIVE_OAUTH_MAIL = {
        # The stand-in identity platform's own app registration.
        "CLIENT_ID": "demo-client-id",
        "CLIENT_SECRET": "demo-client-secret",
        "AUTHORITY": f"https://{DEMO_STANDIN_HOST}:{DEMO_IDENTITY_PORT}/common",
        "SMTP_HOST": DEMO_STANDIN_HOST,
        "SMTP_PORT": DEMO_SMTP_PORT,
        "SMTP_TIMEOUT": 10,
        # SMTP, and Microsoft Graph for a mailbox whose SMTP AUTH is off: the
        # Dev inbox has a switch that turns it off on the SMTP stand-in.
        "TRANSPORT": "auto",
        "GRAPH_ENDPOINT": f"https://{DEMO_STANDIN_HOST}:{DEMO_GRAPH_PORT}",
        # The stand-ins make a new private CA each time they start, so
        # `manage.py demo` fills this in (with that CA's path) before serving,
        # and hands it to its worker as DEMO_CA_BUNDLE.
        "CA_BUNDLE": _value("DEMO_CA_BUNDLE") or None,
        # Stand-in tokens are worthless outside this process, so a published
        # demo key is fine here (and keeps the demo free of warning W001).
        # With real Microsoft, set LIVE_OAUTH_MAIL_ENCRYPTION_KEYS yourself.
        "ENCRYPTION_KEYS": ENCRYPTION_KEYS
        or ["ZGVtby1vbmx5LWtleS1mb3ItbG9jYWwtc3RhbmRpbnM="],
    }
else:
    LIVE_OAUTH_MAIL = {
        "CLIENT_ID": _value("LIVE_OAUTH_MAIL_CLIENT_ID"),
        "CLIENT_SECRET": _value("LIVE_OAUTH_MAIL_CLIENT_SECRET"),
        "AUTHORITY": _value(
            "LIVE_OAUTH_MAIL_AUTHORITY", "https://login.microsoftonline.com/common"
        ),
        # "smtp" (the default), "graph", or "auto": Graph where SMTP AUTH is off.
        "TRANSPORT": _value("LIVE_OAUTH_MAIL_TRANSPORT", "smtp"),
        # SMTP_HOST/SMTP_PORT keep the app's defaults: smtp.office365.com:587.
        # Empty: tokens are encrypted with a key derived from SECRET_KEY, and
        # `check` warns (live_oauth_mail.W001) until you set your own keys.
        "ENCRYPTION_KEYS": ENCRYPTION_KEYS,
    }
