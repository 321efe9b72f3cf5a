"""Microsoft Graph's refusals and broken requests, turned into our exceptions.

graph_errors.py reads Graph's status, body and headers; graph_transport.py
and graph_upload.py explain a request that broke or a draft Graph refused.
Each row is an answer as Graph (or requests) gives it, and the exact class,
fields and advice it must become. A request carries a fake bearer token and
an upload URL a fake secret; neither may show in what is raised. No sockets:
test_graph_backend.py sends the same answers through the Graph stand-in.
"""

from __future__ import annotations

import json
import pickle
from typing import Any

import pytest
import requests
import urllib3

from django_live_oauth_mail.exceptions import (
    GraphError,
    MailboxFull,
    MessageMayHaveBeenSent,
    SendAsDenied,
    SubmissionQuotaExceeded,
    Throttled,
)
from django_live_oauth_mail.transports import graph_replies as graph_errors
from django_live_oauth_mail.transports.graph import (
    _explained_transport_errors,
    _never_sent,
)
from django_live_oauth_mail.transports.graph_upload import _needs_read_write

from ..helpers import (
    ACCESS_TOKEN,
    UPLOAD_SECRET,
    assert_says,
    assert_tells_no_secret,
)

pytestmark = pytest.mark.offline

MAILBOX = "ann@contoso.com"
TEAM = "team@contoso.com"
APP_ID = "11111111-2222-3333-4444-555555555555"


def graph_body(code: str, message: str = "Graph said so.") -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (
            403,
            graph_body("ErrorAccessDenied", "Access is denied."),
            ("ErrorAccessDenied", "Access is denied."),
        ),
        (400, graph_body("X", "First line.\r\nSecond line."), ("X", "First line.")),
        (400, graph_body("X", "\n\n  Real line\nmore"), ("X", "Real line")),
        (400, graph_body("X", ""), ("X", "no details given")),
        (400, graph_body("X", " \r\n "), ("X", "no details given")),
        (400, {"error": {"code": "X"}}, ("X", "no details given")),
        (400, {"error": {"code": "X", "message": None}}, ("X", "no details given")),
        (400, {"error": {"code": 123, "message": 4}}, ("123", "4")),
        (403, graph_body(""), ("HTTP403", "Graph said so.")),
        (403, {"error": {"message": "m"}}, ("HTTP403", "m")),
        (403, {"error": {"code": None, "message": "m"}}, ("HTTP403", "m")),
        (400, {"error": "invalid_request"}, ("HTTP400", "no details given")),
        (400, {"error": None}, ("HTTP400", "no details given")),
        (502, {}, ("HTTP502", "no details given")),
        (502, [], ("HTTP502", "no details given")),
        (502, "<html>Bad gateway</html>", ("HTTP502", "no details given")),
        (502, None, ("HTTP502", "no details given")),
    ],
)
def test_graphs_code_and_message_are_read_or_made_up(
    status: int, body: Any, expected: tuple[str, str]
) -> None:
    assert graph_errors.error_of(status, body) == expected


@pytest.mark.parametrize(
    ("headers", "seconds"),
    [
        ({"Retry-After": "7"}, 7.0),
        ({"Retry-After": "2.5"}, 2.5),
        ({"Retry-After": " 7 "}, 7.0),
        ({"Retry-After": 7}, 7.0),
        ({"Retry-After": "0"}, 0.0),
        ({"Retry-After": "-3"}, 0.0),
        ({"Retry-After": "86400"}, 86400.0),
        ({"Retry-After": "1e12"}, 86400.0),  # years: the queue could not date it
        ({"Retry-After": "inf"}, None),
        ({"Retry-After": "1e400"}, None),
        ({"Retry-After": "nan"}, None),
        ({"Retry-After": "soon"}, None),
        ({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}, None),
        ({"Retry-After": ""}, None),
        ({"Retry-After": None}, None),
        ({"Retry-After": ["7"]}, None),
        ({}, None),
        (None, None),
        (requests.structures.CaseInsensitiveDict({"retry-after": "9"}), 9.0),
    ],
)
def test_retry_after_is_a_finite_number_of_seconds_or_none(
    headers: Any, seconds: float | None
) -> None:
    assert graph_errors.retry_after(headers) == seconds


