"""Typed access to the ``LIVE_OAUTH_MAIL`` settings dict, read live.

Every property reads ``django.conf.settings`` when it is accessed, so
``override_settings`` works in tests, and nothing here writes to settings.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.conf import settings as django_settings

from .exceptions import ConfigurationError

SETTINGS_NAME = "LIVE_OAUTH_MAIL"

DEFAULTS: dict[str, Any] = {
    "CLIENT_ID": "",
    "CLIENT_SECRET": "",
    "AUTHORITY": "https://login.microsoftonline.com/common",
    "SCOPES": ["https://outlook.office.com/SMTP.Send"],
    "REDIRECT_URI": None,
    "SUCCESS_URL": None,
    "RESPONSE_MODE": "query",
    "SMTP_HOST": "smtp.office365.com",
    "SMTP_PORT": 587,
    "SMTP_TIMEOUT": 30,
    "SMTP_RETRIES": 2,
    "SMTP_RETRY_BACKOFF": 1.0,
    "ENCRYPTION_KEYS": [],
    "DEFAULT_ACCOUNT": None,
    "ROUTING": "owner",
    "HTTP_TIMEOUT": 15,
    "CA_BUNDLE": None,
}

# msal adds these itself and refuses them when passed (see msal's
# ClientApplication._decorate_scope), so they are stripped from SCOPES.
RESERVED_SCOPES = frozenset({"openid", "profile", "offline_access"})


class Settings:
    """One property per setting; see the README's settings reference."""

    def _get(self, name: str) -> Any:
        configured = getattr(django_settings, SETTINGS_NAME, None) or {}
        if not isinstance(configured, dict):
            raise ConfigurationError(
                f"settings.{SETTINGS_NAME} must be a dict, not "
                f"{type(configured).__name__}."
            )
        return configured.get(name, DEFAULTS[name])

    @property
    def CLIENT_ID(self) -> str:
        return str(self._get("CLIENT_ID") or "")

    @property
    def CLIENT_SECRET(self) -> str:
        return str(self._get("CLIENT_SECRET") or "")

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
    def LOGIN_SCOPES(self) -> list[str]:
        """The scopes asked for when linking: SCOPES plus ``email``."""
        scopes = self.SCOPES
        return scopes if "email" in scopes else [*scopes, "email"]

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
        timeout = self._get("SMTP_TIMEOUT")
        return None if timeout is None else float(timeout)

    @property
    def SMTP_RETRIES(self) -> int:
        """Extra attempts per message after a temporary SMTP failure."""
        return max(0, int(self._get("SMTP_RETRIES")))

    @property
    def SMTP_RETRY_BACKOFF(self) -> float:
        """Seconds before the first retry; each further retry waits twice as long."""
        return max(0.0, float(self._get("SMTP_RETRY_BACKOFF")))

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


conf = Settings()
