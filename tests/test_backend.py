"""Sending through the backend: which mailbox, how many sessions, what arrives."""

from __future__ import annotations

import datetime
import smtplib
from typing import Any

import django
import pytest
from django.core import mail
from django.core.mail import EmailMessage, send_mail
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_live_oauth_mail.exceptions import (
    AccountNotFound,
    ConfigurationError,
    ReconnectRequired,
    SendAsDenied,
    SMTPAuthDisabled,
    SubmissionQuotaExceeded,
)
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .mailers import make_backend
from .standins import IdentityPlatform

# Who may send as whom is specified in test_routing.py; here the sends run as
# the owner of the linked mailboxes, as a view behind the middleware would.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acting_user")]


def message(
    sender: str, to: str = "rcpt@example.org", subject: str = "Hi"
) -> EmailMessage:
    return EmailMessage(subject, f"Body from {sender}", sender, [to])


def test_send_mail_goes_out_as_the_linked_mailbox(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    sent = send_mail(
        "Hello", "Plain body", "Alice <alice@outlook.com>", ["x@example.org"]
    )

    assert sent == 1
    [received] = smtp_server.messages
    assert received.authenticated_as == "alice@outlook.com"
    assert received.mechanism == "XOAUTH2"
    assert received.mail_from == "alice@outlook.com"
    assert received.rcpt_tos == ["x@example.org"]
    assert received.subject == "Hello"
    assert "Plain body" in received.text


def test_sender_match_ignores_case_and_display_name(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    assert message('"Alice A." <ALICE@Outlook.COM>').send() == 1
    assert smtp_server.messages[0].authenticated_as == "alice@outlook.com"


def test_batch_with_mixed_senders_opens_one_session_per_mailbox(
    alice_account: MailAccount, bob_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    batch = [
        message("alice@outlook.com", subject="a1"),
        message("bob@contoso.com", subject="b1"),
        message("alice@outlook.com", subject="a2"),
        message("bob@contoso.com", subject="b2"),
        message("alice@outlook.com", subject="a3"),
    ]

    assert make_backend().send_messages(batch) == 5

    assert smtp_server.sessions == 2
    by_mailbox: dict[str, list[str]] = {}
    for received in smtp_server.messages:
        by_mailbox.setdefault(received.authenticated_as or "", []).append(
            received.subject
        )
    assert by_mailbox == {
        "alice@outlook.com": ["a1", "a2", "a3"],
        "bob@contoso.com": ["b1", "b2"],
    }
    assert len({m.session_id for m in smtp_server.messages}) == 2


def test_queries_per_batch_do_not_grow_with_its_size(
    alice_account: MailAccount, bob_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    def queries_for(n: int) -> int:
        batch = [
            message("alice@outlook.com" if i % 2 else "bob@contoso.com")
            for i in range(n)
        ]
        with CaptureQueriesContext(connection) as queries:
            assert make_backend().send_messages(batch) == n
        return len(queries)

    # Find the mailboxes and mark them used; the second batch only finds them:
    # last_used_at is written once a minute at most.
    assert (queries_for(2), queries_for(20)) == (2, 1)


def test_last_used_at_is_set_once_per_batch(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    assert alice_account.last_used_at is None
    before = timezone.now()
    with CaptureQueriesContext(connection) as queries:
        make_backend().send_messages([message("alice@outlook.com") for _ in range(3)])
    alice_account.refresh_from_db()
    assert alice_account.last_used_at is not None
    assert alice_account.last_used_at >= before
    updates = [q["sql"] for q in queries if q["sql"].startswith("UPDATE")]
    assert len(updates) == 1, updates  # one UPDATE for the batch, not per message
    assert len(smtp_server.messages) == 3


@pytest.mark.parametrize(("seconds_ago", "written"), [(59, False), (61, True)])
def test_last_used_at_is_written_again_once_a_minute_old(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    seconds_ago: int,
    written: bool,
) -> None:
    before = timezone.now() - datetime.timedelta(seconds=seconds_ago)
    MailAccount.objects.filter(pk=alice_account.pk).update(last_used_at=before)

    assert make_backend().send_messages([message("alice@outlook.com")]) == 1

    alice_account.refresh_from_db()
    assert (alice_account.last_used_at != before) is written


def test_account_option_overrides_the_sender(
    alice_account: MailAccount, bob_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    backend = make_backend(account="bob@contoso.com")
    assert backend.send_messages([message("bob@contoso.com")]) == 1
    assert smtp_server.messages[0].authenticated_as == "bob@contoso.com"


def test_account_given_by_pk(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    backend = make_backend(account=alice_account.pk)
    assert backend.send_messages([message("alice@outlook.com")]) == 1
    assert smtp_server.messages[0].authenticated_as == "alice@outlook.com"


def test_default_account_sends_for_default_from_email(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["DEFAULT_ACCOUNT"] = "Alice@Outlook.com"
    # DEFAULT_FROM_EMAIL (webmaster@example.com) is not Alice's address, so
    # Exchange refuses the From, and we say which permission is missing.
    with pytest.raises(SendAsDenied) as caught:
        EmailMessage("s", "b", None, ["r@example.org"]).send()
    text = str(caught.value)
    assert "alice@outlook.com" in text and "webmaster@example.com" in text
    assert "Add-RecipientPermission -Identity webmaster@example.com" in text
    assert smtp_server.auth_attempts[-1].user == "alice@outlook.com"
    assert smtp_server.messages == []


def test_unknown_sender_raises_naming_the_address(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    batch = [message("alice@outlook.com"), message("nobody@example.com")]
    with pytest.raises(AccountNotFound, match=r"nobody@example\.com"):
        make_backend().send_messages(batch)
    # Routing fails before anything is sent, so nothing goes out half-done.
    assert smtp_server.sessions == 0


def test_unknown_sender_with_fail_silently_sends_the_rest(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    batch = [message("alice@outlook.com"), message("nobody@example.com")]
    assert make_backend(fail_silently=True).send_messages(batch) == 1
    assert [m.authenticated_as for m in smtp_server.messages] == ["alice@outlook.com"]


def test_mailbox_needing_reconnect_is_not_used(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(
        status=MailAccount.Status.RECONNECT_REQUIRED
    )
    with pytest.raises(AccountNotFound):
        message("alice@outlook.com").send()
    assert smtp_server.sessions == 0


def test_smtp_auth_disabled_explains_the_admin_fix(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    smtp_server.smtp_auth_disabled.add("alice@outlook.com")
    with pytest.raises(SMTPAuthDisabled) as caught:
        message("alice@outlook.com").send()
    text = str(caught.value)
    assert "5.7.139" in text and "SmtpClientAuthenticationDisabled" in text
    assert isinstance(caught.value, smtplib.SMTPAuthenticationError)
    alice_account.refresh_from_db()
    assert alice_account.status == MailAccount.Status.ACTIVE  # not a token problem


def test_smtp_auth_disabled_with_fail_silently_returns_zero(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    smtp_server.smtp_auth_disabled.add("alice@outlook.com")
    assert (
        make_backend(fail_silently=True).send_messages([message("alice@outlook.com")])
        == 0
    )
    assert smtp_server.messages == []


def test_rejected_token_is_refreshed_once_and_the_send_retried(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    identity_platform.expire_access_tokens("alice@outlook.com")

    assert message("alice@outlook.com").send() == 1

    refreshes = [
        r for r in identity_platform.token_requests if r.grant_type == "refresh_token"
    ]
    assert len(refreshes) == 1
    assert [a.success for a in smtp_server.auth_attempts] == [False, True]
    assert smtp_server.sessions == 1  # the retry reuses the connection
    assert smtp_server.messages[0].authenticated_as == "alice@outlook.com"


def test_revoked_grant_marks_the_account_and_raises(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    identity_platform.expire_access_tokens("alice@outlook.com")
    identity_platform.revoke("alice@outlook.com")

    with pytest.raises(ReconnectRequired, match=r"alice@outlook\.com"):
        message("alice@outlook.com").send()

    alice_account.refresh_from_db()
    assert alice_account.status == MailAccount.Status.RECONNECT_REQUIRED
    assert "Link the mailbox again" in alice_account.last_error
    assert smtp_server.messages == []


def test_revoked_grant_with_fail_silently_returns_zero_but_still_records(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    identity_platform.expire_access_tokens("alice@outlook.com")
    identity_platform.revoke("alice@outlook.com")

    assert (
        make_backend(fail_silently=True).send_messages([message("alice@outlook.com")])
        == 0
    )

    alice_account.refresh_from_db()
    assert alice_account.status == MailAccount.Status.RECONNECT_REQUIRED


def test_explicitly_opened_backend_reuses_its_session(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    backend = make_backend(account="alice@outlook.com")
    assert backend.open() is True
    assert backend.open() is False
    backend.send_messages([message("alice@outlook.com")])
    backend.send_messages([message("alice@outlook.com")])
    backend.close()
    assert smtp_server.sessions == 1
    assert len(smtp_server.messages) == 2


def test_context_manager_without_fixed_mailbox_keeps_sessions_until_exit(
    alice_account: MailAccount,
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    settings: Any,
) -> None:
    settings.DEFAULT_FROM_EMAIL = "alice@outlook.com"
    with make_backend() as backend:
        # open() signed in as the mailbox that sends DEFAULT_FROM_EMAIL.
        assert [a.user for a in smtp_server.auth_attempts] == ["alice@outlook.com"]
        backend.send_messages([message("alice@outlook.com")])
        backend.send_messages([message("alice@outlook.com")])
        backend.send_messages([message("bob@contoso.com")])
    assert backend.connection is None
    assert smtp_server.sessions == 2
    assert [m.authenticated_as for m in smtp_server.messages] == [
        "alice@outlook.com",
        "alice@outlook.com",
        "bob@contoso.com",
    ]


def test_open_without_a_mailbox_for_default_from_email_says_so(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    with pytest.raises(AccountNotFound, match=r"open\(\) signs in as .*DEFAULT_FROM"):
        make_backend().open()
    assert make_backend(fail_silently=True).open() is None
    assert smtp_server.sessions == 0


def test_open_checks_the_connection_and_the_sign_in(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, settings: Any
) -> None:
    settings.DEFAULT_FROM_EMAIL = "Alice <alice@outlook.com>"
    backend = make_backend()
    assert backend.open() is True
    assert [(a.user, a.success) for a in smtp_server.auth_attempts] == [
        ("alice@outlook.com", True)
    ]
    smtp_server.fail_next(stage="connect", disconnect=True)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        make_backend().open()
    backend.close()
    assert smtp_server.messages == []


def test_attachments_and_html_arrive_intact(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    email = mail.EmailMultiAlternatives(
        "Report", "text", "alice@outlook.com", ["r@example.org"]
    )
    email.attach_alternative("<p>html</p>", "text/html")
    email.attach("report.csv", b"a,b\n1,2\n", "text/csv")
    assert email.send() == 1
    assert smtp_server.messages[0].attachments == [("report.csv", b"a,b\n1,2\n")]


def test_empty_batch_opens_nothing(smtp_server: XOAuth2SMTPServer) -> None:
    assert make_backend().send_messages([]) == 0
    assert smtp_server.sessions == 0


def test_password_is_refused_at_configuration_time() -> None:
    with pytest.raises(ConfigurationError, match="OAuth"):
        make_backend(password="hunter2")


def test_plaintext_smtp_is_refused() -> None:
    with pytest.raises(ConfigurationError, match="unencrypted"):
        make_backend(use_tls=False)


def test_daily_quota_is_explained(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    smtp_server.submission_quota_exceeded.add("alice@outlook.com")
    with pytest.raises(SubmissionQuotaExceeded) as caught:
        message("alice@outlook.com").send()
    assert "daily sending limit" in str(caught.value)
    assert "alice@outlook.com" in str(caught.value)
    assert isinstance(caught.value, smtplib.SMTPDataError)


def test_recipients_the_server_refused_are_reported_not_dropped(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from django_live_oauth_mail import signals

    reported: list[tuple[str, dict[str, Any]]] = []

    def on_refused(sender: Any, account: MailAccount, message: Any, **kw: Any) -> None:
        reported.append((account.email, kw["refused"]))

    signals.recipients_refused.connect(on_refused)
    smtp_server.fail_next(stage="rcpt", reply="550 5.1.1 User unknown")
    try:
        email = EmailMessage("Hi", "b", "alice@outlook.com", ["gone@x.org", "ok@x.org"])
        assert email.send() == 1
    finally:
        signals.recipients_refused.disconnect(on_refused)

    [received] = smtp_server.messages
    assert received.rcpt_tos == ["ok@x.org"]
    assert reported == [
        ("alice@outlook.com", {"gone@x.org": (550, "5.1.1 User unknown")})
    ]
    assert "gone@x.org: 550 5.1.1 User unknown" in caplog.text


def test_a_message_refused_for_every_recipient_is_a_failure(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    smtp_server.fail_next(2, stage="rcpt", reply="550 5.1.1 User unknown")
    email = EmailMessage("Hi", "b", "alice@outlook.com", ["a@x.org", "b@x.org"])
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        email.send()
    assert smtp_server.messages == []


@pytest.mark.parametrize(
    ("sender", "to"),
    [("jörg@example.com", "r@x.org"), ("alice@outlook.com", "jörg@x.org")],
)
def test_a_non_ascii_address_gets_djangos_clear_answer_never_a_unicode_error(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
    sender: str,
    to: str,
) -> None:
    # A non-ASCII local part cannot go into SMTP commands without SMTPUTF8.
    live_settings["DEFAULT_ACCOUNT"] = "alice@outlook.com"
    live_settings["ROUTING"] = "any"
    smtp_server.enforce_send_as = False
    email = EmailMessage("s", "b", sender, [to])
    try:
        if django.VERSION < (6, 0):
            # Django 5.2 encodes it (RFC 2047) and the server takes it.
            assert make_backend(account="alice@outlook.com").send_messages([email]) == 1
        else:
            with pytest.raises(ValueError, match="non-ASCII"):
                make_backend(account="alice@outlook.com").send_messages([email])
            assert smtp_server.messages == []
    finally:
        smtp_server.enforce_send_as = True


def test_a_full_sending_mailbox_is_explained(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    from django_live_oauth_mail.exceptions import MailboxFull

    smtp_server.fail_next(stage="data", reply="554 5.2.2 mailbox full")
    with pytest.raises(MailboxFull, match=r"storage quota.*Sent Items"):
        message("alice@outlook.com").send()
    assert smtp_server.messages == []
