"""Who signs a mailbox in: the seam a second identity provider plugs into.

A provider fills :class:`SignInProvider`: it starts and finishes a link, and
hands out a mailbox's access token, from the mailbox's stored token state or,
for an app mailbox, as the app itself. Each provider is registered here under
its name; a new one adds its module beside :mod:`.microsoft` and one line
below, or calls :func:`register` from its ``AppConfig.ready()``. The views,
:mod:`.tokens` (with its refresh lease, storage and signals) and everything
above them ask by name and do not change. The test suite proves it with a
provider of its own (tests/identity/test_identity_seam.py).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from typing import Any

from ..conf import Protocol
from ..exceptions import ConfigurationError
from ..models import MailAccount
from . import microsoft
from .issued import AccessToken
from .linking import LinkedIdentity

__all__ = [
    "MICROSOFT",
    "LinkedIdentity",  # what finish_link returns: a provider builds one
    "SignInProvider",
    "for_account",
    "get",
    "is_registered",
    "register",
    "unregister",
]

#: The provider of every mailbox until ``MailAccount.provider`` exists (#26).
MICROSOFT = "microsoft"


class SignInProvider(typing.Protocol):
    """What a sign-in provider does; no method stores anything.

    Tokens travel as :class:`.AccessToken` (the value a masked ``Secret``);
    a token method that changed the mailbox's token state returns the new
    state in ``serialized_cache``, and :mod:`.tokens` stores it. Errors are
    ours (:class:`.TokenError` and its kin), raised ``from None``, naming
    the mailbox and what to do next.
    """

    def start_link(
        self, redirect_uri: str, *, login_hint: str | None
    ) -> dict[str, Any]:
        """A new link flow: ``flow["auth_uri"]`` is where to send the user,
        ``flow["state"]`` the key it is kept under in the Django session.

        The whole dict is kept there until the callback, so it must be
        JSON-serializable, and it must hold no token.
        """

    def finish_link(
        self, flow: dict[str, Any], params: Mapping[str, str]
    ) -> LinkedIdentity:
        """The mailbox the callback's ``params`` answer ``flow`` for.

        Raises :class:`.AuthorizationDeclined` when the user cancelled, and
        :class:`.AuthorizationFailed` or :class:`.IdentityPlatformUnavailable`
        otherwise.
        """

    def cached_token(
        self, account: MailAccount, protocol: Protocol
    ) -> AccessToken | None:
        """A still-fresh token for ``protocol`` from the stored state, or None.

        No request and no lock: it is called on every send, and again while
        another worker holds the refresh lease.
        """

    def redeem(
        self, account: MailAccount, protocol: Protocol, *, force_refresh: bool
    ) -> AccessToken:
        """A token for ``protocol`` from the stored state, refreshing it.

        Called only by the worker holding the mailbox's refresh lease.
        """

    def app_token(
        self, account: MailAccount, protocol: Protocol, *, force_refresh: bool
    ) -> AccessToken:
        """The app's own token for an app mailbox: nothing stored, no lease."""


_PROVIDERS: dict[str, SignInProvider] = {
    MICROSOFT: microsoft,
}


def register(name: str, provider: SignInProvider) -> None:
    """Sign in with ``provider`` when a link or a mailbox names ``name``."""
    _PROVIDERS[name] = provider


def unregister(name: str) -> None:
    _PROVIDERS.pop(name, None)


def is_registered(name: str) -> bool:
    return name in _PROVIDERS


def get(name: str) -> SignInProvider:
    """The provider registered as ``name``; ConfigurationError if none is."""
    try:
        return _PROVIDERS[name]
    except KeyError:
        raise ConfigurationError(
            f"A mailbox signs in with the provider {name!r}, but no provider "
            f"is registered under that name (registered: "
            f"{', '.join(sorted(_PROVIDERS))}). Add the app that provides it "
            "to INSTALLED_APPS."
        ) from None


def for_account(account: MailAccount) -> SignInProvider:
    """The provider ``account`` signs in with.

    Every stored mailbox is Microsoft's until issue #26 adds the
    ``MailAccount.provider`` column, which will be read here instead.
    """
    return get(getattr(account, "provider", MICROSOFT))
