"""Every ``LIVE_OAUTH_MAIL`` setting, declared once as data, and read live.

Each setting is one :class:`Setting` line on :class:`Settings`: how its value
is read (its type), its default, bounds, choices and Django fallback. From
that line come ``conf.NAME``, the ConfigurationError a value it cannot read
raises, the system checks (:mod:`.checks`) and the README's settings table
(tests/test_docs.py). Every read goes to ``django.conf.settings``, so
``override_settings`` works in tests, and nothing here writes to settings.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import KW_ONLY, dataclass, field
from typing import Any, Generic, Literal, TypeVar, cast, overload

from django.conf import settings as django_settings

from .exceptions import ConfigurationError

SETTINGS_NAME = "LIVE_OAUTH_MAIL"

#: What a mailbox sends through; each needs a token for its own resource.
Protocol = Literal["smtp", "graph"]

#: What a rate's unit means, in seconds.
RATE_UNITS = {"second": 1.0, "minute": 60.0, "hour": 3600.0, "day": 86400.0}

#: The most messages a rate may allow per period. Exchange itself takes 30 a
#: minute from a mailbox; a larger count is a typo, and an unbounded one
#: overflows the database's integers when the pace is counted.
MAX_RATE_COUNT = 10_000
RATE_EXPECTED = (
    f"1 to {MAX_RATE_COUNT:,} messages per second, minute, hour or day, "
    "such as '30/minute'"
)

# msal adds these itself and refuses them when passed (see msal's
# ClientApplication._decorate_scope), so they are stripped from SCOPES.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})

T = TypeVar("T")


def invalid(name: str, expected: str, value: Any, *, secret: bool = False) -> str:
    """The one wording of a value that cannot be used: what it must be instead."""
    shown = "" if secret else f", not {value!r}"
    return f"{name} must be {expected}{shown}."


def django_setting_is_set(name: str) -> bool:
    """Is a Django setting set by the site (or overridden), not a default?"""
    # django-stubs types settings attributes as settings, not this method.
    return bool(cast(Any, django_settings).is_overridden(name))


def configured() -> dict[str, Any]:
    """The ``LIVE_OAUTH_MAIL`` dict as the site set it (empty when unset)."""
    values = getattr(django_settings, SETTINGS_NAME, None) or {}
    if not isinstance(values, dict):
        raise ConfigurationError(
            f"settings.{SETTINGS_NAME} must be a dict, not {type(values).__name__}."
        )
    return values


@dataclass(eq=False)
class Setting(Generic[T]):
    """One setting as data; on :class:`Settings`, ``conf.NAME`` reads it live.

    The value is looked up in ``LIVE_OAUTH_MAIL``, then in the Django setting
    ``django`` names (only when the site set it), then ``default``. ``read``
    turns it into ``T``; a value it refuses (TypeError, ValueError), or one
    outside ``choices``, raises ConfigurationError naming the setting and what
    it must be (``expected``), and never showing a ``secret`` one. A number
    under ``minimum`` is read as ``minimum``, not refused: earlier versions
    clamped, and a site's ``-1`` retries must keep meaning none.
    """

    read: Callable[[Any], T]
    default: Any
    _: KW_ONLY
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    django: str | None = None
    expected: str = ""
    secret: bool = False
    name: str = field(default="", init=False)  # the attribute's, when declared

    def __post_init__(self) -> None:
        if self.choices and not self.expected:
            *others, last = map(repr, self.choices)
            self.expected = f"{', '.join(others)} or {last}"
        self.expected = self.expected or _EXPECTED.get(self.read, "readable")

    def __set_name__(self, owner: type[Settings], name: str) -> None:
        self.name = name

    @overload
    def __get__(self, instance: None, owner: type[Settings]) -> Setting[T]: ...
    @overload
    def __get__(self, instance: Settings, owner: type[Settings]) -> T: ...
    def __get__(
        self, instance: Settings | None, owner: type[Settings]
    ) -> T | Setting[T]:
        if instance is None:
            return self
        value = self.value()
        try:
            result = self.read(value)
        except (TypeError, ValueError):
            raise self.error(value) from None  # its context may show a secret
        if self.choices and result not in self.choices:
            raise self.error(result)
        if self.minimum is not None and cast(Any, result) < self.minimum:
            return self.read(self.minimum)
        return result

    def value(self) -> Any:
        """The value as set, before it is read."""
        values = configured()
        if self.name in values:
            return values[self.name]
        # Only when set: Django 6.1 warns on every read of these (deprecated
        # there, and unavailable with MAILERS).
        if self.django and django_setting_is_set(self.django):
            fallback = getattr(django_settings, self.django, None)
            if fallback is not None:
                return fallback
        return self.default

    def error(self, value: Any) -> ConfigurationError:
        label = f"{SETTINGS_NAME}[{self.name!r}]"
        return ConfigurationError(
            invalid(label, self.expected, value, secret=self.secret)
        )


# Readers for values a builtin (str, int, float, bool) does not read alone.


def text(value: Any) -> str:
    """A string; unset (``None``) is empty."""
    return str(value or "")


def optional(value: Any) -> str | None:
    """A string, or ``None`` when empty."""
    return str(value) if value else None


def optional_number(value: Any) -> float | None:
    return None if value is None else float(value)


def url(value: Any) -> str:
    return str(value).rstrip("/")


def scopes(value: Any) -> list[str]:
    """A list, or one space-separated string, without msal's reserved scopes."""
    names = value.split() if isinstance(value, str) else list(value or [])
    return [str(name) for name in names if name not in RESERVED_SCOPES]


