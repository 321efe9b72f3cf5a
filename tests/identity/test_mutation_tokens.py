"""Token behaviours that only mutation testing showed unasserted (tokens.py).

The lease a refresh takes, waiting for another worker's lease, releasing it
on every failure, the app token's error log, what ``AccountCredentials``
hands out, and the error reporter's view of the token path's frames.
"""

from __future__ import annotations

import datetime
import logging
import uuid
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.db.utils import OperationalError
from django.utils import timezone
from django.views.debug import ExceptionReporter

from django_live_oauth_mail import crypto, durable
from django_live_oauth_mail.exceptions import AppConsentRequired, ReconnectRequired
from django_live_oauth_mail.identity import delegated, tokens
from django_live_oauth_mail.identity.accounts import add_app_mailbox
from django_live_oauth_mail.identity.tokens import AccountCredentials, get_access_token
from django_live_oauth_mail.models import MailAccount

from ..helpers import refreshes
from ..standins import IdentityPlatform
from .test_concurrency import require_vendor

pytestmark = pytest.mark.django_db(transaction=True)

ALICE = "alice@outlook.com"


class Boom(Exception):
    """An error no layer of the token path expects."""


def boom(*args: Any, **kwargs: Any) -> Any:
    """Stands in for any call, failing with ``Boom``."""
    raise Boom


@pytest.fixture
def expiring(link: Any, user: Any, identity_platform: IdentityPlatform) -> Any:
    """Alice, linked with an access token msal already treats as expiring."""
    identity_platform.access_token_lifetime = 120
    account = link(user, ALICE)
    identity_platform.access_token_lifetime = 3600
    identity_platform.reset()
    return account


def lease_of(account: MailAccount) -> datetime.datetime | None:
    return MailAccount.objects.get(pk=account.pk).refreshing_until


def test_a_worker_waits_out_another_workers_lease_then_refreshes_once(
    expiring: MailAccount,
    identity_platform: IdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = timezone.now() + datetime.timedelta(hours=1)
    MailAccount.objects.filter(pk=expiring.pk).update(refreshing_until=held)
    polls: list[float] = []

    def poll(seconds: float) -> None:
        polls.append(seconds)
        if len(polls) == 20:  # the other worker gives up without a token
            MailAccount.objects.filter(pk=expiring.pk).update(refreshing_until=None)

    monkeypatch.setattr(tokens.time, "sleep", poll)

    token = get_access_token(expiring)

    assert len(polls) == 20
    assert refreshes(identity_platform) == 1
    assert identity_platform.validate_access_token(token.value) == ALICE
    assert lease_of(expiring) is None


def test_a_lease_taken_keeps_a_second_claim_out(expiring: MailAccount) -> None:
    first = tokens._Refresh(expiring, "default", False, "smtp")
    second = tokens._Refresh(expiring, "default", False, "smtp")

    assert first._claim() is True
    assert second._claim() is False
    lease = lease_of(expiring)
    assert lease is not None and lease > timezone.now()


def test_a_deactivated_row_keeps_the_lease_it_did_not_take(
    expiring: MailAccount,
) -> None:
    held = timezone.now() + datetime.timedelta(hours=1)
    MailAccount.objects.filter(pk=expiring.pk).update(
        status=MailAccount.Status.RECONNECT_REQUIRED, refreshing_until=held
    )

    with pytest.raises(ReconnectRequired):
        get_access_token(expiring)  # a stale copy that still looks active

    assert lease_of(expiring) == held


def test_an_unexpected_error_while_redeeming_releases_the_lease(
    expiring: MailAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: Any, **kwargs: Any) -> Any:
        assert lease_of(expiring) is not None  # taken before the request
        raise Boom

    monkeypatch.setattr(delegated, "acquire_token", fail)

    with pytest.raises(Boom):
        get_access_token(expiring)

    assert lease_of(expiring) is None


def test_an_error_storing_the_new_token_releases_the_lease(
    expiring: MailAccount,
    identity_platform: IdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(crypto, "encrypt", boom)

    with pytest.raises(Boom):
        get_access_token(expiring)

    assert refreshes(identity_platform) == 1
    assert lease_of(expiring) is None


def test_an_app_tokens_failure_is_logged(
    identity_platform: IdentityPlatform, caplog: pytest.LogCaptureFixture
) -> None:
    [account, _] = add_app_mailbox("noreply@contoso.com", str(uuid.uuid4()))

    with (
        caplog.at_level(logging.ERROR, logger=tokens.logger.name),
        pytest.raises(AppConsentRequired) as caught,
    ):
        get_access_token(account)

    logged = [r.getMessage() for r in caplog.records if r.name == tokens.logger.name]
    assert logged == [str(caught.value)]


def test_account_credentials_hand_out_the_cached_token_and_name_only_the_app(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    identity_platform.reset()
    personal = AccountCredentials(alice_account)
    [app, _] = add_app_mailbox("noreply@contoso.com", str(uuid.uuid4()))

    value = personal.token()

    assert identity_platform.token_requests == []  # not forced: the cached one
    assert identity_platform.validate_access_token(value) == ALICE
    assert personal.app_id is None
    assert AccountCredentials(app).app_id == tokens.conf.CLIENT_ID


def hidden_frames(error: BaseException) -> dict[str, bool]:
    """Each frame's function: were all its locals hidden (DEBUG=False)?"""
    reporter = ExceptionReporter(None, type(error), error, error.__traceback__)
    return {
        frame["function"]: all(
            value == "********************" for _, value in frame["vars"]
        )
        for frame in reporter.get_traceback_frames()
        if frame["vars"]
    }


def test_an_error_report_hides_the_token_paths_locals(
    expiring: MailAccount, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings.DEBUG = False

    monkeypatch.setattr(delegated, "acquire_token", boom)
    with pytest.raises(Boom) as direct:
        get_access_token(expiring)
    with pytest.raises(Boom) as lent:
        AccountCredentials(expiring).token(force_refresh=True)

    assert hidden_frames(direct.value)["get_access_token"] is True
    assert hidden_frames(lent.value)["token"] is True


@pytest.mark.postgres
def test_a_lock_timeout_on_the_callers_own_connection_is_raised_as_is(
    expiring: MailAccount,
) -> None:
    require_vendor("postgresql")
    table, pk = MailAccount._meta.db_table, MailAccount._meta.pk.column
    with durable.second_connection("default") as other, transaction.atomic(other):
        with connections[other].cursor() as cursor:
            cursor.execute(
                f'SELECT 1 FROM "{table}" WHERE "{pk}" = %s FOR UPDATE', [expiring.pk]
            )
        # Outside a transaction the refresh writes on the caller's connection,
        # where a site may set a lock_timeout of its own.
        with connection.cursor() as cursor:
            cursor.execute("SET lock_timeout = 100")
        try:
            with pytest.raises(OperationalError) as caught:
                get_access_token(expiring)
        finally:
            with connection.cursor() as cursor:
                cursor.execute("SET lock_timeout = 0")

    assert durable.is_lock_timeout(caught.value)
