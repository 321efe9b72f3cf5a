"""The backend's options: Django's names, our settings as fallback, what is refused.

Each comes from the backend's own option (or MAILERS OPTIONS), then
``LIVE_OAUTH_MAIL``, then, where Django has one, its ``EMAIL_*`` setting (see
:mod:`.conf`), then our default. ``EMAIL_HOST`` and ``EMAIL_PORT`` never
apply: Django's defaults point at localhost.
"""

from __future__ import annotations

from typing import Any

from ..conf import conf
from ..exceptions import ConfigurationError
from ..transports.base import SMTPOptions

#: Options Django itself passes to backends (6.1's MAILERS), not ours to judge.
_DJANGOS_OWN = frozenset({"alias", "_ignore_unknown_kwargs"})


def smtp_options(
    *,
    host: str | None = None,
    port: int | None = None,
    timeout: float | None = None,
    password: str | None = None,
    use_tls: bool | None = None,
    use_ssl: bool | None = None,
    ssl_certfile: str | None = None,
    ssl_keyfile: str | None = None,
    others: dict[str, Any] | None = None,
) -> SMTPOptions:
    """The options in force; raises ConfigurationError for what is refused."""
    _refuse_unknown(others or {})
    if password:
        raise ConfigurationError(
            "django_live_oauth_mail.backends.EmailBackend signs in with OAuth; "
            "do not give it a password (auth_password, EMAIL_HOST_PASSWORD "
            "is ignored). Link the mailbox instead."
        )
    ssl = conf.SMTP_USE_SSL if use_ssl is None else bool(use_ssl)
    tls = not ssl if use_tls is None else bool(use_tls)
    if tls == ssl:
        raise ConfigurationError(
            "Use exactly one of use_tls (STARTTLS, which Microsoft requires on "
            "port 587) and use_ssl: OAuth tokens never travel unencrypted."
        )
    return SMTPOptions(
        host=host or conf.SMTP_HOST,
        port=port or conf.SMTP_PORT,
        timeout=conf.SMTP_TIMEOUT if timeout is None else timeout,
        use_tls=tls,
        use_ssl=ssl,
        ssl_certfile=ssl_certfile or conf.SMTP_SSL_CERTFILE,
        ssl_keyfile=ssl_keyfile or conf.SMTP_SSL_KEYFILE,
    )


def _refuse_unknown(options: dict[str, Any]) -> None:
    """Refuse a misspelt option on every Django version, as 6.1's MAILERS does.

    With an ``alias`` (a MAILERS entry) Django raises ``InvalidMailer`` itself,
    naming the alias; before 6.1, or when built directly, Django would ignore it.
    """
    ignored = set(options.get("_ignore_unknown_kwargs") or ())
    unknown = sorted(set(options) - _DJANGOS_OWN - ignored)
    if unknown and options.get("alias") is None:
        raise ConfigurationError(
            f"Unknown option(s) for django_live_oauth_mail.backends.EmailBackend: "
            f"{', '.join(map(repr, unknown))}. It takes account, user, host, port, "
            "timeout, use_tls, use_ssl, ssl_certfile, ssl_keyfile and "
            "fail_silently."
        )
