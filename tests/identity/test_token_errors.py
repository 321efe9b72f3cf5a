"""The identity platform's errors, read by identity/errors.py's mapping functions.

``token_error`` turns msal's error dict into the exception that says what to
do; ``app_error`` and ``flow_error`` do so for app tokens and sign-ins, and
``unavailable`` for a platform that did not answer. Each row is a dict as
msal returns it, with fake tokens beside the error that must never show. No
sockets: the same answers arrive through msal and the HTTPS stand-in in
test_error_messages.py, test_msal_client.py and test_app_mailboxes.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

from django_live_oauth_mail.exceptions import (
    AppConsentRequired,
    AppCredentialsError,
    AuthorizationDeclined,
    AuthorizationFailed,
    ConsentRequired,
    IdentityPlatformUnavailable,
    ReconnectRequired,
    TokenError,
)
from django_live_oauth_mail.identity import errors, linking, wording

from ..helpers import (
    ACCESS_TOKEN,
    AUTH_CODE,
    DEVICE_CODE,
    REFRESH_TOKEN,
    assert_says,
    assert_tells_no_secret,
)

pytestmark = pytest.mark.offline


MAILBOX = "ann@contoso.com"
APP_ID = "11111111-2222-3333-4444-555555555555"
TENANT = "contoso.onmicrosoft.com"


@pytest.fixture(autouse=True)
def pinned_settings(settings: Any) -> None:
    """The settings these mappers read, pinned whatever other fixtures set."""
    settings.LIVE_OAUTH_MAIL = {
        **settings.LIVE_OAUTH_MAIL,
        "CLIENT_ID": APP_ID,
        "AUTHORITY": "https://login.microsoftonline.com/common",
        "GRAPH_ENDPOINT": "https://graph.microsoft.com",
        "GRAPH_SCOPES": ["Mail.Send"],
    }


def platform_result(
    error: str | None, codes: list[Any] | None, description: str | None
) -> dict[str, Any]:
    """msal's error dict, with fakes of what must never be shown beside it."""
    return {
        "error": error,
        "error_codes": codes,
        "error_description": description,
        "correlation_id": "c0ffee",
        "access_token": ACCESS_TOKEN,
        "refresh_token": REFRESH_TOKEN,
        "device_code": DEVICE_CODE,
        "code": AUTH_CODE,
    }


def aadsts(code: int, text: str = "Something happened.") -> str:
    return (
        f"AADSTS{code}: {text}\r\nTrace ID: 0000\r\nCorrelation ID: c0ffee\r\n"
        "Timestamp: 2026-11-29 12:00:00Z"
    )


SECRET_ADVICE = ("create a new client secret", "CLIENT_SECRET", "users do not need")
PUBLIC_CLIENT_ADVICE = ("Allow public client flows", "users do not need")
ADMIN_CONSENT = ("A tenant administrator must grant admin consent", "link the mailbox")
GRAPH_CONSENT = ("Mail.Send on Microsoft Graph", "only through SMTP", "(re-link)")
EXPIRED = ("has expired or was revoked", "Link the mailbox again")
POLICY = ("organisation policy", "Conditional Access", "Link the mailbox again")
NINETY_DAYS = ("not used for 90 days", "refresh`, at least once a month")
FREQUENCY = ("sign-in frequency", "exclude the app from that policy")
PLATFORM_DOWN = ("temporarily unavailable", "Try again in a moment")
GRAPH = ["https://graph.microsoft.com/Mail.Send"]
SMTP = ["https://outlook.office.com/SMTP.Send"]

