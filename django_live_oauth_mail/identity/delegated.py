"""A linked mailbox's access token, from its stored msal cache.

Two ways in: :func:`cached_access_token` only reads the cache (no request, no
lock), so the usual send costs nothing; :func:`acquire_token` lets msal
refresh, which rotates the refresh token, so the caller stores the cache it
hands back. Locking (one refresh per mailbox) is the caller's, see
:mod:`.tokens`.
"""

from __future__ import annotations

import datetime
import time

import msal
from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from ..secret import Secret
from .applications import application
from .errors import TRANSPORT_ERRORS, token_error, unavailable
from .issued import AccessToken, Issued
from .throttling import refusals
from .token_cache import UnreadableCache, load_cache
from .wording import refusal

# msal refreshes an access token with less than this left (application.py,
# "if expires_in < 5*60"); the fast path below uses the same rule.
REFRESH_MARGIN_SECONDS = 5 * 60


@sensitive_variables()
def cached_access_token(
    serialized_cache: str, home_account_id: str, scopes: list[str]
) -> AccessToken | None:
    """A still-fresh access token read from the cache, or None.

    This makes no HTTP request and needs no lock: it only reads the stored
    cache, so the backend can skip the locked refresh path in the usual case.
    A token msal would refresh (under five minutes left, or past Microsoft's
    ``refresh_in`` hint) does not count as fresh. Nor does anything in a cache
    msal could not use: this function cannot name the mailbox, so it returns
    None and leaves it to :func:`acquire_token` to say what is wrong.
    """
    if not serialized_cache:
        return None
    try:
        cache = load_cache(serialized_cache)
    except UnreadableCache:
        return None
    now = time.time()
    query = {"home_account_id": home_account_id, "client_id": conf.CLIENT_ID}
    targets = [scopes]
    if scopes and all(s in conf.GRAPH_SCOPES for s in scopes):
        # Entra names Graph's scopes by their short names in its answer
        # ("Mail.Send"), and msal files the token under what it answered.
        targets.append([s.rpartition("/")[2] for s in scopes])
    kind = msal.TokenCache.CredentialType.ACCESS_TOKEN
    entries = [e for t in targets for e in cache.search(kind, target=t, query=query)]
    for entry in entries:
        expires_on = int(entry["expires_on"])
        if expires_on - now < REFRESH_MARGIN_SECONDS:
            continue
        if "refresh_on" in entry and int(entry["refresh_on"]) < now:
            continue
        return AccessToken(
            value=Secret(entry["secret"]),
            expires_at=datetime.datetime.fromtimestamp(
                expires_on, datetime.timezone.utc
            ),
            refreshed=False,
        )
    return None


@sensitive_variables()
def acquire_token(
    serialized_cache: Secret[str],
    home_account_id: str,
    *,
    scopes: list[str],
    mailbox: str,
    force_refresh: bool = False,
    public_client: bool = False,
) -> AccessToken:
    """An access token for ``scopes`` (one resource), refreshing if needed.

    msal answers from the cache while the token has more than five minutes
    left; otherwise (or with ``force_refresh``) it redeems the refresh token,
    which Microsoft rotates, so the caller must persist ``serialized_cache``.
    The refresh token serves every resource the user consented to, so this
    is also how a mailbox linked for SMTP gets its first Graph token.
    """
    try:
        cache = load_cache(serialized_cache.reveal())
    except UnreadableCache as problem:
        raise refusal("unreadable_cache", mailbox=mailbox, problem=problem) from None
    key = f"mailbox {home_account_id}" if home_account_id else None
    with refusals.lend(key) as http_cache:
        app = application(
            public=public_client, http_cache=http_cache, token_cache=cache
        )
        account = next(
            (a for a in app.get_accounts() if a["home_account_id"] == home_account_id),
            None,
        )
        if account is None:
            raise refusal("no_account", mailbox=mailbox)
        try:
            # Taken apart at once: msal's answer holds the new tokens.
            issued = Issued.of(
                app.acquire_token_silent_with_error(
                    scopes, account, force_refresh=force_refresh
                )
            )
        except TRANSPORT_ERRORS as error:
            raise unavailable(mailbox, error) from None
        if issued is None:
            raise refusal("no_refresh_token", mailbox=mailbox)
        if issued.error:
            raise token_error(issued.error, mailbox=mailbox, scopes=scopes)
    return issued.token(cache.serialize() if cache.has_state_changed else None)
