"""Each failure Microsoft can report maps to an error that says what to do."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from django_live_oauth_mail.exceptions import (
    AppCredentialsError,
    IdentityPlatformUnavailable,
    ReconnectRequired,
    TokenError,
)
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount

from .standins import IdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize(
    ("code", "expected_type", "advice", "status_after"),
    [
        (70000, ReconnectRequired, "Link the mailbox again", "reconnect_required"),
        (700082, ReconnectRequired, "Link the mailbox again", "reconnect_required"),
        (50173, ReconnectRequired, "Link the mailbox again", "reconnect_required"),
        (50076, ReconnectRequired, "organisation policy", "reconnect_required"),
        (50079, ReconnectRequired, "organisation policy", "reconnect_required"),
        (53003, ReconnectRequired, "organisation policy", "reconnect_required"),
        (65001, ReconnectRequired, "admin consent", "reconnect_required"),
        (90094, ReconnectRequired, "admin consent", "reconnect_required"),
        (7000215, AppCredentialsError, "CLIENT_SECRET", "active"),
        (7000222, AppCredentialsError, "CLIENT_SECRET", "active"),
    ],
)
def test_refresh_failures(
    alice_account: MailAccount,
    identity_platform: IdentityPlatform,
    code: int,
    expected_type: type[TokenError],
    advice: str,
    status_after: str,
) -> None:
    error = "invalid_client" if code in {7000215, 7000222} else "invalid_grant"
    identity_platform.fail_next_token_requests(
        1,
        status=401 if error == "invalid_client" else 400,
        error=error,
        error_code=code,
    )
    with pytest.raises(expected_type) as caught:
        get_access_token(alice_account, force_refresh=True)
    assert advice in str(caught.value)
    assert caught.value.error_codes == [code]
    if expected_type is ReconnectRequired:
        assert "alice@outlook.com" in str(caught.value)
    assert MailAccount.objects.get(pk=alice_account.pk).status == status_after


@pytest.mark.parametrize("status", [500, 503, 429])
def test_platform_trouble_is_temporary(
    alice_account: MailAccount, identity_platform: IdentityPlatform, status: int
) -> None:
    identity_platform.fail_next_token_requests(
        3, status=status, body="<html><body>Service unavailable</body></html>"
    )
    with pytest.raises(IdentityPlatformUnavailable, match="try again in a moment"):
        get_access_token(alice_account, force_refresh=True)
    assert MailAccount.objects.get(pk=alice_account.pk).status == "active"


def exchange_failing_with(user: Any, platform: IdentityPlatform, **fault: Any) -> Any:
    client = Client()
    client.force_login(user)
    authorize = client.post("/mail/connect/")["Location"]
    answer = platform.approve(authorize, "alice@outlook.com")
    platform.fail_next_token_requests(1, **fault)
    return client.get(urlsplit(answer.url).path, dict(answer.params))


def test_personal_account_on_an_organisations_only_authority(
    user: Any, identity_platform: IdentityPlatform
) -> None:
    response = exchange_failing_with(
        user, identity_platform, status=400, error="invalid_request", error_code=50020
    )
    assert response.status_code == 400
    assert (
        "common" in response.content.decode()
        and "consumers" in response.content.decode()
    )
    assert not MailAccount.objects.exists()


def test_redirect_uri_mismatch_names_the_setting(
    user: Any, identity_platform: IdentityPlatform
) -> None:
    response = exchange_failing_with(
        user, identity_platform, status=400, error="invalid_request", error_code=50011
    )
    assert response.status_code == 400
    page = response.content.decode()
    assert "REDIRECT_URI" in page
    assert "http://testserver/mail/callback/" in page


def test_wrong_client_secret_during_linking(
    user: Any, identity_platform: IdentityPlatform
) -> None:
    response = exchange_failing_with(
        user, identity_platform, status=401, error="invalid_client", error_code=7000215
    )
    assert response.status_code == 400
    assert "CLIENT_SECRET" in response.content.decode()
