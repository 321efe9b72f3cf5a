"""System checks for the LIVE_OAUTH_MAIL settings (IDs live_oauth_mail.*)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError

from .conf import MAX_RATE_COUNT, SETTINGS_NAME, conf, django_setting_is_set, parse_rate
from .exceptions import ConfigurationError
from .identity.credentials import certificate_problem
from .models import MailAccount
from .queue import tasks

BACKEND = "django_live_oauth_mail.backends.EmailBackend"
QUEUED_BACKEND = "django_live_oauth_mail.backends.QueuedEmailBackend"


@register(Tags.compatibility)
def check_settings(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    messages: list[CheckMessage] = []
    if not conf.CLIENT_ID:
        messages.append(
            Error(
                f"{SETTINGS_NAME}['CLIENT_ID'] is not set.",
                hint="Copy the Application (client) ID of your app registration "
                "from the Azure portal.",
                id="live_oauth_mail.E001",
            )
        )
    messages.extend(_certificate_messages())
    if not conf.CLIENT_SECRET and not _has_certificate():
        messages.append(
            Error(
                f"{SETTINGS_NAME}['CLIENT_SECRET'] is not set.",
                hint="Create a client secret under Certificates & secrets in the app "
                "registration, and keep it out of version control.",
                id="live_oauth_mail.E002",
            )
        )
    if not apps.is_installed("django.contrib.sessions") or not any(
        m.endswith("SessionMiddleware") for m in settings.MIDDLEWARE
    ):
        messages.append(
            Error(
                "The connect flow keeps its state in the session, but sessions are "
                "not enabled.",
                hint="Add 'django.contrib.sessions' to INSTALLED_APPS and "
                "'django.contrib.sessions.middleware.SessionMiddleware' to MIDDLEWARE.",
                id="live_oauth_mail.E003",
            )
        )
    keys = conf.ENCRYPTION_KEYS
    for position, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            messages.append(
                Error(
                    f"{SETTINGS_NAME}['ENCRYPTION_KEYS'][{position}] is not a valid "
                    "Fernet key.",
                    hint='Generate one with: python -c "from cryptography.fernet '
                    'import Fernet; print(Fernet.generate_key().decode())"',
                    id="live_oauth_mail.E004",
                )
            )
    if not keys:
        messages.append(
            Warning(
                f"{SETTINGS_NAME}['ENCRYPTION_KEYS'] is empty, so stored tokens are "
                "encrypted with a key derived from SECRET_KEY.",
                hint="Changing SECRET_KEY without keeping the old one in "
                "SECRET_KEY_FALLBACKS would make every linked mailbox unreadable. Set "
                "ENCRYPTION_KEYS to your own Fernet keys, newest first.",
                id="live_oauth_mail.W001",
            )
        )
    try:
        _ = conf.RESPONSE_MODE  # validates
    except ConfigurationError as error:
        messages.append(
            Error(
                str(error),
                hint="Use 'query' (the default) or 'form_post'.",
                id="live_oauth_mail.E005",
            )
        )
    messages.extend(_routing_messages())
    messages.extend(_rate_messages())
    messages.extend(_transport_messages())
    if urlsplit(conf.AUTHORITY).scheme != "https":
        messages.append(
            Warning(
                f"{SETTINGS_NAME}['AUTHORITY'] is not https: {conf.AUTHORITY!r}.",
                hint="Use https://login.microsoftonline.com/common (or /organizations, "
                "/consumers, /<tenant id>); msal refuses plain http.",
                id="live_oauth_mail.W002",
            )
        )
    in_use = _backends_in_use()
    uses_backend = bool(in_use & {BACKEND, QUEUED_BACKEND})
    if BACKEND in in_use:
        messages.extend(_django_host_messages())
    if QUEUED_BACKEND in in_use:
        messages.extend(_queue_messages())
    if not uses_backend:
        messages.append(
            Warning(
                "No email backend uses django-live-oauth-mail, so linked mailboxes "
                "are never used to send.",
                hint=f"Set EMAIL_BACKEND = {BACKEND!r}, or use it as the BACKEND of a "
                "MAILERS entry (Django 6.1+).",
                id="live_oauth_mail.W003",
            )
        )
    return messages


MIDDLEWARE = "django_live_oauth_mail.middleware.SendingAsMiddleware"

RATE_HINT = (
    f"Give 1 to {MAX_RATE_COUNT:,} messages per second, minute, hour or day, in "
    "ASCII digits, such as '30/minute'."
)


def _rate_messages() -> list[CheckMessage]:
    """SEND_RATE, checked whatever the backend: a typo must not wait for a queue."""
    try:
        _ = conf.SEND_RATE
    except ConfigurationError as error:
        return [Error(str(error), hint=RATE_HINT, id="live_oauth_mail.E011")]
    return []


@register(Tags.database)
def check_stored_send_rates(
    app_configs: Sequence[Any] | None = None,
    databases: Sequence[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """Mailboxes whose stored send rate the workers could not read.

    A database check, so it runs only when asked for the databases (``migrate``,
    ``check --database default``), never on every ``runserver``. Rows written
    past the field's validator (an ``update()``, a fixture, an older version)
    would fail every queued message from the mailbox.
    """
    messages: list[CheckMessage] = []
    for alias in databases or ():
        try:
            rates = list(
                MailAccount.objects.using(alias)
                .exclude(send_rate="")
                .values_list("pk", "email", "send_rate")
            )
        except DatabaseError:
            continue  # not migrated yet: nothing stored to check
        for pk, email, rate in rates:
            try:
                parse_rate(rate, f"The send rate of {email}")
            except ConfigurationError as error:
                messages.append(
                    Error(
                        f"{error} (linked mailbox {pk}, database {alias!r})",
                        hint=f"{RATE_HINT} Correct it on the mailbox's admin "
                        "page, or clear it to follow the SEND_RATE setting.",
                        obj=f"live_oauth_mail.MailAccount:{pk}",
                        id="live_oauth_mail.E012",
                    )
                )
    return messages


def _backends_in_use() -> set[str]:
    mailers = getattr(settings, "MAILERS", None) or {}
    backends = {
        config.get("BACKEND") for config in mailers.values() if isinstance(config, dict)
    }
    if django_setting_is_set("EMAIL_BACKEND"):
        backends.add(getattr(settings, "EMAIL_BACKEND", None))
    return {b for b in backends if isinstance(b, str)}


def _queue_messages() -> list[CheckMessage]:
    """Queued sending: readable settings, an engine, and one that can wait."""
    try:
        _ = conf.QUEUE, conf.daily_recipients("work")
        _ = conf.SESSIONS_PER_MAILBOX, conf.QUEUE_ATTEMPTS, conf.QUEUE_BACKOFF
        tasks.require_engine()
        can_defer = tasks.can_defer()
    except (ConfigurationError, ValueError, TypeError) as error:
        return [
            Error(
                str(error),
                hint="See the README's background sending section.",
                id="live_oauth_mail.E010",
            )
        ]
    except Exception as error:  # the TASKS setting itself is broken
        return [
            Error(
                f"QueuedEmailBackend cannot find its task backend: {error}",
                hint="Check the TASKS setting (Django's tasks framework).",
                id="live_oauth_mail.E010",
            )
        ]
    if can_defer:
        return []
    return [
        Warning(
            "The task backend cannot run tasks later (supports_defer is False), "
            "so queued mail is sent at once, without pacing or retries.",
            hint="Use a backend that can defer, such as django-tasks-db's "
            "DatabaseBackend or django-tasks-rq's RQBackend (with the scheduler). "
            "Django's ImmediateBackend is meant for tests.",
            id="live_oauth_mail.W007",
        )
    ]


def _django_host_messages() -> list[CheckMessage]:
    """EMAIL_HOST/EMAIL_PORT set for this backend, which does not read them."""
    changed = [
        f"{name} = {getattr(settings, name)!r}"
        for name, default in (("EMAIL_HOST", "localhost"), ("EMAIL_PORT", 25))
        if django_setting_is_set(name) and getattr(settings, name, default) != default
    ]
    if not changed:
        return []
    return [
        Warning(
            f"{' and '.join(changed)} is not used by {BACKEND}: it sends to "
            f"{SETTINGS_NAME}['SMTP_HOST']:{SETTINGS_NAME}['SMTP_PORT'] "
            f"({conf.SMTP_HOST}:{conf.SMTP_PORT}).",
            hint=f"Set SMTP_HOST and SMTP_PORT in {SETTINGS_NAME} (or the "
            "backend's host and port options), and remove EMAIL_HOST/EMAIL_PORT. "
            "Django's defaults point at localhost, so this backend does not "
            "fall back to them.",
            id="live_oauth_mail.W006",
        )
    ]


def _has_certificate() -> bool:
    try:
        return conf.CLIENT_CERTIFICATE is not None
    except ConfigurationError:
        return True  # malformed: E009 says so


def _certificate_messages() -> list[CheckMessage]:
    """A CLIENT_CERTIFICATE msal could not use."""
    try:
        certificate = conf.CLIENT_CERTIFICATE
        if certificate is None:
            return []
        problem = certificate_problem(certificate)
    except ConfigurationError as error:
        problem = str(error)
    if problem is None:
        return []
    return [
        Error(
            f"{SETTINGS_NAME}['CLIENT_CERTIFICATE'] is malformed: {problem}",
            hint="Give {'private_key': <PEM text or a path to a PEM file>, "
            "'thumbprint': <the certificate's SHA-1 thumbprint in hex, as the "
            "Azure portal shows it>}.",
            id="live_oauth_mail.E009",
        )
    ]


def _transport_messages() -> list[CheckMessage]:
    try:
        transport = conf.TRANSPORT
    except ConfigurationError as error:
        return [
            Error(
                str(error),
                hint="Use 'smtp' (the default), 'graph', or 'auto' (SMTP, and Graph "
                "for mailboxes whose SMTP AUTH is switched off).",
                id="live_oauth_mail.E007",
            )
        ]
    if transport != "smtp" and urlsplit(conf.GRAPH_ENDPOINT).scheme != "https":
        return [
            Error(
                f"{SETTINGS_NAME}['GRAPH_ENDPOINT'] is not an https URL: "
                f"{conf.GRAPH_ENDPOINT!r}.",
                hint="Use https://graph.microsoft.com (the default), or your "
                "national cloud's Graph endpoint.",
                id="live_oauth_mail.E008",
            )
        ]
    return []


def _routing_messages() -> list[CheckMessage]:
    try:
        routing = conf.ROUTING
    except ConfigurationError as error:
        return [
            Error(
                str(error),
                hint="Use 'owner' (the default) or 'any'.",
                id="live_oauth_mail.E006",
            )
        ]
    if routing == "any":
        return [
            Warning(
                f"{SETTINGS_NAME}['ROUTING'] is 'any': any code that sets "
                "from_email to a linked address sends, signed in, as that "
                "mailbox. A contact form that copies the visitor's address into "
                "from_email lets anyone send as your users.",
                hint="Use 'owner' (the default) with SendingAsMiddleware, and mark "
                "site mailboxes (noreply@) shared in the admin.",
                id="live_oauth_mail.W005",
            )
        ]
    if MIDDLEWARE not in settings.MIDDLEWARE:
        return [
            Warning(
                f"{SETTINGS_NAME}['ROUTING'] is 'owner' but {MIDDLEWARE} is not in "
                "MIDDLEWARE, so views send with no acting user and only shared "
                "mailboxes can send.",
                hint=f"Add {MIDDLEWARE!r} to MIDDLEWARE after "
                "AuthenticationMiddleware.",
                id="live_oauth_mail.W004",
            )
        ]
    return []