# (error, codes, scopes, expected class, phrases). A row about a code gives an
# error that alone would map elsewhere (invalid_request alone is a plain
# TokenError), so the code is what the row tests.
PLATFORM_ERRORS = [
    ("invalid_request", [7000215], None, AppCredentialsError, SECRET_ADVICE),
    ("invalid_request", [7000222], None, AppCredentialsError, SECRET_ADVICE),
    ("invalid_request", [700016], None, AppCredentialsError, SECRET_ADVICE),
    ("invalid_request", [50012], None, AppCredentialsError, SECRET_ADVICE),
    ("invalid_client", [], None, AppCredentialsError, SECRET_ADVICE),
    ("invalid_client", [7000215], None, AppCredentialsError, SECRET_ADVICE),
    ("invalid_request", [7000218], None, AppCredentialsError, PUBLIC_CLIENT_ADVICE),
    ("invalid_client", [7000218], None, AppCredentialsError, PUBLIC_CLIENT_ADVICE),
    ("invalid_grant", [65001], None, ReconnectRequired, ADMIN_CONSENT),
    ("invalid_grant", [65004], SMTP, ReconnectRequired, ADMIN_CONSENT),
    ("invalid_grant", [90094], None, ReconnectRequired, ADMIN_CONSENT),
    ("invalid_grant", [90095], None, ReconnectRequired, ADMIN_CONSENT),
    ("consent_required", [], None, ReconnectRequired, ADMIN_CONSENT),
    ("invalid_grant", [65001], GRAPH, ConsentRequired, GRAPH_CONSENT),
    ("invalid_grant", [65004], GRAPH, ConsentRequired, GRAPH_CONSENT),
    ("invalid_grant", [90094], GRAPH, ConsentRequired, GRAPH_CONSENT),
    ("invalid_grant", [90095], GRAPH, ConsentRequired, GRAPH_CONSENT),
    ("consent_required", [], GRAPH, ConsentRequired, GRAPH_CONSENT),
    ("invalid_grant", [700082], None, ReconnectRequired, NINETY_DAYS),
    ("invalid_grant", [70043], None, ReconnectRequired, FREQUENCY),
    ("invalid_request", [50076], None, ReconnectRequired, POLICY),
    ("invalid_request", [50079], None, ReconnectRequired, POLICY),
    ("invalid_request", [53003], None, ReconnectRequired, POLICY),
    ("invalid_request", [50158], None, ReconnectRequired, POLICY),
    ("invalid_request", [50072], None, ReconnectRequired, POLICY),
    ("invalid_request", [53000], None, ReconnectRequired, POLICY),
    ("invalid_request", [50074], None, ReconnectRequired, POLICY),
    ("interaction_required", [], None, ReconnectRequired, POLICY),
    ("invalid_request", [70000], None, ReconnectRequired, EXPIRED),
    ("invalid_request", [70008], None, ReconnectRequired, EXPIRED),
    ("invalid_request", [700084], None, ReconnectRequired, EXPIRED),
    ("invalid_request", [50173], None, ReconnectRequired, EXPIRED),
    ("invalid_request", [50133], None, ReconnectRequired, EXPIRED),
    ("invalid_request", [50078], None, ReconnectRequired, EXPIRED),
    ("invalid_grant", [], None, ReconnectRequired, EXPIRED),
    ("invalid_grant", [70000], None, ReconnectRequired, EXPIRED),
    ("temporarily_unavailable", [], None, IdentityPlatformUnavailable, PLATFORM_DOWN),
    ("server_error", [], None, IdentityPlatformUnavailable, PLATFORM_DOWN),
    ("invalid_scope", [70011], None, TokenError, ("invalid_scope",)),
    ("invalid_request", [90014], None, TokenError, ("invalid_request",)),
    # Which wins when the platform gives more than one reason.
    ("invalid_client", [65001], GRAPH, AppCredentialsError, SECRET_ADVICE),
    (
        "invalid_grant",
        [7000218, 65001],
        None,
        AppCredentialsError,
        PUBLIC_CLIENT_ADVICE,
    ),
    ("invalid_grant", [700082, 65001], None, ReconnectRequired, ADMIN_CONSENT),
    ("invalid_grant", [50076, 700082], None, ReconnectRequired, NINETY_DAYS),
    ("invalid_grant", [70043, 700082], None, ReconnectRequired, FREQUENCY),
    ("invalid_grant", [70000, 50076], None, ReconnectRequired, POLICY),
    ("server_error", [70000], None, ReconnectRequired, EXPIRED),
]


