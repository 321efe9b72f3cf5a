"""Temporary SMTP failures are retried; permanent ones and accepted mail never are."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from django.core.mail import EmailMessage

from django_live_oauth_mail.exceptions import PartialDelivery, SendAsDenied
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.sending import engine, retry
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from ..mailers import make_backend

# These tests are about transport, tokens and retries: they send as the owner.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acting_user")]


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff pauses instead of sleeping through them."""
    slept: list[float] = []
    monkeypatch.setattr(engine.time, "sleep", slept.append)
    return slept


def batch(n: int, sender: str = "alice@outlook.com") -> list[EmailMessage]:
    return [
        EmailMessage(f"m{i}", "body", sender, ["r@example.org"])
        for i in range(1, n + 1)
    ]


def subjects(server: XOAuth2SMTPServer) -> list[str]:
    return [m.subject for m in server.messages]


@pytest.mark.parametrize(
    ("stage", "reply", "disconnect"),
    [
        (
            "data",
            "421 4.3.2 Service not available, closing transmission channel",
            False,
        ),
        (
            "data",
            "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
            False,
        ),
        ("data", "451 4.7.0 Temporary server error. Please try again later", False),
        ("mail", "451 4.4.0 Temporary failure", False),
        ("rcpt", "450 4.2.1 Recipient temporarily unavailable", False),
        ("mail", "", True),
        ("rcpt", "", True),
        ("connect", "421 4.3.2 Too many connections", False),
        ("auth", "454 4.7.0 Temporary authentication failure", False),
    ],
)
def test_temporary_failure_is_retried_and_nothing_is_lost_or_doubled(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    pauses: list[float],
    live_settings: dict[str, Any],
    stage: str,
    reply: str,
    disconnect: bool,
) -> None:
    live_settings["SMTP_RETRY_BACKOFF"] = 0.5
    smtp_server.fail_next(
        stage=stage, reply=reply or "421 4.3.2 x", disconnect=disconnect
    )

    assert make_backend().send_messages(batch(3)) == 3

    assert subjects(smtp_server) == ["m1", "m2", "m3"]
    assert pauses == [0.5]
    assert smtp_server.sessions == 2  # the retry used a new connection


def test_backoff_doubles_and_retries_are_bounded(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    pauses: list[float],
    live_settings: dict[str, Any],
) -> None:
    live_settings.update(SMTP_RETRIES=3, SMTP_RETRY_BACKOFF=1.0)
    smtp_server.fail_next(4, stage="data", reply="451 4.3.0 busy")

    with pytest.raises(smtplib.SMTPDataError) as caught:
        make_backend().send_messages(batch(1))

    assert caught.value.smtp_code == 451
    assert pauses == [1.0, 2.0, 4.0]
    assert smtp_server.messages == []


def test_permanent_failure_is_not_retried(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, pauses: list[float]
) -> None:
    smtp_server.fail_next(stage="data", reply="550 5.7.1 Message rejected")
    with pytest.raises(smtplib.SMTPDataError) as caught:
        make_backend().send_messages(batch(1))
    assert caught.value.smtp_code == 550
    assert pauses == []
    assert smtp_server.messages == []


def test_accepted_messages_are_not_resent_and_the_error_says_which_were_sent(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, pauses: list[float]
) -> None:
    messages = batch(4)
    messages[2].from_email = "someone.else@example.com"  # Exchange: SendAsDenied

    with pytest.raises(PartialDelivery) as caught:
        make_backend(account="alice@outlook.com").send_messages(messages)

    error = caught.value
    assert [m.subject for m in error.sent] == ["m1", "m2"]
    assert error.failed.subject == "m3"
    assert [m.subject for m in error.unsent] == ["m4"]
    assert "2 of 4 messages were sent (#1, #2) before #3 failed" in str(error)
    assert "5.2.252" in str(error.error)
    assert subjects(smtp_server) == ["m1", "m2"]
    assert pauses == []


def test_fail_silently_counts_exactly_what_was_accepted(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, pauses: list[float]
) -> None:
    smtp_server.fail_next(stage="data", reply="550 5.1.1 Recipient unknown")
    # The first message fails for good; the others still go out.
    assert make_backend(fail_silently=True).send_messages(batch(3)) == 2
    assert subjects(smtp_server) == ["m2", "m3"]


def test_mailbox_that_cannot_connect_is_skipped_silently_after_its_retries(
    alice_account: MailAccount,
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    pauses: list[float],
) -> None:
    smtp_server.smtp_auth_disabled.add("alice@outlook.com")
    mixed = [*batch(3), *batch(2, sender="bob@contoso.com")]
    assert make_backend(fail_silently=True).send_messages(mixed) == 2
    assert [m.authenticated_as for m in smtp_server.messages] == ["bob@contoso.com"] * 2
    # 5.7.139 is permanent: alice is tried once, not once per message.
    alice_attempts = [
        a for a in smtp_server.auth_attempts if a.user == "alice@outlook.com"
    ]
    assert len(alice_attempts) == 1
    assert pauses == []


def test_every_attempt_carries_the_same_message_id_and_the_message_is_left_as_is(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, pauses: list[float]
) -> None:
    seen: list[str] = []
    smtp_server.fail_next(stage="data", reply="451 4.3.0 busy")
    [message] = batch(1)
    original = message.message
    message.message = lambda *a, **kw: _remember_id(original(*a, **kw), seen)  # type: ignore[method-assign]

    assert make_backend().send_messages([message]) == 1

    assert len(seen) == 2 and seen[0] == seen[1]
    assert smtp_server.messages[0].message["Message-ID"] == seen[0]
    assert "Message-ID" not in message.extra_headers