def graph_scopes(value: Any) -> list[str]:
    """A bare name (``Mail.Send``) joins ``GRAPH_ENDPOINT``, to serve every cloud."""
    endpoint = conf.GRAPH_ENDPOINT
    return [s if "/" in s else f"{endpoint}/{s}" for s in scopes(value)]


def client_certificate(value: Any) -> dict[str, str] | None:
    if not value:
        return None
    if not isinstance(value, dict):
        raise TypeError  # Setting says what it must be
    return {str(k): str(v) for k, v in value.items()}


def encryption_keys(value: Any) -> list[str]:
    keys = [value] if isinstance(value, (str, bytes)) else list(value or [])
    return [k.decode() if isinstance(k, bytes) else str(k) for k in keys if k]


# ASCII digits only: str.isdigit() and int() also take "²" or Arabic-Indic
# digits, which Django then cannot store or compare.
_RATE = re.compile(r"\s*([0-9]{1,6})\s*/\s*([a-z]+?)s?\s*", re.ASCII | re.IGNORECASE)


def send_rate(value: Any) -> tuple[int, float]:
    """``"30/minute"`` as (30, 60.0); see :func:`parse_rate`."""
    match = _RATE.fullmatch(value) if isinstance(value, str) else None
    if match:
        count, unit = int(match[1]), match[2].lower()
        if 0 < count <= MAX_RATE_COUNT and unit in RATE_UNITS:
            return count, RATE_UNITS[unit]
    raise ValueError(value)


_RECIPIENT_LIMITS = {"work": 10_000, "app": 10_000, "personal": 1_000}


def recipient_limits(value: Any) -> dict[str, int]:
    """By mailbox kind; one number sets every kind, and an unset kind is the default."""
    if isinstance(value, int):
        return dict.fromkeys(_RECIPIENT_LIMITS, value)
    merged = {**_RECIPIENT_LIMITS, **(value or {})}
    return {str(kind): int(limit) for kind, limit in merged.items()}


_EXPECTED: dict[Callable[[Any], Any], str] = {
    int: "a whole number",
    float: "a number",
    optional_number: "a number of seconds, or None",
    scopes: "a list of scopes, or one string of them",
    graph_scopes: "a list of scopes, or one string of them",
    send_rate: RATE_EXPECTED,
    recipient_limits: "a number of recipients, or a dict of them by mailbox kind",
}


