"""Secrets stay secret and stored data stays whole.

tests/test_secrets.py checks one successful scenario (logs, columns, admin,
repr). This file covers the failure paths: every kind of token error, the
callback's error pages, tokens that were issued but never stored; key rotation
on real rows; and what deleting, unlinking and a failed save leave behind.
"""

from __future__ import annotations

import base64
import json
import logging
import traceback
from io import StringIO
from typing import Any
from urllib.parse import urlsplit

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.contrib.sessions.models import Session
from django.core.mail import send_mail
from django.core.management import call_command
from django.db import DatabaseError, connection
from django.db.models import QuerySet
from django.test import Client

from django_live_oauth_mail import crypto, signals
from django_live_oauth_mail.exceptions import (
    AppCredentialsError,
    IdentityPlatformUnavailable,
    ReconnectRequired,
    TokenError,
)
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import FakeIdentity, XOAuth2SMTPServer

from .helpers import refreshes, stored_refresh_token
from .standins import IdentityPlatform

# These tests are about transport, tokens and retries: they send as the owner.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("acting_user"),
]

ALICE = "alice@outlook.com"
OLD_KEY, NEW_KEY = Fernet.generate_key().decode(), Fernet.generate_key().decode()
LOGGERS = ("msal", "urllib3", "requests", "mail.log", "django_live_oauth_mail")


# -- helpers ---------------------------------------------------------------------------


def cache_of(account: MailAccount) -> dict[str, Any]:
    stored = MailAccount.objects.get(pk=account.pk)
    return dict(json.loads(stored.read_token_cache()))


def tokens_in(account: MailAccount) -> list[str]:
    """The access, refresh and ID tokens in the account's stored cache."""
    cache = cache_of(account)
    found = [
        str(entry["secret"])
        for section in ("AccessToken", "RefreshToken", "IdToken")
        for entry in cache.get(section, {}).values()
    ]
    assert len(found) == 3
    return found


def forms_of(token: str, mailbox: str = ALICE) -> list[str]:
    """The token, a tail of it (a truncated copy), and its SASL XOAUTH2 form."""
    sasl = f"user={mailbox}\x01auth=Bearer {token}\x01\x01".encode()
    return [token, token[-40:], base64.b64encode(sasl).decode()]


def assert_absent(secrets: list[str], **places: str) -> None:
    assert secrets
    for place, text in places.items():
        for secret in secrets:
            for form in forms_of(secret):
                assert form not in text, f"a token leaked into {place}"


def every_stored_value() -> str:
    """Every row of every table, plus the decoded sessions."""
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(repr(row) for row in cursor.fetchall())
    chunks.extend(repr(s.get_decoded()) for s in Session.objects.all())
    return "\n".join(chunks)


def exception_text(error: BaseException) -> str:
    return "\n".join(
        [
            str(error),
            repr(error),
            repr(vars(error)),
            "".join(traceback.format_exception(error)),
            repr(error.__context__),
        ]
    )


def log_text(caplog: pytest.LogCaptureFixture) -> str:
    return "\n".join(
        [caplog.text, *(f"{r.getMessage()} {r.exc_text or ''}" for r in caplog.records)]
    )


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


@pytest.fixture
def issued(
    identity_platform: IdentityPlatform, monkeypatch: pytest.MonkeyPatch
) -> list[str]:
    """Every access, refresh and ID token the platform hands out in this test."""
    tokens: list[str] = []
    original = identity_platform._issue

    def recording(*args: Any, **kwargs: Any) -> dict[str, Any]:
        payload = original(*args, **kwargs)
        kinds = ("access_token", "refresh_token", "id_token")
        tokens.extend(payload[kind] for kind in kinds if kind in payload)
        return payload

    monkeypatch.setattr(identity_platform, "_issue", recording)
    return tokens


def signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


# -- secrets on failure paths --------------------------------------------------------

HTML_503 = "<html><head><title>503</title></head><body>Unavailable</body></html>"


