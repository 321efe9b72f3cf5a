"""Exchange's SMTP replies, read by the one module that reads them (exchange.py).

Each table row is a reply as Exchange Online sends it, and what it must become:
the exact class, its SMTP code and reply, and the words that say what to do.
No sockets: the same replies arrive over real ones in test_backend.py,
test_auth_frames.py and test_smtp_retries.py, which test the wiring.
"""

from __future__ import annotations

import smtplib

import pytest

from django_live_oauth_mail.exceptions import (
    MailboxFull,
    SendAsDenied,
    SMTPAuthDisabled,
    SubmissionQuotaExceeded,
    Throttled,
    TokenRejected,
)
from django_live_oauth_mail.transports import smtp_replies as exchange

from ..helpers import assert_says

pytestmark = pytest.mark.offline

MAILBOX = "ann@contoso.com"
TEAM = "team@contoso.com"
APP_ID = "11111111-2222-3333-4444-555555555555"

DISABLED = (
    b"5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
    b"for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information."
)
BAD_TOKEN = b"5.7.3 Authentication unsuccessful [SN4PR0601CA0011.namprd06.prod]"
SCOPE_ADVICE = (
    "LIVE_OAUTH_MAIL['SCOPES'] holds https://outlook.office.com/SMTP.Send",
    "link the mailbox again",
)
APP_ADVICE = (
    f"New-ServicePrincipal -AppId {APP_ID}",
    f"Add-MailboxPermission -Identity {MAILBOX}",
    "FullAccess",
)
AUTH_DISABLED_ADVICE = (
    "not a token problem",
    "linking again will not help",
    f"Set-CASMailbox -Identity {MAILBOX} -SmtpClientAuthenticationDisabled $false",
)


@pytest.mark.parametrize(
    ("code", "reply", "refreshed", "app_id", "expected", "phrases"),
    [
        pytest.param(
            535,
            DISABLED,
            False,
            None,
            SMTPAuthDisabled,
            AUTH_DISABLED_ADVICE,
            id="5.7.139-first-try",
        ),
        pytest.param(
            535,
            DISABLED,
            True,
            None,
            SMTPAuthDisabled,
            AUTH_DISABLED_ADVICE,
            id="5.7.139-after-refresh",
        ),
        pytest.param(
            535,
            DISABLED,
            True,
            APP_ID,
            SMTPAuthDisabled,
            AUTH_DISABLED_ADVICE,
            id="5.7.139-app",
        ),
        pytest.param(
            535,
            BAD_TOKEN,
            True,
            None,
            TokenRejected,
            SCOPE_ADVICE,
            id="5.7.3-after-refresh",
        ),
        pytest.param(
            535,
            b"5.7.3; Authentication unsuccessful",
            True,
            None,
            TokenRejected,
            SCOPE_ADVICE,
            id="5.7.3-semicolon",
        ),
        pytest.param(
            535,
            b"5.7.3, Authentication unsuccessful",
            True,
            None,
            TokenRejected,
            SCOPE_ADVICE,
            id="5.7.3-comma",
        ),
        pytest.param(
            535,
            BAD_TOKEN,
            True,
            APP_ID,
            TokenRejected,
            APP_ADVICE,
            id="5.7.3-app-after-refresh",
        ),
    ],
)
def test_a_refused_auth_becomes_the_error_that_says_what_to_do(
    code: int,
    reply: bytes,
    refreshed: bool,
    app_id: str | None,
    expected: type[Exception],
    phrases: tuple[str, ...],
) -> None:
    error = smtplib.SMTPAuthenticationError(code, reply)

    explained = exchange.explain_auth(
        error, MAILBOX, refreshed=refreshed, app_id=app_id
    )

    assert type(explained) is expected
    assert isinstance(explained, smtplib.SMTPAuthenticationError)
    assert (explained.smtp_code, explained.smtp_error) == (code, reply)
    assert explained.mailbox == MAILBOX
    assert_says(explained, f"({code} {reply.decode()})", *phrases)
    if app_id is None:
        assert "New-ServicePrincipal" not in str(explained)


