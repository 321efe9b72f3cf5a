"""Microsoft's identity platform as a :class:`.providers.SignInProvider`.

A thin adapter: :mod:`.linking`, :mod:`.delegated` and :mod:`.app_only` do
the work through msal; this module only picks the scopes for a protocol
(Exchange's SMTP or Graph) and reads what they need off the mailbox.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.views.decorators.debug import sensitive_variables

from ..conf import Protocol, conf
from ..models import MailAccount
from ..secret import Secret
from . import app_only, delegated, linking
from .issued import AccessToken
from .linking import LinkedIdentity


def start_link(redirect_uri: str, *, login_hint: str | None) -> dict[str, Any]:
    """An auth-code flow with PKCE, state and nonce: see :func:`.linking.start_link`."""
    return linking.start_link(redirect_uri, login_hint=login_hint)


def finish_link(flow: dict[str, Any], params: Mapping[str, str]) -> LinkedIdentity:
    """Redeem the code: see :func:`.linking.finish_link`."""
    return linking.finish_link(flow, params)


def cached_token(account: MailAccount, protocol: Protocol) -> AccessToken | None:
    """A fresh token from the mailbox's msal cache, with no request."""
    return delegated.cached_access_token(
        account.read_token_cache(),
        account.home_account_id,
        conf.scopes_for(protocol),
    )


@sensitive_variables()
def redeem(
    account: MailAccount, protocol: Protocol, *, force_refresh: bool
) -> AccessToken:
    """Let msal refresh from the mailbox's cache, which rotates the refresh token."""
    return delegated.acquire_token(
        Secret(account.read_token_cache()),
        account.home_account_id,
        scopes=conf.scopes_for(protocol),
        mailbox=account.email,
        force_refresh=force_refresh,
        public_client=account.public_client,
    )


def app_token(
    account: MailAccount, protocol: Protocol, *, force_refresh: bool
) -> AccessToken:
    """Client credentials in the mailbox's tenant, for ``protocol``'s resource."""
    scope, role = conf.app_scope_for(protocol)
    return app_only.acquire_app_token(
        account.tenant_id,
        scope,
        role,
        mailbox=account.email,
        force_refresh=force_refresh,
    )
