"""Token state no caller's transaction can lose, and refreshes that block no one.

These tests are transactional: the caller's transaction here is a real one,
not the test case's wrapper, so a rollback really rolls back.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.core.mail import send_mail
from django.db import DatabaseError, connection, connections, transaction

from django_live_oauth_mail import durable, sending_as, signals
from django_live_oauth_mail.exceptions import ReconnectRequired
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from ..helpers import refreshes, stored_refresh_token
from ..standins import IdentityPlatform
from .test_concurrency import newest_refresh_token, require_vendor

pytestmark = pytest.mark.django_db(transaction=True)

ALICE = "alice@outlook.com"


class Rollback(Exception):
    """An unrelated error later in the caller's transaction."""


@pytest.fixture
def expiring(link: Any, user: Any, identity_platform: IdentityPlatform) -> Any:
    identity_platform.access_token_lifetime = 120  # the next send refreshes
    account = link(user, ALICE)
    identity_platform.access_token_lifetime = 3600
    identity_platform.reset()
    return account


def send_then_fail(user: Any) -> None:
    """A view under ATOMIC_REQUESTS: sends, then fails, so everything rolls back."""
    with pytest.raises(Rollback), transaction.atomic(), sending_as(user):
        send_mail("s", "b", ALICE, ["r@example.org"], fail_silently=True)
        raise Rollback


