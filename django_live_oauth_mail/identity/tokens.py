"""Get a valid access token for a mailbox: read, claim, refresh, persist.

The common case (a fresh token in the stored cache) costs no query and no HTTP
request. Otherwise exactly one worker redeems the refresh token: Microsoft
rotates refresh tokens, and where the old one stops working a second
redemption would fail (or two workers would each store a different one and
one would be lost). That worker claims the refresh with a short lease on the
row (``refreshing_until``), committed at once; it then calls the identity
platform holding no database lock, and stores the result. Other workers wait
for the lease to end and use the token it stored.

Everything written here (cache, status, ``last_error``, health fields, the
lease) is committed independently of the caller's transaction, see
:mod:`.durable`; the signals fire once it is durable. The tokens themselves
come from the mailbox's sign-in provider (:mod:`.providers`), which knows
nothing of the lease and stores nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import time
from typing import Any

from django.db import DatabaseError, router, transaction
from django.db.models import Q
from django.db.utils import OperationalError
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import crypto, durable, signals
from ..conf import Protocol, conf
from ..exceptions import AccountNotFound, ReconnectRequired, TokenError
from ..models import MailAccount
from ..secret import Secret
from . import providers
from .issued import AccessToken

logger = logging.getLogger(__name__)

#: How often a waiting worker looks whether the refresh it waits for is done.
POLL_SECONDS = (0.02, 0.05, 0.1, 0.2)


@sensitive_variables()
def get_access_token(
    account: MailAccount, *, force_refresh: bool = False, protocol: Protocol = "smtp"
) -> AccessToken:
    """An access token for ``account`` with at least five minutes left.

    It is for ``protocol``'s resource only (Exchange's SMTP or Graph): both
    are kept in the one msal cache, and neither is ever sent to the other.
    ``force_refresh`` redeems the refresh token even when the cached access
    token looks fresh (the server rejected it), unless another worker stored
    a new one meanwhile. Raises ``ReconnectRequired`` when the grant is gone,
    having marked the account; other ``TokenError`` subclasses (such as
    ``ConsentRequired`` for Graph) leave its status alone.
    """
    if not account.is_active:
        raise needs_linking(account)
    provider = providers.for_account(account)
    if account.is_app:  # the app's own token: nothing stored, nothing to lock
        try:
            return provider.app_token(account, protocol, force_refresh=force_refresh)
        except TokenError as error:
            logger.error("%s", error)
            raise
    if not force_refresh:
        token = provider.cached_token(account, protocol)
        if token is not None:
            return token
    alias = router.db_for_write(MailAccount, instance=account)
    if durable.needs_second_connection(alias):
        with durable.second_connection(alias) as second:
            try:
                return _Refresh(account, second, force_refresh, protocol).run()
            except _StayWithTheCaller:
                pass
    return _Refresh(account, alias, force_refresh, protocol).run()


class AccountCredentials:
    """Hands an SMTP connection a token for one account, on demand.

    Our connection classes accept it in place of a password (see
    :mod:`.xoauth2`); it never holds a token itself.
    """

    def __init__(self, account: MailAccount) -> None:
        self.account = account
        self.mailbox = account.email
        self.app_id = conf.CLIENT_ID if account.is_app else None
        #: When the token last handed out expires: a session signed in with
        #: it is not lent out after that.
        self.expires_at: datetime.datetime | None = None

    @sensitive_variables()
    def token(self, *, force_refresh: bool = False) -> str:
        token = get_access_token(self.account, force_refresh=force_refresh)
        self.expires_at = token.expires_at
        return token.value.reveal()  # for xoauth2, which drops it before any raise

    def __repr__(self) -> str:
        return f"<AccountCredentials for {self.mailbox}>"


class _StayWithTheCaller(Exception):
    """The row is new or locked in the caller's transaction: write there."""