@pytest.mark.parametrize(
    ("error", "codes", "scopes", "expected", "phrases"), PLATFORM_ERRORS
)
def test_each_platform_error_becomes_the_exception_that_says_what_to_do(
    error: str,
    codes: list[int],
    scopes: list[str] | None,
    expected: type[TokenError],
    phrases: tuple[str, ...],
) -> None:
    description = aadsts(codes[0] if codes else 0)
    result = platform_result(error, codes, description)

    explained = errors.token_error(result, mailbox=MAILBOX, scopes=scopes)

    assert type(explained) is expected
    assert (explained.mailbox, explained.error, explained.error_codes) == (
        MAILBOX,
        error,
        codes,
    )
    assert explained.description == description.splitlines()[0]
    assert_says(explained, explained.description, *phrases)
    # The app's credentials and the platform's outage are no one mailbox's.
    if expected not in (AppCredentialsError, IdentityPlatformUnavailable):
        assert MAILBOX in str(explained)
    assert "Trace ID" not in str(explained)
    assert_tells_no_secret(explained)


@pytest.mark.parametrize(
    ("result", "error", "codes", "description"),
    [
        pytest.param({}, "unknown_error", [], "no details given", id="empty"),
        pytest.param(
            {"error": None, "error_codes": None, "error_description": None},
            "unknown_error",
            [],
            "no details given",
            id="nones",
        ),
        pytest.param(
            {"error": "", "error_description": "\r\n  \r\n"},
            "unknown_error",
            [],
            "no details given",
            id="blank",
        ),
        pytest.param(
            {"error": "odd", "error_codes": ["x", None, -5, 3.5, True, "007"]},
            "odd",
            [7],
            "no details given",
            id="garbage-codes",
        ),
        pytest.param(
            {"error": "odd", "error_description": 12345},
            "odd",
            [],
            "12345",
            id="numeric-description",
        ),
    ],
)
def test_a_result_with_little_or_nothing_in_it_still_gives_a_message(
    result: dict[str, Any], error: str, codes: list[int], description: str
) -> None:
    explained = errors.token_error(result, mailbox=None)

    assert type(explained) is TokenError
    assert (explained.error, explained.error_codes, explained.description) == (
        error,
        codes,
        description,
    )
    assert str(explained) == (
        f"Microsoft refused to issue a token for this mailbox: {error} ({description})."
    )


def test_codes_given_as_text_are_read_as_numbers() -> None:
    result = platform_result("invalid_grant", ["70000", "junk"], aadsts(70000))
    explained = errors.token_error(result, mailbox=MAILBOX)
    assert type(explained) is ReconnectRequired
    assert explained.error_codes == [70000]
    assert_says(explained, *EXPIRED)


def test_a_grant_error_reads_exactly() -> None:
    explained = errors.token_error(
        platform_result("invalid_grant", [70000], "AADSTS70000: The grant is invalid."),
        mailbox=MAILBOX,
    )
    assert str(explained) == (
        f"The sign-in for {MAILBOX} has expired or was revoked "
        "(AADSTS70000: The grant is invalid.). Link the mailbox again."
    )


@pytest.mark.parametrize(
    ("result", "expected", "codes", "phrases"),
    [
        pytest.param(
            platform_result("invalid_grant", [7000229], aadsts(7000229)),
            AppConsentRequired,
            [7000229],
            (
                f"no service principal in tenant {TENANT}",
                f"send as {MAILBOX}",
                f"https://login.microsoftonline.com/{TENANT}/adminconsent?client_id={APP_ID}",
            ),
            id="no-service-principal",
        ),
        pytest.param(
            platform_result("invalid_grant", ["7000229", "x"], None),
            AppConsentRequired,
            [7000229],
            ("(no details given)",),
            id="codes-as-text",
        ),
        pytest.param(
            platform_result("invalid_client", [7000215], aadsts(7000215)),
            AppCredentialsError,
            [7000215],
            SECRET_ADVICE,
            id="bad-secret",
        ),
        pytest.param(
            platform_result("unauthorized_client", [700016], aadsts(700016)),
            AppCredentialsError,
            [700016],
            SECRET_ADVICE,
            id="unknown-app",
        ),
        pytest.param(
            platform_result("temporarily_unavailable", [], None),
            IdentityPlatformUnavailable,
            [],
            PLATFORM_DOWN,
            id="platform-down",
        ),
        pytest.param(
            platform_result("invalid_scope", [1002012], aadsts(1002012)),
            TokenError,
            [1002012],
            ("invalid_scope",),
            id="other",
        ),
    ],
)
def test_an_app_token_refusal_says_who_must_grant_what(
    result: dict[str, Any],
    expected: type[TokenError],
    codes: list[int],
    phrases: tuple[str, ...],
) -> None:
    explained = errors.app_error(result, TENANT, MAILBOX)

    assert type(explained) is expected
    assert (explained.mailbox, explained.error, explained.error_codes) == (
        MAILBOX,
        result["error"],
        codes,
    )
    assert_says(explained, *phrases)
    assert_tells_no_secret(explained)


