"""The identity platform's errors, read by the one function that reads them.

``msal_client.token_error`` turns msal's error dict into our exception; the
same answers arrive through msal and a real HTTPS stand-in in
test_error_messages.py and test_msal_client.py.
"""

from __future__ import annotations

import pytest

from django_live_oauth_mail import msal_client
from django_live_oauth_mail.exceptions import (
    AppCredentialsError,
    IdentityPlatformUnavailable,
    ReconnectRequired,
    TokenError,
)

pytestmark = pytest.mark.offline

MAILBOX = "ann@contoso.com"

CASES = [
    # (error, codes, expected type, words the message must hold)
    ("invalid_client", [7000215], AppCredentialsError, "CLIENT_SECRET"),
    ("unauthorized_client", [700016], AppCredentialsError, "users do not need"),
    ("invalid_grant", [65001], ReconnectRequired, "admin consent"),
    ("consent_required", [], ReconnectRequired, "admin consent"),
    ("invalid_grant", [700082], ReconnectRequired, "not used for 90 days"),
    ("invalid_grant", [70043], ReconnectRequired, "sign-in frequency"),
    ("invalid_grant", [50076], ReconnectRequired, "organisation policy"),
    ("interaction_required", [], ReconnectRequired, "organisation policy"),
    ("invalid_grant", [70000], ReconnectRequired, "expired or was revoked"),
    ("invalid_grant", [], ReconnectRequired, "expired or was revoked"),
    ("temporarily_unavailable", [], IdentityPlatformUnavailable, "temporarily"),
    ("server_error", [], IdentityPlatformUnavailable, "Try again"),
    ("invalid_scope", [70011], TokenError, "invalid_scope"),
]


@pytest.mark.parametrize(("error", "codes", "kind", "words"), CASES)
def test_each_platform_error_becomes_the_exception_that_says_what_to_do(
    error: str, codes: list[int], kind: type[TokenError], words: str
) -> None:
    result = {
        "error": error,
        "error_codes": codes,
        "error_description": f"AADSTS{codes[0] if codes else 0}: text.\r\nTrace: x",
    }
    explained = msal_client.token_error(result, mailbox=MAILBOX)

    assert type(explained) is kind
    assert words in str(explained)
    assert (explained.error, explained.error_codes) == (error, codes)
    assert explained.mailbox == MAILBOX
    assert "Trace" not in str(explained)  # only the description's first line


def test_a_result_with_nothing_in_it_still_gives_a_message() -> None:
    explained = msal_client.token_error({}, mailbox=None)
    assert type(explained) is TokenError
    assert str(explained) == (
        "Microsoft refused to issue a token for this mailbox: unknown_error "
        "(no details given)."
    )