# The advice is the SMTP transport's (test_exchange.py), quoting Graph.
SEND_AS_GRANT = (
    f"{MAILBOX} send as {TEAM}",
    f"Add-RecipientPermission -Identity {TEAM} -Trustee {MAILBOX}",
)
OWN_ADDRESS = ("Make the From header the mailbox's own address.",)
DAILY_LIMIT = ("Microsoft's daily sending limit", "bulk mail service")
FULL = ("will not take mail", "raise the mailbox's quota")
GRAPH_SLOW_DOWN = ("asked ann@contoso.com to slow down", "4 requests at once")
GRAPH_MAY_HAVE_SENT = ("It may have been sent", "Check the mailbox's Sent Items")
NOTHING_SENT = ("Nothing was sent", "try again in a moment")
GRAPH_TOKEN = ("The token's resource must be LIVE_OAUTH_MAIL['GRAPH_ENDPOINT']",)

# (status, body, headers, options, class, fields, phrases)
GRAPH_ANSWERS = [
    pytest.param(
        429,
        graph_body("ApplicationThrottled"),
        {"Retry-After": "7"},
        {},
        Throttled,
        {"retry_after": 7.0},
        GRAPH_SLOW_DOWN,
        id="429",
    ),
    pytest.param(
        429,
        graph_body("ApplicationThrottled"),
        {},
        {},
        Throttled,
        {"retry_after": None},
        GRAPH_SLOW_DOWN,
        id="429-no-wait",
    ),
    pytest.param(
        429,
        "<html>Too many</html>",
        {"Retry-After": "soon"},
        {},
        Throttled,
        {"retry_after": None},
        ("(HTTP 429 HTTP429: no details given)",),
        id="429-html",
    ),
    pytest.param(
        429,
        graph_body("ErrorSendAsDenied"),
        {"Retry-After": "1"},
        {},
        Throttled,
        {"retry_after": 1.0},
        GRAPH_SLOW_DOWN,
        id="429-before-code",
    ),
    pytest.param(
        503,
        graph_body("ServiceUnavailable"),
        {"Retry-After": "2"},
        {},
        Throttled,
        {"retry_after": 2.0},
        GRAPH_SLOW_DOWN,
        id="503-with-wait",
    ),
    pytest.param(
        503,
        graph_body("ServiceUnavailable"),
        {},
        {},
        MessageMayHaveBeenSent,
        {"status": 503, "code": "ServiceUnavailable"},
        GRAPH_MAY_HAVE_SENT,
        id="503-no-wait",
    ),
    pytest.param(
        503,
        graph_body("ServiceUnavailable"),
        {},
        {"sends": False},
        GraphError,
        {"status": 503, "code": "ServiceUnavailable"},
        NOTHING_SENT,
        id="503-before-sending",
    ),
    pytest.param(
        403,
        graph_body("ErrorSendAsDenied", "Nope.\nmore"),
        {},
        {"sender": TEAM},
        SendAsDenied,
        {"smtp_code": 403, "smtp_error": b"ErrorSendAsDenied: Nope."},
        ("(HTTP 403 ErrorSendAsDenied: Nope.)", *SEND_AS_GRANT),
        id="send-as",
    ),
    pytest.param(
        403,
        graph_body("ErrorSendAsDenied"),
        {},
        {"sender": None},
        SendAsDenied,
        {"smtp_code": 403},
        OWN_ADDRESS,
        id="send-as-own-address",
    ),
    pytest.param(
        403,
        graph_body("ErrorQuotaExceeded"),
        {},
        {},
        MailboxFull,
        {"smtp_code": 403, "smtp_error": b"ErrorQuotaExceeded: Graph said so."},
        FULL,
        id="mailbox-full",
    ),
    pytest.param(
        403,
        graph_body("ErrorSubmissionQuotaExceeded"),
        {},
        {},
        SubmissionQuotaExceeded,
        {"smtp_code": 403},
        DAILY_LIMIT,
        id="daily-limit",
    ),
    pytest.param(
        403,
        graph_body("ErrorAccessDenied"),
        {},
        {"app_id": APP_ID},
        GraphError,
        {"status": 403, "code": "ErrorAccessDenied"},
        (f"New-ManagementRoleAssignment -App {APP_ID}", "Mail.Send application"),
        id="access-denied-app",
    ),
    pytest.param(
        403,
        graph_body("ErrorAccessDenied"),
        {},
        {},
        GraphError,
        {"status": 403, "code": "ErrorAccessDenied"},
        ("delegated Microsoft Graph permission Mail.Send", "(re-link)"),
        id="access-denied-delegated",
    ),
    pytest.param(
        404,
        graph_body("MailboxNotEnabledForRESTAPI"),
        {},
        {},
        GraphError,
        {"status": 404, "code": "MailboxNotEnabledForRESTAPI"},
        ("hosted on-premises", "LIVE_OAUTH_MAIL['TRANSPORT'] = 'smtp'"),
        id="rest-disabled",
    ),
    pytest.param(
        400,
        graph_body("ErrorMessageSizeExceeded"),
        {},
        {},
        GraphError,
        {"status": 400, "code": "ErrorMessageSizeExceeded"},
        ("35 MB", "Set-Mailbox -MaxSendSize"),
        id="too-large-for-mailbox",
    ),
    pytest.param(
        413,
        graph_body("RequestBodyTooLarge"),
        {},
        {},
        GraphError,
        {"status": 413, "code": "RequestBodyTooLarge"},
        ("4 MB limit", "Mail.ReadWrite"),
        id="413",
    ),
    pytest.param(
        413,
        "",
        {},
        {},
        GraphError,
        {"status": 413, "code": "HTTP413"},
        ("4 MB limit",),
        id="413-empty",
    ),
    pytest.param(
        401,
        graph_body("InvalidAuthenticationToken"),
        {},
        {"refreshed": True},
        GraphError,
        {"status": 401, "code": "InvalidAuthenticationToken"},
        (
            f"refused the token for {MAILBOX} even with a brand-new token (HTTP 401",
            *GRAPH_TOKEN,
        ),
        id="401-refreshed",
    ),
    pytest.param(
        401,
        graph_body("InvalidAuthenticationToken"),
        {},
        {"refreshed": False},
        GraphError,
        {"status": 401, "code": "InvalidAuthenticationToken"},
        (f"refused the token for {MAILBOX} (HTTP 401", *GRAPH_TOKEN),
        id="401-first-try",
    ),
    pytest.param(
        500,
        graph_body("InternalServerError"),
        {},
        {},
        MessageMayHaveBeenSent,
        {"status": 500, "code": "InternalServerError"},
        GRAPH_MAY_HAVE_SENT,
        id="500",
    ),
    pytest.param(
        500,
        graph_body("InternalServerError"),
        {},
        {"sends": False},
        GraphError,
        {"status": 500, "code": "InternalServerError"},
        NOTHING_SENT,
        id="500-before-sending",
    ),
    pytest.param(
        502,
        "<html>Bad gateway</html>",
        {},
        {},
        MessageMayHaveBeenSent,
        {"status": 502, "code": "HTTP502"},
        ("(HTTP 502 HTTP502: no details given)", *GRAPH_MAY_HAVE_SENT),
        id="502-html",
    ),
    pytest.param(
        400,
        graph_body("ErrorInvalidRecipients", "Bad recipient."),
        {},
        {},
        GraphError,
        {"status": 400, "code": "ErrorInvalidRecipients"},
        (
            f"refused to send from {MAILBOX} (HTTP 400 ErrorInvalidRecipients: "
            "Bad recipient.)",
        ),
        id="other-code",
    ),
    pytest.param(
        404,
        None,
        {},
        {},
        GraphError,
        {"status": 404, "code": "HTTP404"},
        ("(HTTP 404 HTTP404: no details given)",),
        id="no-body",
    ),
]


