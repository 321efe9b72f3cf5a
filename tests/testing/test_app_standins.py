"""App-only (client credentials) sending against the stand-ins, driven by msal.

The app authenticates with a secret or a certificate, an administrator's
consent creates its service principal and grants app roles. What Exchange
(FullAccess) and Graph (application access policy) then let the app-only
token do is tested through the app, in test_app_mailboxes.py.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import msal
import pytest
import requests

from django_live_oauth_mail.testing import (
    ClientCertificate,
    FakeIdentity,
    make_client_certificate,
)

from ..standins import IdentityPlatform

OUTLOOK = "https://outlook.office365.com"
BOB = "bob@contoso.com"
CAROL = "carol@contoso.com"
TENANT = FakeIdentity(BOB).tid


@pytest.fixture(scope="module")
def certificate() -> ClientCertificate:
    return make_client_certificate()


@pytest.fixture
def platform(certificate: ClientCertificate) -> Iterator[IdentityPlatform]:
    with IdentityPlatform([FakeIdentity(BOB), FakeIdentity(CAROL)]) as server:
        server.add_client_certificate(certificate.certificate_pem)
        yield server


def app(
    platform: IdentityPlatform,
    credential: str | dict[str, str] = "test-client-secret",
    tenant: str = TENANT,
) -> msal.ConfidentialClientApplication:
    session = requests.Session()
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, verify=platform.ca_bundle, timeout=10
    )
    return msal.ConfidentialClientApplication(
        platform.client_id,
        client_credential=credential,
        authority=f"{platform.base_url}/{tenant}",
        instance_discovery=False,
        http_client=session,
    )


def app_token(
    platform: IdentityPlatform, resource: str = OUTLOOK, **kwargs: Any
) -> dict[str, Any]:
    result: dict[str, Any] = app(platform, **kwargs).acquire_token_for_client(
        [f"{resource}/.default"]
    )
    return result


def refusal(result: dict[str, Any]) -> tuple[str, list[int]]:
    return result.get("error", ""), result.get("error_codes", [])


# -- identity platform -----------------------------------------------------------


def test_unknown_or_mismatched_certificate_is_invalid_client(
    platform: IdentityPlatform, certificate: ClientCertificate
) -> None:
    platform.admin_consent(TENANT, "SMTP.SendAsApp")
    stranger = make_client_certificate()
    unknown = {
        "private_key": stranger.private_key_pem,
        "thumbprint": stranger.thumbprint,
    }
    forged = {
        "private_key": stranger.private_key_pem,
        "thumbprint": certificate.thumbprint,
    }

    for credential, reason in [(unknown, "key was not found"), (forged, "signature")]:
        result = app_token(platform, credential=credential)
        assert refusal(result) == ("invalid_client", [700027])
        assert reason in result["error_description"]
    assert [r.status for r in platform.token_requests] == [401, 401]
