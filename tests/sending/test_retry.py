"""Which failures are temporary, and how long to wait: retry.py and the queue's rule.

Tables of errors as smtplib, ssl, sockets and our mappers raise them, and the
decision each must get. No sockets: test_smtp_retries.py and test_outbox.py
check that the backend and the worker act on these decisions.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from typing import Any

import pytest
from django.db import DatabaseError, OperationalError

from django_live_oauth_mail.exceptions import (
    AppCredentialsError,
    GraphError,
    IdentityPlatformUnavailable,
    MailboxFull,
    MessageMayHaveBeenSent,
    ReconnectRequired,
    SendAsDenied,
    SMTPAuthDisabled,
    Throttled,
    TokenRejected,
)
from django_live_oauth_mail.sending import retry

pytestmark = pytest.mark.offline

MAILBOX = "ann@contoso.com"


@pytest.mark.parametrize(
    ("error", "temporary"),
    [
        pytest.param(Throttled("slow down", retry_after=None), True, id="throttled"),
        pytest.param(smtplib.SMTPDataError(400, b"4.0.0"), True, id="400"),
        pytest.param(smtplib.SMTPDataError(421, b"4.3.2 closing"), True, id="421"),
        pytest.param(smtplib.SMTPDataError(451, b"4.7.0 later"), True, id="451"),
        pytest.param(smtplib.SMTPDataError(499, b"4.9.9"), True, id="499"),
        pytest.param(smtplib.SMTPDataError(500, b"5.0.0"), False, id="500"),
        pytest.param(smtplib.SMTPDataError(554, b"5.6.0"), False, id="554"),
        pytest.param(smtplib.SMTPDataError(354, b"go ahead"), False, id="354"),
        pytest.param(smtplib.SMTPSenderRefused(451, b"4.4.0", "a@b"), True, id="mail"),
        pytest.param(smtplib.SMTPConnectError(421, b"4.3.2"), True, id="greeting"),
        pytest.param(smtplib.SMTPAuthenticationError(454, b"4.7.0"), True, id="454"),
        pytest.param(smtplib.SMTPAuthenticationError(535, b"5.7.3"), False, id="535"),
        pytest.param(smtplib.SMTPHeloError(501, b"5.5.4"), False, id="helo"),
        pytest.param(
            smtplib.SMTPRecipientsRefused({"a@x": (450, b"4.2.1"), "b@x": (451, b"")}),
            True,
            id="rcpt-all-4xx",
        ),
        pytest.param(
            smtplib.SMTPRecipientsRefused({"a@x": (452, b"4.3.1 No storage")}),
            True,
            id="rcpt-452-storage",
        ),
        pytest.param(
            smtplib.SMTPRecipientsRefused({"a@x": (450, b"4.2.1"), "b@x": (550, b"")}),
            False,
            id="rcpt-one-5xx",
        ),
        pytest.param(
            smtplib.SMTPRecipientsRefused({"a@x": (452, b"4.5.3 Too many recipients")}),
            False,
            id="rcpt-too-many",
        ),
        pytest.param(
            smtplib.SMTPRecipientsRefused({"a@x": (452, "4.5.3 as text")}),
            False,
            id="rcpt-too-many-text",
        ),
        pytest.param(smtplib.SMTPRecipientsRefused({}), False, id="rcpt-none"),
        pytest.param(smtplib.SMTPServerDisconnected(), True, id="disconnected"),
        pytest.param(smtplib.SMTPNotSupportedError("no XOAUTH2"), False, id="no-auth"),
        pytest.param(smtplib.SMTPException("?"), False, id="smtp-other"),
        pytest.param(ssl.SSLError("handshake"), False, id="tls"),
        pytest.param(ssl.SSLCertVerificationError("bad cert"), False, id="cert"),
        pytest.param(ConnectionRefusedError(), True, id="refused"),
        pytest.param(ConnectionResetError(), True, id="reset"),
        pytest.param(TimeoutError(), True, id="timeout"),
        pytest.param(socket.gaierror(-3, "Temporary failure"), True, id="dns"),
        pytest.param(OSError("network is unreachable"), True, id="os"),
        pytest.param(ValueError("bad address"), False, id="value"),
        pytest.param(KeyboardInterrupt(), False, id="interrupt"),
        pytest.param(
            SMTPAuthDisabled("off", mailbox=MAILBOX, smtp_code=535, smtp_error=b""),
            False,
            id="auth-disabled",
        ),
        pytest.param(
            SendAsDenied("no", mailbox=MAILBOX, smtp_code=454, smtp_error=b""),
            False,
            id="ours-even-with-4xx",
        ),
        pytest.param(
            IdentityPlatformUnavailable("later", mailbox=MAILBOX),
            False,
            id="identity-platform",
        ),
        pytest.param(
            GraphError("busy", mailbox=MAILBOX, status=503, code="x"), False, id="graph"
        ),
        pytest.param(ReconnectRequired("link", mailbox=MAILBOX), False, id="relink"),
        pytest.param(
            MessageMayHaveBeenSent("lost answer", mailbox=MAILBOX),
            False,
            id="answer-lost",
        ),
    ],
)
def test_which_failures_another_attempt_may_cure(
    error: BaseException, temporary: bool
) -> None:
    assert retry.is_transient(error) is temporary


@pytest.mark.parametrize(
    ("error", "usable"),
    [
        pytest.param(
            smtplib.SMTPRecipientsRefused({"a@x": (550, b"5.1.1")}), True, id="rcpt"
        ),
        pytest.param(ValueError("Django refused the address"), True, id="value"),
        pytest.param(UnicodeEncodeError("ascii", "é", 0, 1, "no"), True, id="unicode"),
        pytest.param(smtplib.SMTPDataError(554, b"5.6.0"), True, id="554-data"),
        pytest.param(smtplib.SMTPSenderRefused(550, b"5.1.8", "a@b"), True, id="mail"),
        pytest.param(
            SendAsDenied("no", mailbox=MAILBOX, smtp_code=554, smtp_error=b"5.2.252"),
            True,
            id="send-as",
        ),
        pytest.param(
            MailboxFull("full", mailbox=MAILBOX, smtp_code=554, smtp_error=b"5.2.2"),
            True,
            id="full",
        ),
        pytest.param(smtplib.SMTPDataError(530, b"5.7.0 auth"), False, id="530"),
        pytest.param(smtplib.SMTPDataError(451, b"4.3.0"), False, id="4xx"),
        pytest.param(smtplib.SMTPAuthenticationError(535, b""), False, id="auth"),
        pytest.param(
            SMTPAuthDisabled("off", mailbox=MAILBOX, smtp_code=535, smtp_error=b""),
            False,
            id="auth-disabled",
        ),
        pytest.param(
            TokenRejected("no", mailbox=MAILBOX, smtp_code=535, smtp_error=b""),
            False,
            id="token-rejected",
        ),
        pytest.param(smtplib.SMTPConnectError(554, b"5.7.1 go away"), False, id="conn"),
        pytest.param(smtplib.SMTPServerDisconnected(), False, id="disconnected"),
        pytest.param(TimeoutError(), False, id="timeout"),
        pytest.param(
            MessageMayHaveBeenSent("lost answer", mailbox=MAILBOX),
            False,
            id="answer-lost",
        ),
        pytest.param(Throttled("busy", retry_after=None), False, id="throttled"),
        pytest.param(KeyboardInterrupt(), False, id="interrupt"),
    ],
)
def test_which_failures_leave_the_session_signed_in_and_in_step(
    error: BaseException, usable: bool
) -> None:
    assert retry.leaves_session_usable(error) is usable


TEMPORARY = smtplib.SMTPDataError(451, b"4.7.0 later")


def throttled(after: float | None) -> Throttled:
    return Throttled("slow down", mailbox=MAILBOX, retry_after=after)


@pytest.mark.parametrize(
    ("error", "waited", "max_wait", "pause", "left"),
    [
        pytest.param(TEMPORARY, 0.0, 60.0, 1.0, [2.0], id="next-pause"),
        pytest.param(TEMPORARY, 500.0, 60.0, 1.0, [2.0], id="no-cap-unthrottled"),
        pytest.param(TEMPORARY, 0.0, 0.0, 1.0, [2.0], id="no-cap-max-wait-0"),
        pytest.param(ConnectionResetError(), 0.0, 60.0, 1.0, [2.0], id="reset"),
        pytest.param(smtplib.SMTPDataError(554, b""), 0.0, 60.0, None, [1.0, 2.0]),
        pytest.param(
            IdentityPlatformUnavailable("later"),
            0.0,
            60.0,
            None,
            [1.0, 2.0],
            id="not-smtps-to-retry",
        ),
        pytest.param(throttled(5.0), 0.0, 60.0, 5.0, [2.0], id="server-wait-longer"),
        pytest.param(throttled(0.5), 0.0, 60.0, 1.0, [2.0], id="server-wait-shorter"),
        pytest.param(throttled(None), 0.0, 60.0, 1.0, [2.0], id="server-said-nothing"),
        pytest.param(throttled(5.0), 55.0, 60.0, 5.0, [2.0], id="exactly-max-wait"),
        pytest.param(throttled(5.0), 55.5, 60.0, None, [2.0], id="over-max-wait"),
        pytest.param(throttled(None), 0.0, 0.0, None, [2.0], id="max-wait-0"),
        pytest.param(throttled(None), 0.0, -1.0, None, [2.0], id="max-wait-negative"),
    ],
)
def test_next_pause_waits_the_backoff_or_the_server_and_gives_up_in_time(
    error: BaseException,
    waited: float,
    max_wait: float,
    pause: float | None,
    left: list[float],
) -> None:
    pauses = [1.0, 2.0]
    assert retry.next_pause(error, pauses, waited, max_wait) == pause
    assert pauses == left


def test_a_throttled_worker_that_may_not_wait_gives_up_even_with_no_backoff() -> None:
    """MAX_INLINE_WAIT 0 (the queue's workers) never waits, not even 0 s."""
    assert retry.next_pause(throttled(None), [0.0], 0.0, 0.0) is None
    assert retry.next_pause(throttled(0.0), [0.0], 0.0, 0.0) is None
    assert retry.next_pause(TEMPORARY, [0.0], 0.0, 0.0) == 0.0


def test_next_pause_gives_up_when_the_pauses_are_spent() -> None:
    assert retry.next_pause(TEMPORARY, [], 0.0, 60.0) is None
    assert retry.next_pause(throttled(1.0), [], 0.0, 60.0) is None


@pytest.mark.parametrize(
    ("retries", "backoff", "delays"),
    [
        (3, 1.5, [1.5, 3.0, 6.0]),
        (1, 0.0, [0.0]),
        (0, 1.5, []),
        (-2, 1.5, []),
        (2, -1.0, [0.0, 0.0]),
    ],
)
def test_delays_double_from_the_backoff_setting(
    settings: Any, retries: int, backoff: float, delays: list[float]
) -> None:
    settings.LIVE_OAUTH_MAIL = {
        **settings.LIVE_OAUTH_MAIL,
        "SMTP_RETRIES": retries,
        "SMTP_RETRY_BACKOFF": backoff,
    }
    assert retry.delays() == delays


@pytest.mark.parametrize(
    ("error", "started", "temporary"),
    [
        pytest.param(throttled(3.0), True, True, id="throttled"),
        pytest.param(TEMPORARY, True, True, id="4xx"),
        pytest.param(ConnectionResetError(), True, True, id="reset"),
        pytest.param(IdentityPlatformUnavailable("later"), True, True, id="platform"),
        pytest.param(
            GraphError("busy", mailbox=MAILBOX, status=503, code="x"),
            True,
            True,
            id="graph-5xx-before-sending",
        ),
        pytest.param(
            GraphError("oops", mailbox=MAILBOX, status=500, code="x"),
            True,
            True,
            id="graph-500-before-sending",
        ),
        pytest.param(
            GraphError("no", mailbox=MAILBOX, status=400, code="x"),
            True,
            False,
            id="graph-4xx",
        ),
        pytest.param(DatabaseError("locked"), False, True, id="db-before-attempt"),
        pytest.param(OperationalError("restart"), False, True, id="db-restart"),
        pytest.param(DatabaseError("locked"), True, False, id="db-during-attempt"),
        pytest.param(smtplib.SMTPDataError(554, b"5.6.0"), True, False, id="5xx"),
        pytest.param(ReconnectRequired("link"), False, False, id="relink"),
        pytest.param(AppCredentialsError("secret"), False, False, id="app-credentials"),
        pytest.param(ValueError("bug"), False, False, id="bug"),
    ],
)
def test_the_queue_defers_only_what_may_pass(
    error: Exception, started: bool, temporary: bool
) -> None:
    assert retry.worth_requeueing(error, started) is temporary