@pytest.mark.parametrize(
    ("status", "body", "headers", "options", "expected", "fields", "phrases"),
    GRAPH_ANSWERS,
)
def test_a_graph_refusal_becomes_the_error_that_says_what_to_do(
    status: int,
    body: Any,
    headers: dict[str, str],
    options: dict[str, Any],
    expected: type[Exception],
    fields: dict[str, Any],
    phrases: tuple[str, ...],
) -> None:
    kwargs: dict[str, Any] = {"sender": MAILBOX, "refreshed": True, **options}

    error = graph_errors.explain(status, body, headers, mailbox=MAILBOX, **kwargs)

    assert type(error) is expected
    assert error.mailbox == MAILBOX
    assert {name: getattr(error, name) for name in fields} == fields
    assert_says(error, MAILBOX, *phrases)
    assert "  " not in str(error)


SEND_URL = "https://graph.microsoft.com/v1.0/me/sendMail"
UPLOAD_URL = (
    "https://outlook.office.com/api/v2.0/Users('x')/Messages('y')"
    f"/AttachmentSessions('z')?authtoken={UPLOAD_SECRET}"
)


def graph_response(
    status: int, content: bytes, headers: dict[str, str], url: str
) -> requests.Response:
    """The answer to a request that carried a bearer token, as requests gives it."""
    response = requests.Response()
    response.status_code = status
    response._content = content
    response.headers.update(headers)
    response.url = url
    method = "POST" if url == SEND_URL else "PUT"  # an upload PUTs a chunk
    response.request = requests.Request(
        method, url, headers={"Authorization": f"Bearer {ACCESS_TOKEN}"}
    ).prepare()
    return response