@pytest.mark.parametrize(
    ("fault", "expected"),
    [
        pytest.param(
            {"status": 401, "error": "invalid_client", "error_code": 7000215},
            AppCredentialsError,
            id="7000215-invalid_client",
        ),
        pytest.param(
            {"status": 400, "error": "interaction_required", "error_code": 50076},
            ReconnectRequired,
            id="50076-mfa",
        ),
        pytest.param(
            {"status": 400, "error": "invalid_grant", "error_code": 65001},
            ReconnectRequired,
            id="65001-consent",
        ),
        pytest.param(
            {"status": 400, "error": "invalid_grant", "error_code": 700082},
            ReconnectRequired,
            id="700082-expired",
        ),
        pytest.param(
            {"status": 400, "error": "invalid_scope", "error_code": 70011},
            TokenError,
            id="70011-other",
        ),
        pytest.param(
            {"status": 503, "body": HTML_503, "count": 5},
            IdentityPlatformUnavailable,
            id="503-html",
        ),
        pytest.param(
            {"status": 429, "headers": {"Retry-After": "1"}, "count": 5},
            IdentityPlatformUnavailable,
            id="429-throttled",
        ),
    ],
)
def test_a_failing_refresh_leaks_no_token(
    alice_account: MailAccount,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
    debug_logs: pytest.LogCaptureFixture,
    issued: list[str],
    fault: dict[str, Any],
    expected: type[TokenError],
) -> None:
    secrets = tokens_in(alice_account)
    # Exchange now refuses the cached token (535), so the backend forces a
    # refresh, which the platform answers with the fault.
    identity_platform.expire_access_tokens(ALICE)
    identity_platform.fail_next_token_requests(fault.pop("count", 1), **fault)

    with pytest.raises(expected) as caught:
        send_mail("s", "b", ALICE, ["rcpt@example.org"])

    assert type(caught.value) is expected
    assert refreshes(identity_platform) >= 1
    assert smtp_server.auth_attempts  # the old token really went over SMTP
    assert_absent(
        [*secrets, *issued],
        exception=exception_text(caught.value),
        logs=log_text(debug_logs),
        database=every_stored_value(),
    )


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(
            {"status": 400, "error": "invalid_grant", "error_code": 70000}, id="70000"
        ),
        pytest.param(
            {"status": 401, "error": "invalid_client", "error_code": 7000215},
            id="7000215",
        ),
        pytest.param({"status": 503, "body": HTML_503}, id="503-html"),
    ],
)
def test_the_callback_error_page_after_a_failed_exchange_shows_no_secret(
    link: Any,
    user: Any,
    identity_platform: IdentityPlatform,
    debug_logs: pytest.LogCaptureFixture,
    issued: list[str],
    fault: dict[str, Any],
) -> None:
    secrets = tokens_in(link(user, ALICE))  # the user already has a mailbox
    client = signed_in(user)
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "bob@contoso.com")
    identity_platform.fail_next_token_requests(
        3 if fault["status"] >= 500 else 1, **fault
    )

    page = client.get(urlsplit(answer.url).path, dict(answer.params))

    assert page.status_code in {400, 503}
    body = page.content.decode()
    assert answer.params["code"] not in body
    assert_absent(
        [*secrets, *issued],
        page=body,
        logs=log_text(debug_logs),
        database=every_stored_value(),
    )
    assert not MailAccount.objects.filter(email="bob@contoso.com").exists()


def test_tokens_issued_for_a_mailbox_that_cannot_be_linked_are_dropped(
    user: Any,
    identity_platform: IdentityPlatform,
    debug_logs: pytest.LogCaptureFixture,
    issued: list[str],
) -> None:
    # The exchange succeeds, but the ID token names no mailbox: the tokens
    # Microsoft just issued must vanish with the failed attempt.
    identity_platform.add_identity(
        FakeIdentity(
            "nomailbox@fabrikam.com", preferred_username="nomailbox", email_claim=False
        )
    )
    client = signed_in(user)
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "nomailbox@fabrikam.com")

    page = client.get(urlsplit(answer.url).path, dict(answer.params))

    assert page.status_code == 400
    assert b"did not say which mailbox" in page.content
    assert len(issued) == 3  # access, refresh and ID token were really issued
    assert_absent(
        issued,
        page=page.content.decode(),
        logs=log_text(debug_logs),
        database=every_stored_value(),
    )
    assert MailAccount.objects.count() == 0