REDIRECT_URI = "https://app.example/mail/callback/"
TRY_AGAIN = ("Microsoft did not accept the sign-in", "Please try again.")


@pytest.mark.parametrize(
    ("error", "codes", "redirect_uri", "expected", "phrases"),
    [
        pytest.param(
            "invalid_request",
            [50020],
            REDIRECT_URI,
            AuthorizationFailed,
            ("https://login.microsoftonline.com/common", "(or /consumers)"),
            id="personal-account-on-organisations",
        ),
        pytest.param(
            "invalid_request",
            [50020, 50011],
            REDIRECT_URI,
            AuthorizationFailed,
            ("LIVE_OAUTH_MAIL['AUTHORITY']",),
            id="50020-first",
        ),
        pytest.param(
            "invalid_request",
            [50011],
            REDIRECT_URI,
            AuthorizationFailed,
            (
                f"The redirect URI {REDIRECT_URI} is not registered",
                "LIVE_OAUTH_MAIL['REDIRECT_URI']",
            ),
            id="redirect-uri",
        ),
        pytest.param(
            "invalid_request",
            [50011],
            None,
            AuthorizationFailed,
            ("The redirect URI (unknown) is not registered",),
            id="redirect-unknown",
        ),
        pytest.param(
            "invalid_grant",
            [70000],
            REDIRECT_URI,
            AuthorizationFailed,
            TRY_AGAIN,
            id="code-spent",
        ),
        pytest.param(
            "invalid_grant",
            [70008],
            None,
            AuthorizationFailed,
            TRY_AGAIN,
            id="code-expired",
        ),
        pytest.param(
            "interaction_required",
            [50076],
            None,
            AuthorizationFailed,
            TRY_AGAIN,
            id="policy",
        ),
        pytest.param(
            "invalid_grant",
            [],
            None,
            AuthorizationFailed,
            TRY_AGAIN,
            id="grant",
        ),
        pytest.param(
            "invalid_grant",
            [65001],
            None,
            ReconnectRequired,
            ADMIN_CONSENT,
            id="consent-code",
        ),
        pytest.param(
            "consent_required",
            [],
            None,
            ReconnectRequired,
            ADMIN_CONSENT,
            id="consent-error",
        ),
        pytest.param(
            "invalid_client",
            [7000215],
            None,
            AppCredentialsError,
            SECRET_ADVICE,
            id="bad-secret",
        ),
        pytest.param(
            "invalid_client",
            [7000218],
            None,
            AppCredentialsError,
            PUBLIC_CLIENT_ADVICE,
            id="device-code-without-public-client-flows",
        ),
        pytest.param(
            "server_error",
            [],
            None,
            IdentityPlatformUnavailable,
            PLATFORM_DOWN,
            id="platform-down",
        ),
        pytest.param(
            "invalid_request",
            [90014],
            None,
            TokenError,
            ("this mailbox: invalid_request",),
            id="other",
        ),
        pytest.param(
            None,
            None,
            None,
            TokenError,
            ("unknown_error (no details given)",),
            id="nothing",
        ),
    ],
)
def test_a_failed_sign_in_becomes_the_page_that_says_what_to_do(
    error: str | None,
    codes: list[int] | None,
    redirect_uri: str | None,
    expected: type[Exception],
    phrases: tuple[str, ...],
) -> None:
    description = aadsts(codes[0]) if codes else None
    result = platform_result(error, codes, description)

    explained = errors.flow_error(result, redirect_uri=redirect_uri)

    assert type(explained) is expected
    assert explained.mailbox is None
    assert_says(explained, *phrases)
    if description:
        assert description.splitlines()[0] in str(explained)
    assert "Trace ID" not in str(explained)
    assert_tells_no_secret(explained)