@pytest.mark.parametrize(
    ("status", "content", "headers", "url", "expected"),
    [
        (
            429,
            b'{"error": {"code": "TooMany"}}',
            {"retry-after": "3"},
            SEND_URL,
            Throttled,
        ),
        (
            403,
            json.dumps(graph_body("ErrorSendAsDenied")).encode(),
            {},
            SEND_URL,
            SendAsDenied,
        ),
        (
            401,
            b'{"error": {"code": "InvalidAuthenticationToken"}}',
            {},
            SEND_URL,
            GraphError,
        ),
        (500, b"<html>oops</html>", {}, SEND_URL, MessageMayHaveBeenSent),
        (502, b"", {}, SEND_URL, MessageMayHaveBeenSent),
        (400, b'{"error": {"code": "InvalidRequest"}}', {}, UPLOAD_URL, GraphError),
        (500, b"not json", {}, UPLOAD_URL, GraphError),
    ],
)
def test_a_graph_response_is_explained_without_its_token_or_url(
    status: int,
    content: bytes,
    headers: dict[str, str],
    url: str,
    expected: type[Exception],
) -> None:
    response = graph_response(status, content, headers, url)

    error = graph_errors.refusal(
        response, mailbox=MAILBOX, sender=TEAM, refreshed=True, sends=url == SEND_URL
    )

    assert type(error) is expected
    assert error.mailbox == MAILBOX
    assert_tells_no_secret(error)
    if expected is Throttled:
        assert error.retry_after == 3.0


def broken(reason: Exception, url: str = UPLOAD_URL) -> requests.ConnectionError:
    """requests' error for a connection that failed, quoting the URL as it does."""
    return requests.ConnectionError(
        urllib3.exceptions.MaxRetryError(None, url, reason=reason)
    )


NEVER_CONNECTED = broken(urllib3.exceptions.NewConnectionError(None, "refused"))


@pytest.mark.parametrize(
    ("error", "never_sent"),
    [
        pytest.param(NEVER_CONNECTED, True, id="no-connection"),
        pytest.param(
            requests.ConnectTimeout(f"{UPLOAD_URL} timed out"),
            True,
            id="connect-timeout",
        ),
        pytest.param(
            requests.ReadTimeout(f"{UPLOAD_URL} timed out"), False, id="read-timeout"
        ),
        pytest.param(
            broken(urllib3.exceptions.ProtocolError("reset")), False, id="reset"
        ),
        pytest.param(requests.ConnectionError(), False, id="no-args"),
        pytest.param(requests.ConnectionError("text only"), False, id="text"),
    ],
)
def test_a_request_that_never_connected_is_told_apart(
    error: requests.RequestException, never_sent: bool
) -> None:
    assert _never_sent(error) is never_sent