class _Refresh:
    """One worker's way to a fresh token: claim, or wait for whoever has."""

    def __init__(
        self, account: MailAccount, using: str, force: bool, protocol: Protocol
    ) -> None:
        self.account = account
        self.using = using
        self.force = force
        self.protocol = protocol
        self.provider = providers.for_account(account)
        self.rows = MailAccount.objects.using(using).filter(pk=account.pk)
        # Read before the caller's copy is updated as we learn; once, not per
        # poll while waiting.
        self.refused = self._refused() if force else None

    @sensitive_variables()
    def run(self) -> AccessToken:
        for attempt in range(10**6):
            claimed = self._claim()
            row = self.rows.first()
            if row is None:
                self._row_missing()
            assert row is not None
            _copy_state(row, self.account)
            if not row.is_active:
                if claimed:
                    self._release()
                raise needs_linking(row)
            token = self._stored_by_another(row)
            if token is not None:
                if claimed:
                    self._release()
                return token
            if claimed:
                return self._redeem(row)
            time.sleep(POLL_SECONDS[min(attempt, len(POLL_SECONDS) - 1)])
        raise AssertionError("unreachable")  # pragma: no cover

    def _claim(self) -> bool:
        """Take the refresh lease if nobody holds a live one; commit it now."""
        now = timezone.now()
        lease = datetime.timedelta(seconds=2 * conf.HTTP_TIMEOUT + 5)
        try:
            return bool(
                self.rows.filter(status=MailAccount.Status.ACTIVE)
                .filter(Q(refreshing_until__isnull=True) | Q(refreshing_until__lt=now))
                .update(refreshing_until=now + lease)
            )
        except OperationalError as error:
            if self.using_second_connection and durable.is_lock_timeout(error):
                raise _StayWithTheCaller from None
            raise

    @property
    def using_second_connection(self) -> bool:
        return self.using != router.db_for_write(MailAccount, instance=self.account)

    def _row_missing(self) -> None:
        if self.using_second_connection:
            caller = router.db_for_write(MailAccount, instance=self.account)
            if MailAccount.objects.using(caller).filter(pk=self.account.pk).exists():
                raise _StayWithTheCaller
        raise AccountNotFound(
            f"{self.account.email} was unlinked while mail was being sent from it. "
            "Link it again to send from it.",
            mailbox=self.account.email,
        )

    @sensitive_variables()
    def _stored_by_another(self, row: MailAccount) -> AccessToken | None:
        """A fresh token another worker stored since our copy was read.

        When forced, not the token the server just refused: the cache may
        have changed meanwhile for the other resource only.
        """
        token = self.provider.cached_token(row, self.protocol)
        if token is not None and self.force and token.value == self.refused:
            return None
        return token

    @sensitive_variables()
    def _refused(self) -> Secret[str] | None:
        """The token we started with, which a forced refresh replaces."""
        token = self.provider.cached_token(self.account, self.protocol)
        return token.value if token is not None else None

    @sensitive_variables()
    def _redeem(self, row: MailAccount) -> AccessToken:
        try:
            # Any fresh token but the refused one was taken above.
            token = self.provider.redeem(row, self.protocol, force_refresh=self.force)
        except TokenError as error:
            self._record_failure(row, error)
            raise
        except BaseException:
            self._release()
            raise
        try:
            self._record_success(row, token)
        except BaseException:
            # The rotated token is lost (docs/reliability.md); at least let the
            # next worker try at once instead of waiting out the lease.
            with contextlib.suppress(DatabaseError):
                self._release()
            raise
        return token

    def _release(self) -> None:
        self.rows.update(refreshing_until=None)

    @sensitive_variables()
    def _write(self, row: MailAccount, fields: dict[str, Any]) -> None:
        """Store ``fields``, and show them on ``row`` and the caller's copy."""
        self.rows.update(**fields)
        for name, value in fields.items():
            setattr(row, name, value)
        _copy_state(row, self.account)

    @sensitive_variables()
    def _record_success(self, row: MailAccount, token: AccessToken) -> None:
        now = timezone.now()
        fields: dict[str, Any] = {
            "last_error": "",
            "refreshing_until": None,
            "updated_at": now,
        }
        if self.protocol == "smtp":  # what signed-in SMTP sessions depend on
            fields["token_expires_at"] = token.expires_at
        if token.serialized_cache is not None:
            fields["encrypted_token_cache"] = crypto.encrypt(token.serialized_cache)
        if token.refreshed:
            fields["last_refreshed_at"] = now
        self._write(row, fields)
        if token.refreshed:
            logger.info("Refreshed the access token for %s.", row.email)
            account = self.account
            transaction.on_commit(
                lambda: signals.token_refreshed.send(
                    sender=MailAccount, account=account
                ),
                using=self.using,
            )

    def _record_failure(self, row: MailAccount, error: TokenError) -> None:
        fields: dict[str, Any] = {
            "last_error": str(error),
            "refreshing_until": None,
            "updated_at": timezone.now(),
        }
        if isinstance(error, ReconnectRequired):
            fields["status"] = MailAccount.Status.RECONNECT_REQUIRED
        self._write(row, fields)
        if isinstance(error, ReconnectRequired):
            logger.warning("%s", error)
            account = self.account
            transaction.on_commit(
                lambda: signals.reconnect_required.send(
                    sender=MailAccount, account=account, error=error
                ),
                using=self.using,
            )
        else:
            logger.error("%s", error)


def needs_linking(account: MailAccount) -> ReconnectRequired:
    return ReconnectRequired(
        f"{account.email} needs to be linked again before it can send mail "
        f"({account.last_error or 'its sign-in expired'}).",
        mailbox=account.email,
        error="reconnect_required",
    )


_SHARED_STATE = (
    "status",
    "encrypted_token_cache",
    "token_expires_at",
    "last_refreshed_at",
    "last_error",
    "refreshing_until",
    "updated_at",
)


def _copy_state(source: MailAccount, target: Any) -> None:
    for name in _SHARED_STATE:
        setattr(target, name, getattr(source, name))
