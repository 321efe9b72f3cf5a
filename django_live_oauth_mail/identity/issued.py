"""msal's answer to a token request, taken apart the moment it arrives.

That answer is a dict holding the new access (and refresh) tokens; a frame
that keeps it may end up on a traceback, where Django's debug page and error
reporters show every local whatever ``sensitive_variables`` says. So the
token is wrapped in a :class:`Secret` at once, and the dict is dropped.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import json
from collections.abc import Mapping
from typing import Any

from django.views.decorators.debug import sensitive_variables

from ..secret import Secret


@dataclasses.dataclass(frozen=True)
class AccessToken:
    """A usable access token for one mailbox. ``repr()`` never shows the value."""

    value: Secret[str] = dataclasses.field(repr=False)
    expires_at: datetime.datetime | None
    refreshed: bool
    # The mailbox's serialized msal cache when this call changed it, else None.
    serialized_cache: str | None = dataclasses.field(repr=False, default=None)


@dataclasses.dataclass(frozen=True)
class Issued:
    """msal's answer to a token request, taken apart at once: that dict holds
    the new tokens, and must not stay in a frame that may be on a traceback."""

    access_token: Secret[str] | None
    expires_at: datetime.datetime | None
    from_cache: bool
    roles: frozenset[str]
    #: msal's error answer (error, description, codes: no token), or None.
    error: Mapping[str, Any] | None

    @classmethod
    def of(cls, result: Mapping[str, Any] | None) -> Issued | None:
        if not result or "error" in result:
            return cls(None, None, False, frozenset(), dict(result)) if result else None
        token = result["access_token"]
        cached = result.get("token_source") == "cache"
        roles = frozenset(_roles(token))
        return cls(Secret(token), expires_at(result), cached, roles, None)

    def token(self, serialized_cache: str | None = None) -> AccessToken:
        assert self.access_token is not None
        return AccessToken(
            self.access_token, self.expires_at, not self.from_cache, serialized_cache
        )


def expires_at(result: Mapping[str, Any]) -> datetime.datetime | None:
    """When the token in msal's answer expires, from its ``expires_in``."""
    expires_in = result.get("expires_in")
    if expires_in is None:
        return None
    return datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(
        seconds=int(expires_in)
    )


@sensitive_variables()
def _roles(token: str) -> set[str]:
    """The ``roles`` claim of a JWT access token (not verified: only read)."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(
            base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
        )
        return {str(role) for role in claims.get("roles") or []}
    except (IndexError, ValueError, AttributeError):
        return set()