def test_a_refused_auth_given_as_text_is_read_as_bytes() -> None:
    error = smtplib.SMTPAuthenticationError(535, DISABLED.decode())
    explained = exchange.explain_auth(error, MAILBOX, refreshed=False)
    assert type(explained) is SMTPAuthDisabled
    assert explained.smtp_error == DISABLED


@pytest.mark.parametrize(
    ("code", "reply", "refreshed", "app_id"),
    [
        pytest.param(535, BAD_TOKEN, False, None, id="5.7.3-worth-a-refresh-first"),
        pytest.param(535, BAD_TOKEN, False, APP_ID, id="5.7.3-app-worth-a-refresh"),
        pytest.param(535, b"5.7.30 Basic auth blocked", True, None, id="5.7.30"),
        pytest.param(535, b"5.7.39 something else", True, APP_ID, id="5.7.39"),
        pytest.param(535, b"5.7.1390 not the code", True, None, id="5.7.1390"),
        pytest.param(535, b"Authentication failed 5.7.3", True, None, id="code-last"),
        pytest.param(454, b"4.7.0 Temporary authentication failure", True, None),
        pytest.param(535, b"", True, None, id="empty"),
        pytest.param(535, b"   ", True, APP_ID, id="blank"),
        pytest.param(535, b"\xff\xfe garbage", True, None, id="garbage"),
    ],
)
def test_other_auth_replies_are_left_as_they_are(
    code: int, reply: bytes, refreshed: bool, app_id: str | None
) -> None:
    error = smtplib.SMTPAuthenticationError(code, reply)
    assert (
        exchange.explain_auth(error, MAILBOX, refreshed=refreshed, app_id=app_id)
        is error
    )


TOO_MANY = b"4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=X]"


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(smtplib.SMTPConnectError(432, TOO_MANY), id="greeting"),
        pytest.param(smtplib.SMTPAuthenticationError(432, TOO_MANY), id="auth"),
        pytest.param(smtplib.SMTPSenderRefused(432, TOO_MANY, MAILBOX), id="mail"),
        pytest.param(smtplib.SMTPDataError(432, TOO_MANY), id="data"),
        pytest.param(
            smtplib.SMTPDataError(432, TOO_MANY.decode()),
            id="text",
        ),
    ],
)
def test_too_many_connections_is_throttling_at_any_step(
    error: smtplib.SMTPResponseException,
) -> None:
    throttled = exchange.throttling(error, MAILBOX)

    assert type(throttled) is Throttled
    assert (throttled.mailbox, throttled.retry_after) == (MAILBOX, None)
    assert_says(
        throttled,
        MAILBOX,
        f"(432 {TOO_MANY.decode()})",
        "allows 3 at a time",
        "queue the mail, or send from fewer workers",
    )


@pytest.mark.parametrize(
    "error",
    [
        pytest.param(
            smtplib.SMTPDataError(421, b"4.3.2 Service not available"), id="421"
        ),
        pytest.param(smtplib.SMTPDataError(432, b"4.3.20 something else"), id="4.3.20"),
        pytest.param(smtplib.SMTPDataError(451, b"4.3.2 busy"), id="451"),
        pytest.param(smtplib.SMTPDataError(432, b""), id="432-empty"),
        pytest.param(
            smtplib.SMTPRecipientsRefused({"r@x": (432, TOO_MANY)}), id="rcpt"
        ),
        pytest.param(smtplib.SMTPServerDisconnected("gone"), id="disconnected"),
        pytest.param(ConnectionResetError("reset by peer"), id="reset"),
        pytest.param(Throttled("already ours", retry_after=3.0), id="ours"),
    ],
)
def test_nothing_else_is_too_many_connections(error: BaseException) -> None:
    assert exchange.throttling(error, MAILBOX) is None


