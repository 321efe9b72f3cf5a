"""Get a valid access token for a mailbox: read, lock, refresh, persist.

The common case (a fresh token in the stored cache) costs no query and no HTTP
request. Otherwise the refresh happens inside a transaction holding the
account's row lock, after re-reading the cache: Microsoft rotates refresh
tokens, so two workers refreshing from the same stale copy would each store a
different one and one of them would be lost.
"""

from __future__ import annotations

import logging
from typing import Any

from django.db import connections, router, transaction
from django.db.models import F
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import msal_client, signals
from .exceptions import AccountNotFound, ReconnectRequired, TokenError
from .models import MailAccount
from .msal_client import AccessToken

logger = logging.getLogger(__name__)


@sensitive_variables()
def get_access_token(
    account: MailAccount, *, force_refresh: bool = False
) -> AccessToken:
    """An access token for ``account`` with at least five minutes left.

    ``force_refresh`` redeems the refresh token even when the cached access
    token looks fresh (Exchange rejected it). Raises ``ReconnectRequired``
    when the grant is gone, having marked the account; other ``TokenError``
    subclasses leave its status alone.
    """
    if not account.is_active:
        raise ReconnectRequired(
            f"{account.email} needs to be linked again before it can send mail "
            f"({account.last_error or 'its sign-in expired'}).",
            mailbox=account.email,
            error="reconnect_required",
        )
    if not force_refresh:
        token = msal_client.cached_access_token(
            account.read_token_cache(), account.home_account_id
        )
        if token is not None:
            return token
    return _refresh_locked(account, force_refresh=force_refresh)


class AccountCredentials:
    """Hands an SMTP connection a token for one account, on demand.

    Our connection classes accept it in place of a password (see
    :mod:`.xoauth2`); it never holds a token itself.
    """

    def __init__(self, account: MailAccount) -> None:
        self.account = account
        self.mailbox = account.email

    @sensitive_variables()
    def token(self, *, force_refresh: bool = False) -> str:
        return get_access_token(self.account, force_refresh=force_refresh).value

    def __repr__(self) -> str:
        return f"<AccountCredentials for {self.mailbox}>"


def _lock(account: MailAccount, using: str) -> MailAccount:
    if connections[using].vendor == "sqlite":
        # SQLite ignores SELECT ... FOR UPDATE; a write takes its database
        # lock, which serialises the refresh just the same.
        MailAccount.objects.using(using).filter(pk=account.pk).update(
            updated_at=F("updated_at")
        )
    try:
        return MailAccount.objects.using(using).select_for_update().get(pk=account.pk)
    except MailAccount.DoesNotExist:
        raise AccountNotFound(
            f"{account.email} was unlinked while mail was being sent from it. Link "
            "it again to send from it.",
            mailbox=account.email,
        ) from None


@sensitive_variables()
def _refresh_locked(account: MailAccount, *, force_refresh: bool) -> AccessToken:
    using = router.db_for_write(MailAccount, instance=account)
    failure: TokenError | None = None
    with transaction.atomic(using=using):
        locked = _lock(account, using)
        serialized = locked.read_token_cache()
        # Compare the caches, not only their ciphertexts: rotate-keys
        # re-encrypts a row without changing the tokens in it.
        stale_copy = (
            locked.encrypted_token_cache != account.encrypted_token_cache
            and serialized != account.read_token_cache()
        )
        _copy_state(locked, account)
        if not locked.is_active:
            failure = ReconnectRequired(
                f"{account.email} needs to be linked again before it can send mail.",
                mailbox=account.email,
                error="reconnect_required",
            )
        elif stale_copy or not force_refresh:
            # Another worker refreshed while we waited for the lock.
            token = msal_client.cached_access_token(serialized, locked.home_account_id)
            if token is not None:
                return token
        if failure is None:
            try:
                token = msal_client.acquire_token(
                    serialized,
                    locked.home_account_id,
                    mailbox=locked.email,
                    force_refresh=force_refresh,
                    public_client=locked.public_client,
                )
            except TokenError as error:
                failure = error
                _record_failure(locked, error)
            else:
                _record_success(locked, token)
                _copy_state(locked, account)
                return token
        _copy_state(locked, account)
    # Raised outside the atomic block so the recorded status is committed.
    raise failure


def _record_success(account: MailAccount, token: AccessToken) -> None:
    fields = ["token_expires_at", "last_error", "updated_at"]
    account.token_expires_at = token.expires_at
    account.last_error = ""
    if token.serialized_cache is not None:
        account.write_token_cache(token.serialized_cache)
        fields.append("encrypted_token_cache")
    if token.refreshed:
        account.last_refreshed_at = timezone.now()
        fields.append("last_refreshed_at")
        transaction.on_commit(
            lambda: signals.token_refreshed.send(sender=MailAccount, account=account),
            using=account._state.db,
        )
    account.save(update_fields=fields)
    if token.refreshed:
        logger.info("Refreshed the access token for %s.", account.email)


def _record_failure(account: MailAccount, error: TokenError) -> None:
    account.last_error = str(error)
    fields = ["last_error", "updated_at"]
    if isinstance(error, ReconnectRequired):
        account.status = MailAccount.Status.RECONNECT_REQUIRED
        fields.append("status")
        transaction.on_commit(
            lambda: signals.reconnect_required.send(
                sender=MailAccount, account=account, error=error
            ),
            using=account._state.db,
        )
        logger.warning("%s", error)
    else:
        logger.error("%s", error)
    account.save(update_fields=fields)


_SHARED_STATE = (
    "status",
    "encrypted_token_cache",
    "token_expires_at",
    "last_refreshed_at",
    "last_error",
    "updated_at",
)


def _copy_state(source: MailAccount, target: Any) -> None:
    for name in _SHARED_STATE:
        setattr(target, name, getattr(source, name))
