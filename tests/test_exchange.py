"""Exchange's replies, read by the one module that reads them (no sockets here).

The same replies arrive over real sockets in test_backend.py,
test_auth_frames.py and test_error_messages.py.
"""

from __future__ import annotations

import smtplib

import pytest

from django_live_oauth_mail import exchange
from django_live_oauth_mail.exceptions import (
    MailboxFull,
    SendAsDenied,
    SMTPAuthDisabled,
    SubmissionQuotaExceeded,
    TokenRejected,
)

pytestmark = pytest.mark.offline

MAILBOX = "ann@contoso.com"

AUTH_REPLIES = [
    # (code, reply, refreshed, expected type, words the text must hold)
    (
        535,
        b"5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
        b"disabled for the Tenant.",
        False,
        SMTPAuthDisabled,
        "Set-CASMailbox",
    ),
    (535, b"5.7.139 disabled", True, SMTPAuthDisabled, "not a token problem"),
    (535, b"5.7.3 Authentication unsuccessful", True, TokenRejected, "SMTP.Send"),
]


@pytest.mark.parametrize(("code", "reply", "refreshed", "kind", "words"), AUTH_REPLIES)
def test_refused_auth_is_explained(
    code: int, reply: bytes, refreshed: bool, kind: type[Exception], words: str
) -> None:
    explained = exchange.explain_auth(
        smtplib.SMTPAuthenticationError(code, reply), MAILBOX, refreshed=refreshed
    )
    assert type(explained) is kind
    assert isinstance(explained, smtplib.SMTPAuthenticationError)
    assert (explained.smtp_code, explained.smtp_error) == (code, reply)
    assert MAILBOX in str(explained) and words in str(explained)


@pytest.mark.parametrize(
    ("reply", "refreshed"),
    [
        (b"5.7.3 Authentication unsuccessful", False),  # worth a refresh first
        (b"5.7.30x not the code", False),
        (b"5.7.39 something else", True),  # "5.7.3" is a whole code, not a prefix
        (b"", True),
    ],
)
def test_other_auth_replies_are_left_as_they_are(reply: bytes, refreshed: bool) -> None:
    error = smtplib.SMTPAuthenticationError(535, reply)
    assert exchange.explain_auth(error, MAILBOX, refreshed=refreshed) is error


SEND_REPLIES = [
    # (code, reply, sender, expected type, words)
    (
        554,
        b"5.2.252 SendAsDenied; ann@contoso.com not allowed to send as "
        b"team@contoso.com",
        "team@contoso.com",
        SendAsDenied,
        "Add-RecipientPermission -Identity team@contoso.com -Trustee ann@contoso.com",
    ),
    (554, b"5.2.252 SendAsDenied", MAILBOX, SendAsDenied, "From header names"),
    (
        554,
        b"5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
        MAILBOX,
        SubmissionQuotaExceeded,
        "daily sending limit",
    ),
    (554, b"5.2.2 mailbox full", MAILBOX, MailboxFull, "Sent Items"),
]


@pytest.mark.parametrize(("code", "reply", "sender", "kind", "words"), SEND_REPLIES)
def test_refused_message_is_explained(
    code: int, reply: bytes, sender: str, kind: type[Exception], words: str
) -> None:
    explained = exchange.explain_send(
        smtplib.SMTPDataError(code, reply), MAILBOX, sender
    )
    assert type(explained) is kind
    assert isinstance(explained, smtplib.SMTPDataError)
    assert words in str(explained)


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        (550, b"5.2.252 SendAsDenied"),
        (451, b"4.3.0 busy"),
        (554, b"5.6.0 bad"),
        (554, b"5.2.20 not the code"),
    ],
)
def test_other_send_replies_are_left_as_they_are(code: int, reply: bytes) -> None:
    error = smtplib.SMTPDataError(code, reply)
    assert exchange.explain_send(error, MAILBOX, MAILBOX) is error


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 busy"), "451 4.3.0 busy"),
        (smtplib.SMTPSenderRefused(550, "5.1.0 no", "a@b"), "550 5.1.0 no"),
        (
            smtplib.SMTPRecipientsRefused(
                {"x@y": (452, b"4.5.3 Too many recipients"), "z@y": (550, b"no")}
            ),
            "x@y: 452 4.5.3 Too many recipients; z@y: 550 no",
        ),
        (ConnectionResetError("reset by peer"), "reset by peer"),
        (smtplib.SMTPServerDisconnected(), "SMTPServerDisconnected"),
    ],
)
def test_describe_gives_one_line(error: BaseException, text: str) -> None:
    assert exchange.describe(error) == text


@pytest.mark.parametrize(
    ("code", "reply", "throttled"),
    [
        (432, b"4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded", True),
        (421, b"4.3.2 Service not available, closing transmission channel", False),
        (432, b"4.3.20 something else", False),
        (451, b"4.3.2 busy", False),
    ],
)
def test_only_too_many_connections_is_throttling(
    code: int, reply: bytes, throttled: bool
) -> None:
    error = smtplib.SMTPConnectError(code, reply)
    found = exchange.throttling(error, MAILBOX)
    assert (found is not None) is throttled
    if found is not None:
        assert found.retry_after is None and found.mailbox == MAILBOX
        assert "allows 3 at a time" in str(found)