@pytest.mark.postgres
def test_a_rotated_refresh_token_survives_the_callers_rollback(
    expiring: MailAccount,
    user: Any,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    require_vendor("postgresql")
    linked_cache = expiring.encrypted_token_cache

    send_then_fail(user)

    assert refreshes(identity_platform) == 1
    stored = MailAccount.objects.get(pk=expiring.pk)
    assert stored.encrypted_token_cache != linked_cache
    assert stored.last_refreshed_at is not None
    assert stored.refreshing_until is None
    # The fake rotates strictly: only the stored (newest) refresh token works.
    token = get_access_token(stored, force_refresh=True)
    assert identity_platform.token_requests[-1].status == 200
    assert identity_platform.validate_access_token(token.value) == ALICE


@pytest.mark.postgres
def test_reconnect_required_survives_the_callers_rollback_and_is_signalled_at_once(
    expiring: MailAccount,
    user: Any,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    require_vendor("postgresql")
    identity_platform.revoke(ALICE)
    signalled: list[tuple[str, bool]] = []

    def on_reconnect(sender: Any, account: MailAccount, **kwargs: Any) -> None:
        signalled.append((account.email, connection.in_atomic_block))

    signals.reconnect_required.connect(on_reconnect)
    try:
        send_then_fail(user)
    finally:
        signals.reconnect_required.disconnect(on_reconnect)

    stored = MailAccount.objects.get(pk=expiring.pk)
    assert stored.status == MailAccount.Status.RECONNECT_REQUIRED
    assert "Link the mailbox again" in stored.last_error
    # Sent while the caller's transaction was still open: the state was durable.
    assert signalled == [(ALICE, True)]
    assert smtp_server.messages == []


def row_lock_taken_elsewhere(account: MailAccount) -> bool:
    """Could another connection lock the mailbox's row right now (NOWAIT)?"""
    table, pk = MailAccount._meta.db_table, MailAccount._meta.pk.column
    with (
        durable.second_connection("default") as other,
        connections[other].cursor() as cursor,
    ):
        try:
            cursor.execute(
                f'SELECT 1 FROM "{table}" WHERE "{pk}" = %s FOR UPDATE NOWAIT',
                [account.pk],
            )
        except DatabaseError:
            return False
    return True


@pytest.mark.postgres
def test_a_send_holds_no_lock_so_a_forced_refresh_after_it_survives_the_rollback(
    user: Any,
    link: Any,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    require_vendor("postgresql")
    account = link(user, ALICE)
    linked = stored_refresh_token(account)
    lock_waits: list[bool] = []
    is_lock_timeout = durable.is_lock_timeout

    def counted(error: Any) -> bool:
        lock_waits.append(is_lock_timeout(error))
        return lock_waits[-1]

    monkeypatch.setattr(durable, "is_lock_timeout", counted)

    with pytest.raises(Rollback), transaction.atomic(), sending_as(user):
        assert send_mail("s", "b", ALICE, ["r@example.org"]) == 1
        # No row lock of ours in the caller's transaction...
        assert row_lock_taken_elsewhere(account)
        # ...so the refresh takes its lease at once, on its own connection.
        get_access_token(account, force_refresh=True)
        raise Rollback

    assert True not in lock_waits  # never waited out a lock, never fell back
    assert refreshes(identity_platform) == 1
    stored = MailAccount.objects.get(pk=account.pk)
    rotated = stored_refresh_token(stored)
    assert rotated != linked
    assert rotated == newest_refresh_token(identity_platform, ALICE)
    assert stored.last_used_at is not None  # the mail went out: that stays too
    assert len(smtp_server.messages) == 1


def test_a_refresh_inside_the_callers_transaction_leaves_its_writes_working(
    expiring: MailAccount,
    user: Any,
    django_user_model: Any,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    with transaction.atomic(), sending_as(user):
        django_user_model.objects.create_user("before")
        assert send_mail("s", "b", ALICE, ["r@example.org"]) == 1
        django_user_model.objects.create_user("after")
        MailAccount.objects.filter(pk=expiring.pk).update(display_name="Renamed")

    assert refreshes(identity_platform) == 1
    assert (
        django_user_model.objects.filter(username__in=["before", "after"]).count() == 2
    )
    stored = MailAccount.objects.get(pk=expiring.pk)
    assert stored.display_name == "Renamed"
    assert stored.last_refreshed_at is not None
    assert stored.refreshing_until is None
    assert len(smtp_server.messages) == 1


def test_a_refresh_after_the_caller_wrote_the_row_does_not_deadlock(
    expiring: MailAccount,
    user: Any,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    # The caller's transaction holds the row lock; a second connection would
    # wait for it forever. The refresh then follows the caller's transaction.
    with transaction.atomic(), sending_as(user):
        MailAccount.objects.filter(pk=expiring.pk).update(display_name="Locked")
        assert send_mail("s", "b", ALICE, ["r@example.org"]) == 1

    assert refreshes(identity_platform) == 1
    stored = MailAccount.objects.get(pk=expiring.pk)
    assert (stored.display_name, stored.refreshing_until) == ("Locked", None)
    assert get_access_token(stored).refreshed is False


def test_a_mailbox_linked_in_the_callers_open_transaction_refreshes(
    link: Any,
    user: Any,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    identity_platform.access_token_lifetime = 120
    with transaction.atomic():
        account = link(user, ALICE)  # not committed yet: invisible elsewhere
        with sending_as(user):
            assert send_mail("s", "b", ALICE, ["r@example.org"]) == 1
    assert refreshes(identity_platform) == 1
    assert MailAccount.objects.get(pk=account.pk).last_refreshed_at is not None


def test_waiting_workers_use_the_token_the_lease_holder_stored(
    expiring: MailAccount, identity_platform: IdentityPlatform
) -> None:
    # Another worker holds the lease; we wait, then use what it stored.
    holder = MailAccount.objects.get(pk=expiring.pk)
    MailAccount.objects.filter(pk=expiring.pk).update(
        refreshing_until=holder.created_at.replace(year=2999)
    )
    stale = MailAccount.objects.get(pk=expiring.pk)
    results: list[Any] = []
    waiter = threading.Thread(target=lambda: results.append(_token_in_thread(stale)))
    waiter.start()
    time.sleep(0.3)
    assert results == [] and refreshes(identity_platform) == 0  # it waits

    MailAccount.objects.filter(pk=expiring.pk).update(refreshing_until=None)
    fresh = get_access_token(holder)  # the holder's refresh, now allowed
    waiter.join(10)

    assert refreshes(identity_platform) == 1
    assert results and results[0] == fresh.value


def _token_in_thread(account: MailAccount) -> str:
    from django.db import connections

    try:
        return get_access_token(account).value
    finally:
        connections.close_all()


def test_a_lease_left_by_a_crashed_worker_expires(
    expiring: MailAccount,
    identity_platform: IdentityPlatform,
    live_settings: dict[str, Any],
) -> None:
    from django.utils import timezone

    MailAccount.objects.filter(pk=expiring.pk).update(
        refreshing_until=timezone.now() - timezone.timedelta(seconds=1)
    )
    assert get_access_token(expiring).refreshed is True
    assert refreshes(identity_platform) == 1


def test_revoked_grant_clears_the_lease(
    expiring: MailAccount, identity_platform: IdentityPlatform
) -> None:
    identity_platform.revoke(ALICE)
    with pytest.raises(ReconnectRequired):
        get_access_token(expiring)
    stored = MailAccount.objects.get(pk=expiring.pk)
    assert (stored.status, stored.refreshing_until) == (
        MailAccount.Status.RECONNECT_REQUIRED,
        None,
    )


def test_a_slow_token_call_holds_no_database_lock(
    expiring: MailAccount,
    django_user_model: Any,
    identity_platform: IdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    in_token_call = threading.Event()
    answer = identity_platform.dispatch

    def slow_dispatch(request: Any) -> Any:
        if request.method == "POST" and request.path.endswith("/oauth2/v2.0/token"):
            in_token_call.set()
            time.sleep(2.5)
        return answer(request)

    monkeypatch.setattr(identity_platform, "dispatch", slow_dispatch)
    refresher = threading.Thread(target=lambda: _token_in_thread(expiring))
    refresher.start()
    assert in_token_call.wait(10)

    # An unrelated write while the refresh waits on the identity platform:
    # with a lock held across HTTP it would wait (or fail "database is locked").
    started = time.monotonic()
    django_user_model.objects.create_user("meanwhile")
    waited = time.monotonic() - started
    refresher.join(15)

    assert waited < 1.0
    assert refreshes(identity_platform) == 1
    stored = MailAccount.objects.get(pk=expiring.pk)
    assert (stored.last_refreshed_at is not None, stored.refreshing_until) == (
        True,
        None,
    )
