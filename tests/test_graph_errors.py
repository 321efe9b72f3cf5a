"""Graph's answers → our exceptions: a table, no servers."""

from __future__ import annotations

from typing import Any

import pytest

from django_live_oauth_mail import graph_errors
from django_live_oauth_mail.exceptions import (
    GraphError,
    MailboxFull,
    MessageMayHaveBeenSent,
    SendAsDenied,
    SubmissionQuotaExceeded,
    Throttled,
)

pytestmark = pytest.mark.offline

MAILBOX = "ann@contoso.com"


def body(code: str, message: str = "Graph said so.") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("status", "answer", "headers", "expected", "says"),
    [
        (
            429,
            body("ApplicationThrottled"),
            {"Retry-After": "7"},
            Throttled,
            "4 requests",
        ),
        (503, body("ServiceUnavailable"), {"Retry-After": "2"}, Throttled, "slow down"),
        (403, body("ErrorSendAsDenied"), {}, SendAsDenied, "Add-RecipientPermission"),
        (403, body("ErrorQuotaExceeded"), {}, MailboxFull, "Sent Items"),
        (
            403,
            body("ErrorSubmissionQuotaExceeded"),
            {},
            SubmissionQuotaExceeded,
            "24-hour",
        ),
        (403, body("ErrorAccessDenied"), {}, GraphError, "re-link"),
        (404, body("MailboxNotEnabledForRESTAPI"), {}, GraphError, "on-premises"),
        (400, body("ErrorMessageSizeExceeded"), {}, GraphError, "MaxSendSize"),
        (413, body("RequestBodyTooLarge"), {}, GraphError, "Mail.ReadWrite"),
        (401, body("InvalidAuthenticationToken"), {}, GraphError, "GRAPH_ENDPOINT"),
        (500, body("InternalServerError"), {}, MessageMayHaveBeenSent, "Sent Items"),
        # A 503 without Retry-After may have been half done: not retried.
        (503, "<html>busy</html>", {}, MessageMayHaveBeenSent, "HTTP503"),
        (400, body("ErrorInvalidRecipients"), {}, GraphError, "ErrorInvalidRecipients"),
    ],
)
def test_graph_answers_become_exceptions_that_say_what_to_do(
    status: int, answer: Any, headers: dict[str, str], expected: type, says: str
) -> None:
    error = graph_errors.explain(
        status,
        answer,
        headers,
        mailbox=MAILBOX,
        sender="team@contoso.com",
        refreshed=True,
    )

    assert type(error) is expected
    assert says in str(error)
    assert MAILBOX in str(error)
    assert getattr(error, "mailbox", None) == MAILBOX


def test_a_server_error_before_anything_was_sent_says_so() -> None:
    error = graph_errors.explain(
        500,
        body("InternalServerError"),
        {},
        mailbox=MAILBOX,
        sender=None,
        refreshed=True,
        sends=False,
    )
    assert type(error) is GraphError
    assert "Nothing was sent" in str(error)


def test_throttling_keeps_the_servers_wait() -> None:
    error = graph_errors.explain(
        429,
        body("ApplicationThrottled"),
        {"Retry-After": "7"},
        mailbox=MAILBOX,
        sender=None,
        refreshed=False,
    )
    assert isinstance(error, Throttled) and error.retry_after == 7.0
    unreadable = graph_errors.explain(
        429,
        None,
        {"Retry-After": "soon"},
        mailbox=MAILBOX,
        sender=None,
        refreshed=False,
    )
    assert isinstance(unreadable, Throttled) and unreadable.retry_after is None


def test_a_graph_refusal_keeps_graphs_status_and_code() -> None:
    error = graph_errors.explain(
        404,
        body("MailboxNotEnabledForRESTAPI"),
        {},
        mailbox=MAILBOX,
        sender=None,
        refreshed=False,
    )
    assert isinstance(error, GraphError)
    assert (error.status, error.code) == (404, "MailboxNotEnabledForRESTAPI")
    send_as = graph_errors.explain(
        403,
        body("ErrorSendAsDenied", "Nope."),
        {},
        mailbox=MAILBOX,
        sender="team@contoso.com",
        refreshed=False,
    )
    assert isinstance(send_as, SendAsDenied)
    assert (send_as.smtp_code, send_as.smtp_error) == (403, b"ErrorSendAsDenied: Nope.")