class Settings:
    """Every setting, in the README's order; see its settings table."""

    CLIENT_ID = Setting(text, "")
    CLIENT_SECRET = Setting(text, "", secret=True)
    # msal's shape: {"private_key": PEM or a file path, "thumbprint": hex}.
    # When set it is the credential of every confidential flow, instead of
    # CLIENT_SECRET: many tenants forbid secrets for app-only access.
    CLIENT_CERTIFICATE = Setting(
        client_certificate,
        None,
        expected="a dict with 'private_key' and 'thumbprint'",
        secret=True,
    )
    AUTHORITY = Setting(url, "https://login.microsoftonline.com/common")
    SCOPES = Setting(scopes, ["https://outlook.office.com/SMTP.Send"])
    # "auto": SMTP until a mailbox's SMTP AUTH is off, then Graph.
    TRANSPORT = Setting(str, "smtp", choices=("smtp", "graph", "auto"))
    GRAPH_ENDPOINT = Setting(url, "https://graph.microsoft.com")
    GRAPH_SCOPES = Setting(graph_scopes, ["Mail.Send"])
    REDIRECT_URI = Setting(optional, None)
    SUCCESS_URL = Setting(optional, None)
    RESPONSE_MODE = Setting(str, "query", choices=("query", "form_post"))
    # The Django fallbacks honour a site's EMAIL_TIMEOUT or EMAIL_USE_SSL as
    # Django's SMTP backend does. EMAIL_HOST and EMAIL_PORT are not: Django's
    # defaults point at localhost. (Django 6.1 allows none beside MAILERS.)
    SMTP_HOST = Setting(str, "smtp.office365.com")
    SMTP_PORT = Setting(int, 587)
    SMTP_TIMEOUT = Setting(optional_number, 30, django="EMAIL_TIMEOUT")
    SMTP_USE_SSL = Setting(bool, False, django="EMAIL_USE_SSL")
    SMTP_SSL_CERTFILE = Setting(optional, None, django="EMAIL_SSL_CERTFILE")
    SMTP_SSL_KEYFILE = Setting(optional, None, django="EMAIL_SSL_KEYFILE")
    SESSION_REUSE = Setting(bool, True)
    SESSION_IDLE_TIMEOUT = Setting(float, 60, minimum=0)
    SMTP_RETRIES = Setting(int, 2, minimum=0)
    SMTP_RETRY_BACKOFF = Setting(float, 1.0, minimum=0)
    MAX_INLINE_WAIT = Setting(float, 10, minimum=0)
    ENCRYPTION_KEYS = Setting(
        encryption_keys, [], expected="a list of Fernet keys", secret=True
    )
    # "owner": only the acting user's own or shared mailboxes send; "any": any
    # linked mailbox sends for its From address (the behaviour before 0.2).
    ROUTING = Setting(str, "owner", choices=("owner", "any"))
    DEFAULT_ACCOUNT = Setting(optional, None)
    HTTP_TIMEOUT = Setting(float, 15)
    CA_BUNDLE = Setting(optional, None)
    QUEUE = Setting(str, "tasks", choices=("tasks", "celery"))
    SEND_RATE = Setting(send_rate, "30/minute")
    DAILY_RECIPIENTS = Setting(recipient_limits, _RECIPIENT_LIMITS)
    SESSIONS_PER_MAILBOX = Setting(int, 3, minimum=1)
    TASK_BACKEND = Setting(str, "default")
    TASK_QUEUE = Setting(str, "default")
    QUEUE_ATTEMPTS = Setting(int, 10, minimum=1)
    QUEUE_BACKOFF = Setting(float, 30.0, minimum=0)
    SENDING_TIMEOUT = Setting(float, 600, minimum=1)

    def unreadable(self) -> dict[str, ConfigurationError]:
        """Each setting that cannot be read, with why: what the checks report.

        Raises ConfigurationError itself when ``LIVE_OAUTH_MAIL`` is no dict.
        """
        configured()
        problems: dict[str, ConfigurationError] = {}
        for name in SETTINGS:
            try:
                getattr(self, name)
            except ConfigurationError as error:
                problems[name] = error
        return problems

    def daily_recipients(self, kind: str) -> int:
        """The recipients a mailbox of ``kind`` may send to in 24 hours."""
        limits = self.DAILY_RECIPIENTS
        return limits.get(kind, limits["work"])

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


#: Every setting, by name, in the README's order.
SETTINGS: dict[str, Setting[Any]] = {
    name: setting
    for name, setting in vars(Settings).items()
    if isinstance(setting, Setting)
}


def parse_rate(value: Any, name: str) -> tuple[int, float]:
    """``"30/minute"`` as (30, 60.0); raises ConfigurationError if unreadable.

    The count is 1 to :data:`MAX_RATE_COUNT` in ASCII digits; the period is a
    second, minute, hour or day (a trailing "s" is allowed). ``name`` says
    whose rate it is: the setting's, or a mailbox's.
    """
    try:
        return send_rate(value)
    except ValueError:
        raise ConfigurationError(invalid(name, RATE_EXPECTED, value)) from None


def _with_email(scopes: list[str]) -> list[str]:
    """``email`` added: the link learns which mailbox signed in from its claim."""
    return scopes if "email" in scopes else [*scopes, "email"]


conf = Settings()