def test_a_message_id_set_by_the_caller_is_kept(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    [message] = batch(1)
    message.extra_headers["Message-ID"] = "<mine@example.org>"
    assert make_backend().send_messages([message]) == 1
    assert smtp_server.messages[0].message["Message-ID"] == "<mine@example.org>"
    assert message.extra_headers["Message-ID"] == "<mine@example.org>"


def _remember_id(rendered: Any, seen: list[str]) -> Any:
    seen.append(rendered["Message-ID"])
    return rendered


def test_a_permanent_failure_does_not_leave_the_connection_open(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    [message] = batch(1)
    message.from_email = "someone.else@example.com"
    fixed = make_backend(account="alice@outlook.com")
    with pytest.raises(SendAsDenied):
        fixed.send_messages([message])
    assert fixed.connection is None

    by_sender = make_backend()
    smtp_server.fail_next(stage="rcpt", reply="550 5.7.1 Relay denied")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        by_sender.send_messages(batch(1))
    assert by_sender.connection is None


def test_fail_silently_goes_on_after_a_message_whose_retries_ran_out(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["SMTP_RETRIES"] = 0
    smtp_server.fail_next(stage="data", reply="451 4.3.0 busy")
    assert make_backend(fail_silently=True).send_messages(batch(2)) == 1
    assert subjects(smtp_server) == ["m2"]


def test_a_finished_batch_leaves_no_mailbox_behind_for_the_next_open(
    alice_account: MailAccount,
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    settings: Any,
) -> None:
    settings.DEFAULT_FROM_EMAIL = "bob@contoso.com"
    backend = make_backend()
    assert backend.send_messages(batch(1)) == 1
    with backend:
        # open() signs in as DEFAULT_FROM_EMAIL's mailbox, not the last batch's.
        assert backend.connection is not None
    assert [a.user for a in smtp_server.auth_attempts] == [
        "alice@outlook.com",
        "bob@contoso.com",
    ]
    assert smtp_server.sessions == 2


@pytest.mark.parametrize("fail_silently", [False, True])
def test_a_mailbox_whose_tokens_cannot_be_decrypted_mid_batch_is_a_partial_delivery(
    alice_account: MailAccount,
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    fail_silently: bool,
) -> None:
    from cryptography.fernet import Fernet

    from django_live_oauth_mail.exceptions import TokenCacheUnreadable

    lost_key = Fernet(Fernet.generate_key())  # as after losing an old key
    MailAccount.objects.filter(pk=bob_account.pk).update(
        encrypted_token_cache=lost_key.encrypt(b"{}").decode()
    )
    mixed = [*batch(2), *batch(1, sender="bob@contoso.com"), *batch(1)]
    backend = make_backend(fail_silently=fail_silently)

    if fail_silently:
        assert backend.send_messages(mixed) == 3
    else:
        with pytest.raises(PartialDelivery) as caught:
            backend.send_messages(mixed)
        assert isinstance(caught.value.error, TokenCacheUnreadable)
        assert "bob@contoso.com cannot be decrypted" in str(caught.value)
        assert [m.subject for m in caught.value.sent] == ["m1", "m2", "m1"]
    assert [m.authenticated_as for m in smtp_server.messages] == [
        "alice@outlook.com"
    ] * 3


TOO_MANY = "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded"


@pytest.mark.parametrize("stage", ["connect", "mail"])
def test_too_many_connections_is_waited_out_and_sent_once(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    pauses: list[float],
    live_settings: dict[str, Any],
    stage: Any,
) -> None:
    live_settings["SMTP_RETRY_BACKOFF"] = 2
    smtp_server.fail_next(stage=stage, reply=TOO_MANY)
    assert make_backend().send_messages(batch(2)) == 2
    assert subjects(smtp_server) == ["m1", "m2"]
    assert pauses == [2]


def test_throttling_longer_than_max_inline_wait_raises_throttled(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    pauses: list[float],
    live_settings: dict[str, Any],
) -> None:
    from django_live_oauth_mail.exceptions import Throttled

    live_settings["SMTP_RETRY_BACKOFF"] = 4
    live_settings["MAX_INLINE_WAIT"] = 5
    smtp_server.fail_next(2, stage="connect", reply=TOO_MANY)

    with pytest.raises(Throttled) as caught:
        make_backend().send_messages(batch(1))
    # 4 s, then 8 s would pass the 5 s cap: one wait, then the error.
    assert pauses == [4]
    assert "allows 3 at a time" in str(caught.value)
    assert caught.value.mailbox == "alice@outlook.com"
    assert smtp_server.messages == []

    smtp_server.fail_next(stage="connect", reply=TOO_MANY)
    live_settings["MAX_INLINE_WAIT"] = 0
    assert make_backend(fail_silently=True).send_messages(batch(1)) == 0


def test_too_many_recipients_is_not_retried(
    alice_account: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    """452 4.5.3 is about the message (its recipients), not the server's load."""
    smtp_server.fail_next(stage="rcpt", reply="452 4.5.3 Too many recipients")
    with pytest.raises(smtplib.SMTPRecipientsRefused):
        EmailMessage("s", "b", "alice@outlook.com", ["r@example.org"]).send()
    assert smtp_server.messages == []
    assert retry.is_transient(
        smtplib.SMTPRecipientsRefused(
            {"r@x": (452, b"4.3.1 Insufficient system storage")}
        )
    )
    assert not retry.is_transient(
        smtplib.SMTPRecipientsRefused({"r@x": (452, b"4.5.3 Too many recipients")})
    )
