"""System checks for the LIVE_OAUTH_MAIL settings (IDs live_oauth_mail.*).

Every setting conf.py declares is read once. One that cannot be read fails
the check :data:`UNREADABLE` names for it, in conf's own words; the other
checks look at what the readable values mean together. All wording is in
:data:`CHECKS`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from cryptography.fernet import Fernet
from django.apps import apps
from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError

from .conf import MAX_RATE_COUNT, conf, django_setting_is_set, parse_rate
from .exceptions import ConfigurationError
from .identity.credentials import certificate_problem
from .models import MailAccount
from .queue import tasks

BACKEND = "django_live_oauth_mail.backends.EmailBackend"
QUEUED_BACKEND = "django_live_oauth_mail.backends.QueuedEmailBackend"
MIDDLEWARE = "django_live_oauth_mail.middleware.SendingAsMiddleware"

RATE_HINT = (
    f"Give 1 to {MAX_RATE_COUNT:,} messages per second, minute, hour or day, in "
    "ASCII digits, such as '30/minute'."
)
QUEUE_HINT = "See the README's background sending section."

#: Each check's message (its fields filled in) and hint, by ID. A second
#: wording of one check has its ID and a word.
CHECKS: dict[str, tuple[str, str]] = {
    "E001": (
        "LIVE_OAUTH_MAIL['CLIENT_ID'] is not set.",
        "Copy the Application (client) ID of your app registration from the "
        "Azure portal.",
    ),
    "E002": (
        "LIVE_OAUTH_MAIL['CLIENT_SECRET'] is not set.",
        "Create a client secret under Certificates & secrets in the app "
        "registration, and keep it out of version control.",
    ),
    "E003": (
        "The connect flow keeps its state in the session, but sessions are not "
        "enabled.",
        "Add 'django.contrib.sessions' to INSTALLED_APPS and "
        "'django.contrib.sessions.middleware.SessionMiddleware' to MIDDLEWARE.",
    ),
    "E004": (
        "LIVE_OAUTH_MAIL['ENCRYPTION_KEYS'][{position}] is not a valid Fernet key.",
        'Generate one with: python -c "from cryptography.fernet import Fernet; '
        'print(Fernet.generate_key().decode())"',
    ),
    "E005": ("{problem}", "Use 'query' (the default) or 'form_post'."),
    "E006": ("{problem}", "Use 'owner' (the default) or 'any'."),
    "E007": (
        "{problem}",
        "Use 'smtp' (the default), 'graph', or 'auto' (SMTP, and Graph for "
        "mailboxes whose SMTP AUTH is switched off).",
    ),
    "E008": (
        "LIVE_OAUTH_MAIL['GRAPH_ENDPOINT'] is not an https URL: {endpoint!r}.",
        "Use https://graph.microsoft.com (the default), or your national cloud's "
        "Graph endpoint.",
    ),
    "E009": (
        "LIVE_OAUTH_MAIL['CLIENT_CERTIFICATE'] is malformed: {problem}",
        "Give {'private_key': <PEM text or a path to a PEM file>, 'thumbprint': "
        "<the certificate's SHA-1 thumbprint in hex, as the Azure portal shows it>}.",
    ),
    "E010": ("{problem}", QUEUE_HINT),
    "E010 TASKS": (
        "QueuedEmailBackend cannot find its task backend: {problem}",
        "Check the TASKS setting (Django's tasks framework).",
    ),
    "E011": ("{problem}", RATE_HINT),
    "E012": (
        "{problem} (linked mailbox {pk}, database {alias!r})",
        f"{RATE_HINT} Correct it on the mailbox's admin page, or clear it to "
        "follow the SEND_RATE setting.",
    ),
    "E013": ("{problem}", "See the settings table in the README."),
    "W001": (
        "LIVE_OAUTH_MAIL['ENCRYPTION_KEYS'] is empty, so stored tokens are "
        "encrypted with a key derived from SECRET_KEY.",
        "Changing SECRET_KEY without keeping the old one in SECRET_KEY_FALLBACKS "
        "would make every linked mailbox unreadable. Set ENCRYPTION_KEYS to your "
        "own Fernet keys, newest first.",
    ),
    "W002": (
        "LIVE_OAUTH_MAIL['AUTHORITY'] is not https: {authority!r}.",
        "Use https://login.microsoftonline.com/common (or /organizations, "
        "/consumers, /<tenant id>); msal refuses plain http.",
    ),
    "W003": (
        "No email backend uses django-live-oauth-mail, so linked mailboxes are "
        "never used to send.",
        f"Set EMAIL_BACKEND = {BACKEND!r}, or use it as the BACKEND of a MAILERS "
        "entry (Django 6.1+).",
    ),
    "W004": (
        f"LIVE_OAUTH_MAIL['ROUTING'] is 'owner' but {MIDDLEWARE} is not in "
        "MIDDLEWARE, so views send with no acting user and only shared mailboxes "
        "can send.",
        f"Add {MIDDLEWARE!r} to MIDDLEWARE after AuthenticationMiddleware.",
    ),
    "W005": (
        "LIVE_OAUTH_MAIL['ROUTING'] is 'any': any code that sets from_email to a "
        "linked address sends, signed in, as that mailbox. A contact form that "
        "copies the visitor's address into from_email lets anyone send as your "
        "users.",
        "Use 'owner' (the default) with SendingAsMiddleware, and mark site "
        "mailboxes (noreply@) shared in the admin.",
    ),
    "W006": (
        f"{{changed}} is not used by {BACKEND}: it sends to "
        "LIVE_OAUTH_MAIL['SMTP_HOST']:LIVE_OAUTH_MAIL['SMTP_PORT'] ({host}:{port}).",
        "Set SMTP_HOST and SMTP_PORT in LIVE_OAUTH_MAIL (or the backend's host and "
        "port options), and remove EMAIL_HOST/EMAIL_PORT. Django's defaults point "
        "at localhost, so this backend does not fall back to them.",
    ),
    "W007": (
        "The task backend cannot run tasks later (supports_defer is False), so "
        "queued mail is sent at once, without pacing or retries.",
        "Use a backend that can defer, such as django-tasks-db's DatabaseBackend "
        "or django-tasks-rq's RQBackend (with the scheduler). Django's "
        "ImmediateBackend is meant for tests.",
    ),
}

#: The check a setting fails when conf cannot read it; any other fails E013.
#: E010's are reported only when QueuedEmailBackend, which alone reads them,
#: is in use; SEND_RATE's whatever the backend, so a typo shows before a queue.
UNREADABLE = {
    "CLIENT_CERTIFICATE": "E009",
    "RESPONSE_MODE": "E005",
    "ROUTING": "E006",
    "TRANSPORT": "E007",
    "SEND_RATE": "E011",
    "QUEUE": "E010",
    "TASK_BACKEND": "E010",
    "TASK_QUEUE": "E010",
    "DAILY_RECIPIENTS": "E010",
    "SESSIONS_PER_MAILBOX": "E010",
    "QUEUE_ATTEMPTS": "E010",
    "QUEUE_BACKOFF": "E010",
    "SENDING_TIMEOUT": "E010",
}


def report(check: str, obj: Any = None, **fields: object) -> CheckMessage:
    """Check ``check`` (``"E001"``) fails, worded from :data:`CHECKS`."""
    msg, hint = CHECKS[check]
    level = Warning if check.startswith("W") else Error
    check_id = f"live_oauth_mail.{check.split()[0]}"
    return level(msg.format(**fields), hint=hint, obj=obj, id=check_id)


@register(Tags.compatibility)
def check_settings(
    app_configs: Sequence[Any] | None = None, **kwargs: Any
) -> list[CheckMessage]:
    try:
        unreadable = conf.unreadable()
    except ConfigurationError as error:  # LIVE_OAUTH_MAIL itself is no dict
        return [report("E013", problem=error)]
    messages = [
        report(UNREADABLE.get(name, "E013"), problem=error)
        for name, error in unreadable.items()
        if UNREADABLE.get(name) != "E010"
    ]
    if not conf.CLIENT_ID:
        messages.append(report("E001"))
    # A malformed certificate still stands in for the secret: E009 says why.
    if "CLIENT_CERTIFICATE" in unreadable:
        has_certificate = True
    else:
        has_certificate = conf.CLIENT_CERTIFICATE is not None
        messages.extend(_certificate_messages())
    if not conf.CLIENT_SECRET and not has_certificate:
        messages.append(report("E002"))
    if not apps.is_installed("django.contrib.sessions") or not any(
        m.endswith("SessionMiddleware") for m in settings.MIDDLEWARE
    ):
        messages.append(report("E003"))
    if "ENCRYPTION_KEYS" not in unreadable:
        messages.extend(_key_messages())
    if "ROUTING" not in unreadable:
        messages.extend(_routing_messages())
    graph_may_send = "TRANSPORT" not in unreadable and conf.TRANSPORT != "smtp"
    if graph_may_send and urlsplit(conf.GRAPH_ENDPOINT).scheme != "https":
        messages.append(report("E008", endpoint=conf.GRAPH_ENDPOINT))
    if urlsplit(conf.AUTHORITY).scheme != "https":
        messages.append(report("W002", authority=conf.AUTHORITY))
    in_use = _backends_in_use()
    if BACKEND in in_use and "SMTP_PORT" not in unreadable:
        messages.extend(_django_host_messages())
    if QUEUED_BACKEND in in_use:
        messages.extend(_queue_messages(unreadable))
    if not in_use & {BACKEND, QUEUED_BACKEND}:
        messages.append(report("W003"))
    return messages


def _key_messages() -> list[CheckMessage]:
    """Keys Fernet refuses; or none at all, so SECRET_KEY's is used."""
    keys = conf.ENCRYPTION_KEYS
    messages = []
    for position, key in enumerate(keys):
        try:
            Fernet(key)
        except (ValueError, TypeError):
            messages.append(report("E004", position=position))
    return messages if keys else [report("W001")]