SEND_AS_GRANT = (
    f"Exchange refused to let {MAILBOX} send as {TEAM}",
    f"Add-RecipientPermission -Identity {TEAM} -Trustee {MAILBOX} -AccessRights SendAs",
    f"Until then, send from {MAILBOX} itself.",
)
OWN_ADDRESS = ("the From header names another address", "mailbox's own address")
STORE_SEND_AS = (
    b"5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAs"
    b"Denied; Failed to process message due to a permanent exception with message "
    b"Cannot submit message. 16.55847:94050000"
)
QUOTA = (
    b"5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed "
    b"to process message due to a permanent exception"
)
DAILY_LIMIT = ("daily sending limit", "24-hour window", "several mailboxes")
FULL = ("over its storage quota", "empty Sent Items or Deleted Items")


@pytest.mark.parametrize(
    ("code", "reply", "sender", "expected", "said", "phrases"),
    [
        pytest.param(
            554,
            b"5.2.252 SendAsDenied; ann@contoso.com not allowed to send as "
            b"team@contoso.com; STOREDRV.Submission.Exception:SendAsDeniedException",
            TEAM,
            SendAsDenied,
            "(554 5.2.252 SendAsDenied)",
            SEND_AS_GRANT,
            id="5.2.252-send-as",
        ),
        pytest.param(
            554,
            b"5.2.252 SendAsDenied",
            MAILBOX,
            SendAsDenied,
            "(554 5.2.252 SendAsDenied)",
            OWN_ADDRESS,
            id="5.2.252-own-address",
        ),
        pytest.param(
            554,
            b"5.2.252 SendAsDenied",
            None,
            SendAsDenied,
            "(554 5.2.252 SendAsDenied)",
            OWN_ADDRESS,
            id="5.2.252-no-sender",
        ),
        pytest.param(
            554,
            b"5.2.252 SendAsDenied",
            "",
            SendAsDenied,
            "(554 5.2.252 SendAsDenied)",
            OWN_ADDRESS,
            id="5.2.252-empty-sender",
        ),
        pytest.param(
            554,
            STORE_SEND_AS,
            TEAM,
            SendAsDenied,
            "(554 5.2.0 STOREDRV.Submission.Exception:SendAsDeniedException."
            "MapiExceptionSendAsDenied)",
            SEND_AS_GRANT,
            id="5.2.0-store-send-as",
        ),
        pytest.param(
            550,
            b"5.7.60 SMTP; Client does not have permissions to send as this sender",
            TEAM,
            SendAsDenied,
            "(550 5.7.60 SMTP)",
            SEND_AS_GRANT,
            id="5.7.60-transport-send-as",
        ),
        pytest.param(
            554,
            QUOTA,
            MAILBOX,
            SubmissionQuotaExceeded,
            f"(554 {QUOTA.decode()})",
            DAILY_LIMIT,
            id="daily-limit",
        ),
        pytest.param(
            554,
            b"5.2.2 mailbox full; STOREDRV.Submission.Exception",
            MAILBOX,
            MailboxFull,
            "(554 5.2.2 mailbox full; STOREDRV.Submission.Exception)",
            FULL,
            id="mailbox-full",
        ),
        pytest.param(
            554,
            b"5.2.2, mailbox full",
            TEAM,
            MailboxFull,
            "(554 5.2.2, mailbox full)",
            FULL,
            id="mailbox-full-comma",
        ),
    ],
)
def test_a_refused_message_becomes_the_error_that_says_what_to_do(
    code: int,
    reply: bytes,
    sender: str | None,
    expected: type[Exception],
    said: str,
    phrases: tuple[str, ...],
) -> None:
    error = smtplib.SMTPDataError(code, reply)

    explained = exchange.explain_send(error, MAILBOX, sender)

    assert type(explained) is expected
    assert isinstance(explained, smtplib.SMTPDataError)
    assert (explained.smtp_code, explained.smtp_error) == (code, reply)
    assert explained.mailbox == MAILBOX
    assert_says(explained, said, *phrases)


def test_a_refusal_at_mail_from_is_explained_too() -> None:
    """550 5.7.60 comes at MAIL FROM when the envelope sender is another address."""
    error = smtplib.SMTPSenderRefused(
        550, b"5.7.60 SMTP; Client does not have permissions", TEAM
    )
    explained = exchange.explain_send(error, MAILBOX, TEAM)
    assert type(explained) is SendAsDenied
    assert (explained.smtp_code, explained.smtp_error) == (550, error.smtp_error)


