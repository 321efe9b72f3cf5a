"""Typed access to the ``LIVE_OAUTH_MAIL`` settings dict, read live.

Every property reads ``django.conf.settings`` when it is accessed, so
``override_settings`` works in tests, and nothing here writes to settings.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Literal, cast

from django.conf import settings as django_settings

from .exceptions import ConfigurationError

SETTINGS_NAME = "LIVE_OAUTH_MAIL"

#: What a mailbox sends through; each needs a token for its own resource.
Protocol = Literal["smtp", "graph"]
TRANSPORTS = ("smtp", "graph", "auto")

DEFAULTS: dict[str, Any] = {
    "CLIENT_ID": "",
    "CLIENT_SECRET": "",
    "CLIENT_CERTIFICATE": None,
    "AUTHORITY": "https://login.microsoftonline.com/common",
    "SCOPES": ["https://outlook.office.com/SMTP.Send"],
    "TRANSPORT": "smtp",
    "GRAPH_ENDPOINT": "https://graph.microsoft.com",
    "GRAPH_SCOPES": ["Mail.Send"],
    "REDIRECT_URI": None,
    "SUCCESS_URL": None,
    "RESPONSE_MODE": "query",
    "SMTP_HOST": "smtp.office365.com",
    "SMTP_PORT": 587,
    "SMTP_TIMEOUT": 30,
    "SMTP_USE_SSL": False,
    "SMTP_SSL_CERTFILE": None,
    "SMTP_SSL_KEYFILE": None,
    "SMTP_RETRIES": 2,
    "SESSION_REUSE": True,
    "SESSION_IDLE_TIMEOUT": 60,
    "SMTP_RETRY_BACKOFF": 1.0,
    "MAX_INLINE_WAIT": 10,
    "ENCRYPTION_KEYS": [],
    "DEFAULT_ACCOUNT": None,
    "ROUTING": "owner",
    "HTTP_TIMEOUT": 15,
    "CA_BUNDLE": None,
    "QUEUE": "tasks",
    "TASK_BACKEND": "default",
    "TASK_QUEUE": "default",
    "SEND_RATE": "30/minute",
    "SESSIONS_PER_MAILBOX": 3,
    "DAILY_RECIPIENTS": {"work": 10_000, "app": 10_000, "personal": 1_000},
    "QUEUE_ATTEMPTS": 10,
    "QUEUE_BACKOFF": 30.0,
    "SENDING_TIMEOUT": 600,
}

#: What a rate's unit means, in seconds.
RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}

# Settings that fall back to Django's own before our default, so a site's
# EMAIL_TIMEOUT or EMAIL_USE_SSL is honoured as by Django's SMTP backend.
# (EMAIL_HOST and EMAIL_PORT are not: Django's defaults point at localhost.
# Django 6.1 allows none of them beside MAILERS.)
DJANGO_FALLBACKS = {
    "SMTP_TIMEOUT": "EMAIL_TIMEOUT",
    "SMTP_USE_SSL": "EMAIL_USE_SSL",
    "SMTP_SSL_CERTFILE": "EMAIL_SSL_CERTFILE",
    "SMTP_SSL_KEYFILE": "EMAIL_SSL_KEYFILE",
}

# msal adds these itself and refuses them when passed (see msal's
# ClientApplication._decorate_scope), so they are stripped from SCOPES.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


def django_setting_is_set(name: str) -> bool:
    """Is a Django setting set by the site (or overridden), not a default?"""
    # django-stubs types settings attributes as settings, not this method.
    return bool(cast(Any, django_settings).is_overridden(name))


class Settings:
    """One property per setting; see the README's settings reference."""

    def _get(self, name: str) -> Any:
        configured = getattr(django_settings, SETTINGS_NAME, None) or {}
        if not isinstance(configured, dict):
            raise ConfigurationError(
                f"settings.{SETTINGS_NAME} must be a dict, not "
                f"{type(configured).__name__}."
            )
        if name in configured:
            return configured[name]
        django_name = DJANGO_FALLBACKS.get(name)
        # Only when set: Django 6.1 warns on every read of these (deprecated
        # there, and unavailable with MAILERS).
        if django_name and django_setting_is_set(django_name):
            value = getattr(django_settings, django_name, None)
            if value is not None:
                return value
        return DEFAULTS[name]

    @property
    def CLIENT_ID(self) -> str:
        return str(self._get("CLIENT_ID") or "")

    @property
    def CLIENT_SECRET(self) -> str:
        return str(self._get("CLIENT_SECRET") or "")

    @property
    def CLIENT_CERTIFICATE(self) -> dict[str, str] | None:
        """``{"private_key": PEM or a file path, "thumbprint": hex}``, msal's shape.

        When set it is the credential of every confidential flow, instead of
        ``CLIENT_SECRET``: many tenants forbid secrets for app-only access.
        """
        certificate = self._get("CLIENT_CERTIFICATE")
        if not certificate:
            return None
        if not isinstance(certificate, dict):
            raise ConfigurationError(
                f"{SETTINGS_NAME}['CLIENT_CERTIFICATE'] must be a dict with "
                "'private_key' and 'thumbprint'."
            )
        return {str(k): str(v) for k, v in certificate.items()}

    @property
    def AUTHORITY(self) -> str:
        return str(self._get("AUTHORITY")).rstrip("/")

    @property
    def SCOPES(self) -> list[str]:
        scopes: Sequence[str] = self._get("SCOPES") or []
        if isinstance(scopes, str):
            scopes = scopes.split()
        return [s for s in scopes if s not in RESERVED_SCOPES]

    @property
    def TRANSPORT(self) -> str:
        """``"smtp"``, ``"graph"``, or ``"auto"``: SMTP until SMTP AUTH is off."""
        transport = str(self._get("TRANSPORT"))
        if transport not in TRANSPORTS:
            raise ConfigurationError(
                f"{SETTINGS_NAME}['TRANSPORT'] must be 'smtp', 'graph' or 'auto', "
                f"not {transport!r}."
            )
        return transport

    @property
    def GRAPH_ENDPOINT(self) -> str:
        """Graph's base URL: national clouds and the local stand-in differ."""
        return str(self._get("GRAPH_ENDPOINT")).rstrip("/")

    @property
    def GRAPH_SCOPES(self) -> list[str]:
        """Graph permissions, as full scopes under ``GRAPH_ENDPOINT``.

        A bare name (``Mail.Send``) is joined to the endpoint, so one setting
        serves every cloud.
        """
        scopes: Sequence[str] = self._get("GRAPH_SCOPES") or []
        if isinstance(scopes, str):
            scopes = scopes.split()
        endpoint = self.GRAPH_ENDPOINT
        return [
            s if "/" in s else f"{endpoint}/{s}"
            for s in scopes
            if s not in RESERVED_SCOPES
        ]

    def scopes_for(self, protocol: Protocol) -> list[str]:
        """The scopes of one resource's token: one token never serves both."""
        return self.GRAPH_SCOPES if protocol == "graph" else self.SCOPES

    def app_scope_for(self, protocol: Protocol) -> tuple[str, str]:
        """App-only: the ``.default`` scope and the role its token must carry."""
        if protocol == "graph":
            return f"{self.GRAPH_ENDPOINT}/.default", "Mail.Send"
        return "https://outlook.office365.com/.default", "SMTP.SendAsApp"

    @property
    def LINK_PROTOCOL(self) -> Protocol:
        """The resource a new link's code is redeemed for; the other comes later."""
        return "graph" if self.TRANSPORT == "graph" else "smtp"

    @property
    def LOGIN_SCOPES(self) -> list[str]:
        """The consent asked for when linking: each transport's scopes, ``email``.

        Graph's are asked only when Graph may be used, so an SMTP-only site
        never asks its users for more than it needs.
        """
        scopes = self.SCOPES
        if self.TRANSPORT != "smtp":
            scopes = [*scopes, *self.GRAPH_SCOPES]
        return _with_email(scopes)

    @property
    def REDEEM_SCOPES(self) -> list[str]:
        """What the authorization code is redeemed for: one resource, ``email``."""
        return _with_email(self.scopes_for(self.LINK_PROTOCOL))

    @property
    def REDIRECT_URI(self) -> str | None:
        return self._get("REDIRECT_URI") or None

    @property
    def SUCCESS_URL(self) -> str | None:
        return self._get("SUCCESS_URL") or None

    @property
    def RESPONSE_MODE(self) -> str:
        mode = str(self._get("RESPONSE_MODE"))
        if mode not in {"query", "form_post"}:
            raise ConfigurationError(
                f"{SETTINGS_NAME}['RESPONSE_MODE'] must be 'query' or 'form_post', "
                f"not {mode!r}."
            )
        return mode

    @property
    def SMTP_HOST(self) -> str:
        return str(self._get("SMTP_HOST"))

    @property
    def SMTP_PORT(self) -> int:
        return int(self._get("SMTP_PORT"))

    @property
    def SMTP_TIMEOUT(self) -> float | None:
        """Seconds; then Django's ``EMAIL_TIMEOUT``, then 30."""
        timeout = self._get("SMTP_TIMEOUT")
        return None if timeout is None else float(timeout)

    @property
    def SMTP_USE_SSL(self) -> bool:
        """Implicit TLS instead of STARTTLS; then Django's ``EMAIL_USE_SSL``."""
        return bool(self._get("SMTP_USE_SSL"))

    @property
    def SMTP_SSL_CERTFILE(self) -> str | None:
        """A client certificate; then Django's ``EMAIL_SSL_CERTFILE``."""
        return self._get("SMTP_SSL_CERTFILE") or None

    @property
    def SMTP_SSL_KEYFILE(self) -> str | None:
        """Its private key; then Django's ``EMAIL_SSL_KEYFILE``."""
        return self._get("SMTP_SSL_KEYFILE") or None

    @property
    def SESSION_REUSE(self) -> bool:
        """Keep signed-in sessions between sends (see :mod:`.sessions`)."""
        return bool(self._get("SESSION_REUSE"))

    @property
    def SESSION_IDLE_TIMEOUT(self) -> float:
        """Seconds an unused session is kept before it is closed."""
        return max(0.0, float(self._get("SESSION_IDLE_TIMEOUT")))

    @property
    def SMTP_RETRIES(self) -> int:
        """Extra attempts per message after a temporary SMTP failure."""
        return max(0, int(self._get("SMTP_RETRIES")))

    @property
    def SMTP_RETRY_BACKOFF(self) -> float:
        """Seconds before the first retry; each further retry waits twice as long."""
        return max(0.0, float(self._get("SMTP_RETRY_BACKOFF")))

    @property
    def MAX_INLINE_WAIT(self) -> float:
        """Seconds one message may wait, in all, on a server that throttles us."""
        return max(0.0, float(self._get("MAX_INLINE_WAIT")))

    @property
    def ENCRYPTION_KEYS(self) -> list[str]:
        keys = self._get("ENCRYPTION_KEYS") or []
        if isinstance(keys, (str, bytes)):
            keys = [keys]
        return [k.decode() if isinstance(k, bytes) else str(k) for k in keys if k]

    @property
    def DEFAULT_ACCOUNT(self) -> str | None:
        return self._get("DEFAULT_ACCOUNT") or None

    @property
    def ROUTING(self) -> str:
        """``"owner"``: only the acting user's own or shared mailboxes send.

        ``"any"``: any linked mailbox sends for its From address, whoever runs
        the code (the behaviour before 0.2).
        """
        routing = str(self._get("ROUTING"))
        if routing not in {"owner", "any"}:
            raise ConfigurationError(
                f"{SETTINGS_NAME}['ROUTING'] must be 'owner' or 'any', not {routing!r}."
            )
        return routing

    @property
    def HTTP_TIMEOUT(self) -> float:
        return float(self._get("HTTP_TIMEOUT"))

    @property
    def CA_BUNDLE(self) -> str | None:
        return self._get("CA_BUNDLE") or None

    @property
    def QUEUE(self) -> str:
        """What runs queued sends: ``"tasks"`` (Django's TASKS) or ``"celery"``."""
        queue = str(self._get("QUEUE"))
        if queue not in {"tasks", "celery"}:
            raise ConfigurationError(
                f"{SETTINGS_NAME}['QUEUE'] must be 'tasks' or 'celery', not {queue!r}."
            )
        return queue

    @property
    def TASK_BACKEND(self) -> str:
        """The ``TASKS`` alias that runs the sending task."""
        return str(self._get("TASK_BACKEND"))

    @property
    def TASK_QUEUE(self) -> str:
        """The queue the sending task goes to (it must be in the backend's QUEUES)."""
        return str(self._get("TASK_QUEUE"))

    @property
    def SEND_RATE(self) -> tuple[int, float]:
        """Messages per period for a mailbox (``"30/minute"``): (count, seconds)."""
        return parse_rate(self._get("SEND_RATE"), f"{SETTINGS_NAME}['SEND_RATE']")

    @property
    def SESSIONS_PER_MAILBOX(self) -> int:
        """Worker processes that may hold an SMTP session to one mailbox at once."""
        return max(1, int(self._get("SESSIONS_PER_MAILBOX")))

    def daily_recipients(self, kind: str) -> int:
        """The recipients a mailbox of ``kind`` may send to in 24 hours."""
        limits = self._get("DAILY_RECIPIENTS")
        if isinstance(limits, int):
            return limits
        merged = {**DEFAULTS["DAILY_RECIPIENTS"], **(limits or {})}
        return int(merged.get(kind, merged["work"]))

    @property
    def QUEUE_ATTEMPTS(self) -> int:
        """Attempts at a queued message before a temporary failure is final."""
        return max(1, int(self._get("QUEUE_ATTEMPTS")))

    @property
    def QUEUE_BACKOFF(self) -> float:
        """Seconds before a queued message's first retry; doubling, with jitter."""
        return max(0.0, float(self._get("QUEUE_BACKOFF")))

    @property
    def SENDING_TIMEOUT(self) -> float:
        """Seconds after which a message still marked sending is ``unknown``."""
        return max(1.0, float(self._get("SENDING_TIMEOUT")))