# -- key rotation on real rows ---------------------------------------------------------


def rotate_keys() -> str:
    out = StringIO()
    call_command("live_oauth_mail", "rotate-keys", stdout=out)
    return out.getvalue()


def decrypts_with(key: str, account: MailAccount) -> bool:
    stored = MailAccount.objects.get(pk=account.pk).encrypted_token_cache
    try:
        Fernet(key.encode()).decrypt(stored.encode())
    except InvalidToken:
        return False
    return True


def test_key_rotation_needs_no_downtime(
    link: Any,
    user: Any,
    live_settings: dict[str, Any],
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    live_settings["ENCRYPTION_KEYS"] = [OLD_KEY]
    alice, bob = link(user, ALICE), link(user, "bob@contoso.com")
    assert decrypts_with(OLD_KEY, alice) and decrypts_with(OLD_KEY, bob)

    # 1. Deploy the new key first: rows written with the old one still work.
    live_settings["ENCRYPTION_KEYS"] = [NEW_KEY, OLD_KEY]
    assert send_mail("s", "b", ALICE, ["r@example.org"]) == 1
    assert send_mail("s", "b", "bob@contoso.com", ["r@example.org"]) == 1

    # 2. A refresh writes with the newest key.
    get_access_token(MailAccount.objects.get(pk=alice.pk), force_refresh=True)
    assert decrypts_with(NEW_KEY, alice) and not decrypts_with(OLD_KEY, alice)
    assert decrypts_with(OLD_KEY, bob) and not decrypts_with(NEW_KEY, bob)

    # 3. rotate-keys re-encrypts what is left, and only that.
    assert "Re-encrypted 1 token cache(s)" in rotate_keys()
    assert "Re-encrypted 0 token cache(s)" in rotate_keys()
    assert decrypts_with(NEW_KEY, bob) and not decrypts_with(OLD_KEY, bob)

    # 4. Drop the old key: every row still reads, refreshes and sends.
    live_settings["ENCRYPTION_KEYS"] = [NEW_KEY]
    for account in MailAccount.objects.all():
        assert "RefreshToken" in account.read_token_cache()
        token = get_access_token(account, force_refresh=True)
        assert identity_platform.validate_access_token(token.value) == account.email
    assert send_mail("s", "b", "bob@contoso.com", ["r@example.org"]) == 1
    assert len(smtp_server.messages) == 3


def test_rotate_keys_does_not_undo_a_concurrent_refresh(
    link: Any,
    user: Any,
    live_settings: dict[str, Any],
    identity_platform: IdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    live_settings["ENCRYPTION_KEYS"] = [OLD_KEY]
    alice = link(user, ALICE)
    live_settings["ENCRYPTION_KEYS"] = [NEW_KEY, OLD_KEY]
    rotate = crypto.rotate

    def rotate_while_a_worker_refreshes(ciphertext: str) -> str:
        # Between the command reading the row and writing it back, a worker
        # redeems the refresh token and commits the rotated one.
        get_access_token(MailAccount.objects.get(pk=alice.pk), force_refresh=True)
        return rotate(ciphertext)

    monkeypatch.setattr(crypto, "rotate", rotate_while_a_worker_refreshes)
    rotate_keys()
    monkeypatch.undo()

    stored = MailAccount.objects.get(pk=alice.pk)
    assert decrypts_with(NEW_KEY, stored)
    token = get_access_token(stored, force_refresh=True)  # the newest RT survived
    assert identity_platform.validate_access_token(token.value) == ALICE


def test_a_copy_read_before_rotate_keys_still_refreshes_when_forced(
    link: Any,
    user: Any,
    live_settings: dict[str, Any],
    identity_platform: IdentityPlatform,
) -> None:
    live_settings["ENCRYPTION_KEYS"] = [OLD_KEY]
    alice = link(user, ALICE)
    in_memory = MailAccount.objects.get(pk=alice.pk)  # e.g. held by a backend
    live_settings["ENCRYPTION_KEYS"] = [NEW_KEY, OLD_KEY]
    rotate_keys()
    # Exchange rejects the cached token; re-encrypting the row changed its
    # ciphertext but not the tokens in it, so the refresh must still happen.
    identity_platform.expire_access_tokens(ALICE)
    identity_platform.reset()

    token = get_access_token(in_memory, force_refresh=True)

    assert token.refreshed
    assert refreshes(identity_platform) == 1
    assert identity_platform.validate_access_token(token.value) == ALICE


# -- what unlinking, deleting and a failed save leave behind ------------------------


def test_disconnecting_leaves_no_token_or_ciphertext_behind(
    alice_account: MailAccount, user: Any
) -> None:
    secrets = tokens_in(alice_account)
    ciphertext = MailAccount.objects.get(pk=alice_account.pk).encrypted_token_cache

    response = signed_in(user).post(f"/mail/{alice_account.pk}/disconnect/")

    assert response.status_code == 302
    assert not MailAccount.objects.filter(pk=alice_account.pk).exists()
    stored = every_stored_value()
    assert ciphertext not in stored
    assert_absent(secrets, database=stored)


def test_deleting_a_user_deletes_their_mailboxes_only(
    link: Any, user: Any, other_user: Any
) -> None:
    mine = [link(user, ALICE), link(user, "bob@contoso.com")]
    theirs = link(other_user, "dave@fabrikam.com")
    secrets = [token for account in mine for token in tokens_in(account)]

    user.delete()

    assert list(MailAccount.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert_absent(secrets, database=every_stored_value())
    assert "RefreshToken" in MailAccount.objects.get(pk=theirs.pk).read_token_cache()


def test_a_failed_save_after_a_refresh_keeps_the_old_cache_intact(
    link: Any,
    user: Any,
    identity_platform: IdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity_platform.access_token_lifetime = 120  # expiring: the send refreshes
    account = link(user, ALICE)
    identity_platform.access_token_lifetime = 3600
    before = MailAccount.objects.get(pk=account.pk)
    old_refresh_token = stored_refresh_token(before)
    refreshed: list[MailAccount] = []

    def on_refresh(sender: Any, account: MailAccount, **kwargs: Any) -> None:
        refreshed.append(account)

    original_update = QuerySet.update

    def failing_update(self: QuerySet[Any], **fields: Any) -> int:
        if "encrypted_token_cache" in fields:  # storing the refreshed cache
            raise DatabaseError("disk full")
        return original_update(self, **fields)

    identity_platform.reset()
    signals.token_refreshed.connect(on_refresh)
    monkeypatch.setattr(QuerySet, "update", failing_update)
    try:
        with pytest.raises(DatabaseError):
            get_access_token(account)
    finally:
        monkeypatch.undo()
        signals.token_refreshed.disconnect(on_refresh)

    # The platform did redeem (and so rotate) the refresh token ...
    assert [r.status for r in identity_platform.token_requests] == [200]
    # ... but nothing of the new cache was stored: the row is exactly as before.
    after = MailAccount.objects.get(pk=account.pk)
    assert after.encrypted_token_cache == before.encrypted_token_cache
    assert stored_refresh_token(after) == old_refresh_token
    assert (after.status, after.last_error) == (before.status, before.last_error)
    assert after.last_refreshed_at == before.last_refreshed_at
    assert account.encrypted_token_cache == before.encrypted_token_cache
    assert refreshed == []

    # The consequence, documented in docs/reliability.md: with strict rotation
    # (as this fake does), the stored refresh token is spent and the mailbox must
    # be linked again. It is marked so, and says why; it never half-works.
    with pytest.raises(ReconnectRequired, match="Link the mailbox again"):
        get_access_token(after)
    after.refresh_from_db()
    assert after.status == MailAccount.Status.RECONNECT_REQUIRED