def _certificate_messages() -> list[CheckMessage]:
    """A CLIENT_CERTIFICATE, readable as a dict, that msal could not use."""
    certificate = conf.CLIENT_CERTIFICATE
    if certificate is None:
        return []
    try:
        problem = certificate_problem(certificate)
    except ConfigurationError as error:  # a private_key file it cannot read
        problem = str(error)
    return [] if problem is None else [report("E009", problem=problem)]


def _routing_messages() -> list[CheckMessage]:
    if conf.ROUTING == "any":
        return [report("W005")]
    if MIDDLEWARE not in settings.MIDDLEWARE:
        return [report("W004")]
    return []


def _django_host_messages() -> list[CheckMessage]:
    """EMAIL_HOST/EMAIL_PORT set for this backend, which does not read them."""
    changed = [
        f"{name} = {getattr(settings, name)!r}"
        for name, default in (("EMAIL_HOST", "localhost"), ("EMAIL_PORT", 25))
        if django_setting_is_set(name) and getattr(settings, name, default) != default
    ]
    if not changed:
        return []
    host, port = conf.SMTP_HOST, conf.SMTP_PORT
    return [report("W006", changed=" and ".join(changed), host=host, port=port)]


def _queue_messages(unreadable: dict[str, ConfigurationError]) -> list[CheckMessage]:
    """Queued sending: readable settings, an engine, and one that can wait."""
    problems = [
        report("E010", problem=error)
        for name, error in unreadable.items()
        if UNREADABLE.get(name) == "E010"
    ]
    if problems:
        return problems
    try:
        tasks.require_engine()
        can_defer = tasks.can_defer()
    except ConfigurationError as error:
        return [report("E010", problem=error)]
    except Exception as error:  # the TASKS setting itself is broken
        return [report("E010 TASKS", problem=error)]
    return [] if can_defer else [report("W007")]


def _backends_in_use() -> set[str]:
    mailers = getattr(settings, "MAILERS", None) or {}
    backends = {
        config.get("BACKEND") for config in mailers.values() if isinstance(config, dict)
    }
    if django_setting_is_set("EMAIL_BACKEND"):
        backends.add(getattr(settings, "EMAIL_BACKEND", None))
    return {b for b in backends if isinstance(b, str)}


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
                obj = f"live_oauth_mail.MailAccount:{pk}"
                messages.append(report("E012", obj, problem=error, pk=pk, alias=alias))
    return messages
