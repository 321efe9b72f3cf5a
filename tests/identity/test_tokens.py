"""Access tokens: served from the cache, refreshed once, rotated, persisted."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from django_live_oauth_mail import signals
from django_live_oauth_mail.exceptions import (
    AppCredentialsError,
    IdentityPlatformUnavailable,
    ReconnectRequired,
)
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount

from ..helpers import refreshes
from ..standins import IdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)


def test_fresh_token_costs_no_request_and_no_query(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    identity_platform.reset()
    with CaptureQueriesContext(connection) as queries:
        token = get_access_token(alice_account)
    assert identity_platform.requests == []
    assert len(queries) == 0
    assert identity_platform.validate_access_token(token.value) == "alice@outlook.com"
    assert token.refreshed is False


def test_expiring_token_is_refreshed_once(
    link: Any, user: Any, identity_platform: IdentityPlatform
) -> None:
    identity_platform.access_token_lifetime = 120  # under msal's five-minute margin
    account = link(user, "alice@outlook.com")
    identity_platform.access_token_lifetime = 3600
    identity_platform.reset()

    first = get_access_token(account)
    second = get_access_token(account)

    assert refreshes(identity_platform) == 1
    assert first.refreshed is True and second.refreshed is False
    assert first.value == second.value
    assert identity_platform.validate_access_token(first.value) == "alice@outlook.com"


def test_refresh_persists_the_rotated_refresh_token(
    link: Any, user: Any, identity_platform: IdentityPlatform
) -> None:
    identity_platform.access_token_lifetime = 120
    account = link(user, "alice@outlook.com")
    stored_before = account.encrypted_token_cache

    get_access_token(account)

    stored = MailAccount.objects.get(pk=account.pk)
    assert stored.encrypted_token_cache != stored_before
    assert stored.last_refreshed_at is not None
    # The old refresh token was rotated away: a copy of the old cache is useless,
    # and the stored one still works.
    stale = MailAccount.objects.get(pk=account.pk)
    stale.encrypted_token_cache = stored_before
    stale.save()
    with pytest.raises(ReconnectRequired):
        get_access_token(stale, force_refresh=True)


def test_token_refreshed_signal_is_sent_after_commit(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    seen: list[MailAccount] = []

    def receiver(sender: Any, account: MailAccount, **kwargs: Any) -> None:
        seen.append(account)

    signals.token_refreshed.connect(receiver)
    try:
        get_access_token(alice_account, force_refresh=True)
    finally:
        signals.token_refreshed.disconnect(receiver)
    assert [a.pk for a in seen] == [alice_account.pk]


def test_worker_with_a_stale_copy_uses_the_token_another_worker_refreshed(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    stale_copy = MailAccount.objects.get(pk=alice_account.pk)
    get_access_token(alice_account, force_refresh=True)
    identity_platform.reset()

    # Exchange rejected the stale copy's token; the refresh path re-reads the
    # row under its lock, finds the newer token, and does not refresh again.
    token = get_access_token(stale_copy, force_refresh=True)

    assert refreshes(identity_platform) == 0
    assert identity_platform.validate_access_token(token.value) == "alice@outlook.com"


def test_revoked_grant_sets_reconnect_required_and_sends_the_signal(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    received: list[tuple[MailAccount, Exception]] = []

    def receiver(
        sender: Any, account: MailAccount, error: Exception, **kwargs: Any
    ) -> None:
        received.append((account, error))

    identity_platform.revoke("alice@outlook.com", error_code=700082)
    signals.reconnect_required.connect(receiver)
    try:
        with pytest.raises(ReconnectRequired) as caught:
            get_access_token(alice_account, force_refresh=True)
    finally:
        signals.reconnect_required.disconnect(receiver)

    assert "alice@outlook.com" in str(caught.value)
    assert caught.value.error_codes == [700082]
    stored = MailAccount.objects.get(pk=alice_account.pk)
    assert stored.status == MailAccount.Status.RECONNECT_REQUIRED
    assert [(a.pk, e) for a, e in received] == [(alice_account.pk, caught.value)]
    # Once marked, no more requests are made for it.
    identity_platform.reset()
    with pytest.raises(ReconnectRequired):
        get_access_token(stored)
    assert identity_platform.token_requests == []


def test_platform_outage_leaves_the_account_active(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    identity_platform.fail_next_token_requests(3, status=503, body="<html>down</html>")
    with pytest.raises(IdentityPlatformUnavailable, match="try again"):
        get_access_token(alice_account, force_refresh=True)
    stored = MailAccount.objects.get(pk=alice_account.pk)
    assert stored.status == MailAccount.Status.ACTIVE
    assert "temporary" in stored.last_error


def test_bad_client_secret_is_an_app_problem_not_the_users(
    alice_account: MailAccount, live_settings: dict[str, Any]
) -> None:
    live_settings["CLIENT_SECRET"] = "wrong"
    with pytest.raises(AppCredentialsError, match="CLIENT_SECRET"):
        get_access_token(alice_account, force_refresh=True)
    assert (
        MailAccount.objects.get(pk=alice_account.pk).status == MailAccount.Status.ACTIVE
    )


def test_after_warm_up_a_refresh_makes_no_discovery_request(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    get_access_token(alice_account, force_refresh=True)
    identity_platform.reset()
    get_access_token(alice_account, force_refresh=True)
    assert [method for method, _ in identity_platform.requests] == ["POST"]