@pytest.mark.parametrize(
    ("answer", "expected", "message"),
    [
        pytest.param(
            {"error": "access_denied", "error_description": aadsts(65004, "Declined.")},
            AuthorizationDeclined,
            "You cancelled the sign-in, so no mailbox was linked. You can try again "
            "whenever you like.",
            id="cancelled",
        ),
        pytest.param(
            {"error": "server_error", "error_description": "\r"},
            AuthorizationFailed,
            "(server_error): no details given",
            id="blank-description",
        ),
        pytest.param(
            {"error": "invalid_request", "error_description": aadsts(900144, "No.")},
            AuthorizationFailed,
            "(invalid_request): AADSTS900144: No.",
            id="first-line-only",
        ),
        pytest.param(
            {"error": "consent_required"},
            AuthorizationFailed,
            "(consent_required): no details given",
            id="no-description",
        ),
    ],
)
def test_an_error_in_the_sign_in_answer_is_explained_before_any_request(
    answer: dict[str, str], expected: type[Exception], message: str
) -> None:
    flow = {"state": "s", "redirect_uri": REDIRECT_URI, "code_verifier": REFRESH_TOKEN}
    answer = {**answer, "state": "s", "code": AUTH_CODE}

    with pytest.raises(AuthorizationFailed) as caught:
        linking.finish_link(flow, answer)

    assert type(caught.value) is expected
    if expected is AuthorizationFailed:
        message = f"Microsoft sign-in ended with an error {message}"
    assert str(caught.value) == message
    assert_tells_no_secret(caught.value)


@pytest.mark.parametrize(
    ("error", "expected", "phrases"),
    [
        pytest.param(
            "authorization_declined",
            AuthorizationDeclined,
            ("declined; no mailbox was linked",),
            id="declined",
        ),
        pytest.param(
            "access_denied",
            AuthorizationDeclined,
            ("declined; no mailbox was linked",),
            id="denied",
        ),
        pytest.param(
            "expired_token",
            AuthorizationFailed,
            ("device code expired", "Run the command again"),
            id="expired",
        ),
        pytest.param(
            "invalid_grant",
            AuthorizationFailed,
            ("did not accept the sign-in", "try again"),
            id="as-the-code-flow",
        ),
    ],
)
def test_a_failed_device_code_sign_in_says_what_to_do(
    error: str, expected: type[Exception], phrases: tuple[str, ...]
) -> None:
    result = {"error": error, "error_description": aadsts(70000, "Bad grant.")}

    explained = errors.device_error(result)

    assert type(explained) is expected
    assert_says(explained, *phrases)
    assert_tells_no_secret(explained)


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.url = f"https://login.example/token?refresh_token={REFRESH_TOKEN}"
    return requests.HTTPError(f"{status} for url: {response.url}", response=response)


@pytest.mark.parametrize(
    ("error", "what"),
    [
        pytest.param(http_error(503), "HTTP 503", id="http-status"),
        pytest.param(
            requests.ConnectionError(f"refused: refresh_token={REFRESH_TOKEN}"),
            "ConnectionError",
            id="no-response",
        ),
        pytest.param(
            json.JSONDecodeError("Expecting value", f"<html>{ACCESS_TOKEN}", 0),
            "JSONDecodeError",
            id="html-page",
        ),
        pytest.param(
            msal.exceptions.MsalServiceError(
                error="server_error", error_description=ACCESS_TOKEN
            ),
            "MsalServiceError",
            id="msal",
        ),
    ],
)
def test_an_unreachable_platform_names_only_the_kind_of_failure(
    error: BaseException, what: str
) -> None:
    explained = errors.unavailable(MAILBOX, error)

    assert type(explained) is IdentityPlatformUnavailable
    assert (explained.mailbox, explained.error) == (MAILBOX, "unavailable")
    assert_says(explained, f"not answering properly ({what})", "try again in a moment")
    assert_tells_no_secret(explained)


def test_every_row_of_the_wording_is_raised_somewhere() -> None:
    """A row no code names is wording no one can meet: delete it with its cause."""
    identity = Path(wording.__file__).parent
    code = "".join(
        path.read_text() for path in identity.glob("*.py") if path.name != "wording.py"
    )
    rows = [
        *wording.TOKEN_REFUSALS,
        *wording.SIGN_IN_FAILURES,
        *wording.MISCONFIGURATIONS,
    ]

    assert [row for row in rows if f'"{row}"' not in code] == []