#: The most messages a rate may allow per period. Exchange itself takes 30 a
#: minute from a mailbox; a larger count is a typo, and an unbounded one
#: overflows the database's integers when the pace is counted.
MAX_RATE_COUNT = 10_000

# ASCII digits only: str.isdigit() and int() also take "²" or Arabic-Indic
# digits, which Django then cannot store or compare.
_RATE = re.compile(r"\s*([0-9]{1,6})\s*/\s*([a-z]+?)s?\s*", re.ASCII | re.IGNORECASE)


def parse_rate(value: Any, name: str) -> tuple[int, float]:
    """``"30/minute"`` as (30, 60.0); raises ConfigurationError if unreadable.

    The count is 1 to :data:`MAX_RATE_COUNT` in ASCII digits; the period is a
    second, minute, hour or day (a trailing "s" is allowed).
    """
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match:
        count, unit = int(match[1]), match[2].lower()
        if 0 < count <= MAX_RATE_COUNT and unit in RATE_UNITS:
            return count, RATE_UNITS[unit]
    raise ConfigurationError(
        f"{name} must be 1 to {MAX_RATE_COUNT:,} messages per second, minute, "
        f"hour or day, such as '30/minute', not {value!r}."
    )


def _with_email(scopes: list[str]) -> list[str]:
    """``email`` added: the link learns which mailbox signed in from its claim."""
    return scopes if "email" in scopes else [*scopes, "email"]


conf = Settings()