@pytest.mark.parametrize(
    ("raised", "sends", "expected", "fields", "phrases"),
    [
        pytest.param(
            requests.exceptions.SSLError(f"{UPLOAD_URL}: certificate verify failed"),
            True,
            GraphError,
            {"status": 0, "code": "tls"},
            ("its certificate was not trusted", "CA_BUNDLE"),
            id="untrusted",
        ),
        pytest.param(
            requests.exceptions.SSLError(f"{UPLOAD_URL}: EOF in violation"),
            True,
            MessageMayHaveBeenSent,
            {"status": 0, "code": "SSLError"},
            GRAPH_MAY_HAVE_SENT,
            id="tls-broke-while-sending",
        ),
        pytest.param(
            requests.exceptions.SSLError(f"{UPLOAD_URL}: EOF in violation"),
            False,
            ConnectionError,
            {},
            ("(SSLError); nothing was sent",),
            id="tls-broke-before-sending",
        ),
        pytest.param(
            requests.ReadTimeout(f"{UPLOAD_URL} read timed out"),
            True,
            MessageMayHaveBeenSent,
            {"status": 0, "code": "ReadTimeout"},
            GRAPH_MAY_HAVE_SENT,
            id="answer-lost-while-sending",
        ),
        pytest.param(
            broken(urllib3.exceptions.ProtocolError("reset")),
            False,
            ConnectionError,
            {},
            ("(ConnectionError); nothing was sent",),
            id="answer-lost-before-sending",
        ),
    ],
)
def test_a_broken_graph_request_is_explained_without_its_url(
    raised: Exception,
    sends: bool,
    expected: type[Exception],
    fields: dict[str, Any],
    phrases: tuple[str, ...],
) -> None:
    with pytest.raises(expected) as caught, _explained_transport_errors(MAILBOX, sends):
        raise raised

    error = caught.value
    assert type(error) is expected
    assert {name: getattr(error, name) for name in fields} == fields
    assert_says(error, MAILBOX, *phrases)
    assert_tells_no_secret(error)
    assert error.__cause__ is None and error.__suppress_context__


@pytest.mark.parametrize("raised", [NEVER_CONNECTED, requests.ConnectTimeout("x")])
def test_a_request_that_never_left_is_an_oserror_keeping_no_request(
    raised: requests.RequestException,
) -> None:
    """The backend retries an OSError; requests' own would keep the request,
    its Authorization header included, and pickle it."""
    raised.request = requests.Request("POST", UPLOAD_URL).prepare()
    with (
        pytest.raises(ConnectionError) as caught,
        _explained_transport_errors(MAILBOX, sends=True),
    ):
        raise raised
    error = caught.value
    assert type(error) is ConnectionError
    assert_says(error, MAILBOX, "nothing was sent")
    assert_tells_no_secret(error)
    assert UPLOAD_SECRET not in pickle.dumps(error).decode("latin-1")
    assert error.__cause__ is None and error.__suppress_context__


def test_an_error_not_from_requests_goes_on_as_it_was() -> None:
    raised = ValueError("not requests'")
    with (
        pytest.raises(ValueError) as caught,
        _explained_transport_errors(MAILBOX, sends=True),
    ):
        raise raised
    assert caught.value is raised


def test_lost_says_whether_the_message_may_have_gone() -> None:
    lost = requests.ReadTimeout(f"{UPLOAD_URL} read timed out")
    may = graph_errors.lost(MAILBOX, lost, sends=True)
    assert type(may) is MessageMayHaveBeenSent
    assert (may.status, may.code) == (0, "ReadTimeout")
    assert type(graph_errors.lost(MAILBOX, lost, sends=False)) is ConnectionError


@pytest.mark.parametrize(
    ("app", "phrases"),
    [
        (True, ("application permission Mail.ReadWrite", "RBAC scope")),
        (
            False,
            (
                "delegated Microsoft Graph permission Mail.ReadWrite",
                "LIVE_OAUTH_MAIL['GRAPH_SCOPES']",
                "link the mailbox again",
            ),
        ),
    ],
)
def test_a_refused_draft_says_which_permission_large_messages_need(
    app: bool, phrases: tuple[str, ...]
) -> None:
    refused = GraphError("no", mailbox=MAILBOX, status=403, code="ErrorAccessDenied")

    error = _needs_read_write(MAILBOX, refused, app)

    assert type(error) is GraphError
    assert (error.mailbox, error.status, error.code) == (
        MAILBOX,
        403,
        "ErrorAccessDenied",
    )
    assert_says(
        error, "4 MB request limit", "(ErrorAccessDenied)", "Nothing was sent", *phrases
    )