def test_too_many_connections_at_data_is_throttling() -> None:
    explained = exchange.explain_send(
        smtplib.SMTPDataError(432, TOO_MANY), MAILBOX, MAILBOX
    )
    assert type(explained) is Throttled
    assert (explained.mailbox, explained.retry_after) == (MAILBOX, None)


@pytest.mark.parametrize(
    ("code", "reply"),
    [
        pytest.param(550, b"5.2.252 SendAsDenied", id="5.2.252-not-554"),
        pytest.param(550, b"5.7.1 Client does not have permissions", id="5.7.1"),
        pytest.param(550, b"5.7.600 not the code", id="5.7.600"),
        pytest.param(421, b"4.3.2 Service not available", id="421"),
        pytest.param(451, b"4.3.0 busy", id="451"),
        pytest.param(554, b"5.6.0 Corrupt message content", id="5.6.0"),
        pytest.param(554, b"5.2.20 not the code", id="5.2.20"),
        pytest.param(552, b"5.2.2 mailbox full", id="5.2.2-not-554"),
        pytest.param(552, b"5.3.4 Message size exceeds fixed maximum", id="size"),
        pytest.param(554, b"", id="empty"),
        pytest.param(554, b"\xff\xfe\x00", id="garbage"),
    ],
)
def test_other_message_refusals_are_left_as_they_are(code: int, reply: bytes) -> None:
    error = smtplib.SMTPDataError(code, reply)
    assert exchange.explain_send(error, MAILBOX, TEAM) is error


@pytest.mark.parametrize(
    ("error", "code", "found"),
    [
        (smtplib.SMTPAuthenticationError(535, b"5.7.3 no"), "5.7.3", True),
        (smtplib.SMTPAuthenticationError(535, b"5.7.3; no"), "5.7.3", True),
        (smtplib.SMTPAuthenticationError(535, b"5.7.3, no"), "5.7.3", True),
        (smtplib.SMTPAuthenticationError(535, b"  5.7.3 no"), "5.7.3", True),
        (smtplib.SMTPAuthenticationError(535, "5.7.3 no"), "5.7.3", True),
        (smtplib.SMTPAuthenticationError(535, b"5.7.30 no"), "5.7.3", False),
        (smtplib.SMTPAuthenticationError(535, b"no 5.7.3"), "5.7.3", False),
        (smtplib.SMTPAuthenticationError(535, b""), "5.7.3", False),
        (smtplib.SMTPRecipientsRefused({"r@x": (535, b"5.7.3")}), "5.7.3", False),
        (ConnectionResetError("5.7.3"), "5.7.3", False),
    ],
)
def test_an_enhanced_code_matches_whole_and_first(
    error: BaseException, code: str, found: bool
) -> None:
    assert exchange.has_code(error, code) is found


@pytest.mark.parametrize(
    ("error", "text"),
    [
        (smtplib.SMTPDataError(451, b"4.3.0 busy"), "451 4.3.0 busy"),
        (smtplib.SMTPDataError(451, "4.3.0 as text"), "451 4.3.0 as text"),
        (smtplib.SMTPDataError(554, b"\xff bad"), "554 \ufffd bad"),
        (smtplib.SMTPSenderRefused(550, b"5.1.0 no", "a@b"), "550 5.1.0 no"),
        (
            smtplib.SMTPRecipientsRefused(
                {"x@y": (452, b"4.5.3 Too many recipients"), "z@y": (550, b"no")}
            ),
            "x@y: 452 4.5.3 Too many recipients; z@y: 550 no",
        ),
        (smtplib.SMTPRecipientsRefused({}), ""),
        (ConnectionResetError("reset by peer"), "reset by peer"),
        (smtplib.SMTPServerDisconnected(), "SMTPServerDisconnected"),
        (TimeoutError(), "TimeoutError"),
    ],
)
def test_describe_gives_one_line(error: BaseException, text: str) -> None:
    assert exchange.describe(error) == text
