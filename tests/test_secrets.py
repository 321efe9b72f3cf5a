"""No token in any column, log line, repr, exception or admin page."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from django_live_oauth_mail.exceptions import ReconnectRequired
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .standins import IdentityPlatform

# These tests are about transport, tokens and retries: they send as the owner.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("acting_user"),
]


def secrets_of(account: MailAccount) -> list[str]:
    """Every token held in the account's (decrypted) cache."""
    cache = json.loads(MailAccount.objects.get(pk=account.pk).read_token_cache())
    found = [
        entry["secret"]
        for section in ("AccessToken", "RefreshToken", "IdToken")
        for entry in cache.get(section, {}).values()
    ]
    assert len(found) >= 3
    return found


def every_stored_value() -> str:
    chunks = []
    with connection.cursor() as cursor:
        for table in connection.introspection.table_names(cursor):
            cursor.execute(f"SELECT * FROM {connection.ops.quote_name(table)}")
            chunks.extend(repr(row) for row in cursor.fetchall())
    return "\n".join(chunks)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG)
    for name in ("msal", "urllib3", "mail.log", "django_live_oauth_mail", "requests"):
        logging.getLogger(name).setLevel(logging.DEBUG)
    return caplog


def test_no_token_appears_anywhere(
    link: Any,
    user: Any,
    admin_user: Any,
    debug_logs: pytest.LogCaptureFixture,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    account = link(user, "alice@outlook.com")
    identity_platform.expire_access_tokens("alice@outlook.com")  # forces 535 + refresh
    from django.core.mail import send_mail

    assert send_mail("s", "b", "alice@outlook.com", ["r@example.org"]) == 1
    token = get_access_token(account, force_refresh=True)
    secrets = [*secrets_of(account), token.value.reveal()]

    admin = Client()
    admin.force_login(admin_user)
    pages = [
        admin.get("/admin/live_oauth_mail/mailaccount/").content.decode(),
        admin.get(
            f"/admin/live_oauth_mail/mailaccount/{account.pk}/change/"
        ).content.decode(),
    ]
    account.refresh_from_db()
    places = {
        "logs": debug_logs.text + "\n".join(r.getMessage() for r in debug_logs.records),
        "database": every_stored_value(),
        "repr": repr(account) + str(account) + repr(token) + repr(vars(account)),
        "admin": "\n".join(pages),
    }
    assert "alice@outlook.com" in places["admin"]
    assert smtp_server.messages  # the refresh and the send really happened
    for place, text in places.items():
        for secret in secrets:
            assert secret not in text, f"a token leaked into {place}"


def test_no_token_in_a_reconnect_error(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    secrets = secrets_of(alice_account)
    identity_platform.revoke("alice@outlook.com")
    with pytest.raises(ReconnectRequired) as caught:
        get_access_token(alice_account, force_refresh=True)
    text = str(caught.value) + repr(caught.value) + repr(vars(caught.value))
    assert all(secret not in text for secret in secrets)


def test_token_cache_is_encrypted_at_rest(alice_account: MailAccount) -> None:
    stored = alice_account.encrypted_token_cache
    assert stored.startswith("gAAAAA")  # a Fernet token
    assert "RefreshToken" not in stored
    assert "RefreshToken" in alice_account.read_token_cache()


def test_no_token_in_djangos_error_report(
    alice_account: MailAccount,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    """The debug page and error mails show frame locals: ours hide them."""
    secrets = secrets_of(alice_account)
    identity_platform.expire_access_tokens("alice@outlook.com")
    identity_platform.revoke("alice@outlook.com")
    pages = _error_report_of_a_send()
    assert "ReconnectRequired" in pages
    assert "sensitive_variables" in pages or "********" in pages
    for secret in secrets:
        assert secret not in pages


def _error_report_of_a_send() -> str:
    """What Django would show for a failed send_mail (this frame holds no secret)."""
    import sys

    from django.core.mail import send_mail
    from django.test import RequestFactory
    from django.views.debug import ExceptionReporter

    try:
        send_mail("s", "b", "alice@outlook.com", ["r@example.org"])
    except ReconnectRequired:
        report = ExceptionReporter(RequestFactory().get("/"), *sys.exc_info())
        return report.get_traceback_html() + report.get_traceback_text()
    raise AssertionError("the revoked grant was not reported")
