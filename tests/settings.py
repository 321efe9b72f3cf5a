"""Settings for the test suite. LIVE_OAUTH_MAIL is filled in by fixtures."""

from __future__ import annotations

import importlib.util
import os

import django

DATABASES: dict[str, dict[str, object]]

SECRET_KEY = "tests-only-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver", "127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django_live_oauth_mail",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django_live_oauth_mail.middleware.SendingAsMiddleware",
]
ROOT_URLCONF = "tests.urls"
LOGIN_URL = "/login/"
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]

if os.environ.get("LIVE_OAUTH_MAIL_TEST_DATABASE") == "postgres":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": os.environ.get("LIVE_OAUTH_MAIL_PG_NAME", "live_oauth_mail"),
            "USER": os.environ.get("PGUSER", "postgres"),
            "HOST": os.environ.get("PGHOST", "127.0.0.1"),
            "PORT": os.environ.get("PGPORT", "5432"),
        }
    }
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("LIVE_OAUTH_MAIL_SQLITE", ":memory:"),
            "TEST": {"NAME": os.environ.get("LIVE_OAUTH_MAIL_SQLITE_TEST")},
        }
    }

DEFAULT_FROM_EMAIL = "webmaster@example.com"

# Django 6.1 brings MAILERS and deprecates EMAIL_BACKEND; the same tests run
# with whichever the installed Django expects.
if django.VERSION >= (6, 1):
    MAILERS = {"default": {"BACKEND": "django_live_oauth_mail.backends.EmailBackend"}}
else:
    EMAIL_BACKEND = "django_live_oauth_mail.backends.EmailBackend"

# Fixtures point AUTHORITY, SMTP_HOST and SMTP_PORT at the local stand-ins.
LIVE_OAUTH_MAIL: dict[str, object] = {
    "CLIENT_ID": "test-client-id",
    "CLIENT_SECRET": "test-client-secret",
    "ENCRYPTION_KEYS": ["kGnmMXuZv8uCP5bo0ZYPp1qGJZ2sGDlRDmL0cC8TpS8="],
}

# Fast hashing: the suite creates many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]

# Queued sending (QueuedEmailBackend): Django's tasks framework, or the
# backport on 5.2. The dummy backend records tasks without running them, so
# the tests run each one themselves; tests with real workers use
# django-tasks-db (tests/outbox_workers.py).
TASKS_MODULE = "django.tasks" if django.VERSION >= (6, 0) else "django_tasks"
TASKS = {"default": {"BACKEND": f"{TASKS_MODULE}.backends.dummy.DummyBackend"}}
if importlib.util.find_spec("django_tasks_db"):
    INSTALLED_APPS.append("django_tasks_db")
