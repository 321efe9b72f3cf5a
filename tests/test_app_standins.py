"""App-only (client credentials) sending against the stand-ins, driven by msal.

The app authenticates with a secret or a certificate, an administrator's
consent creates its service principal and grants app roles. What Exchange
(FullAccess) and Graph (application access policy) then let the app-only
token do is tested through the app, in test_app_mailboxes.py.
"""

from __future__ import annotations

import base64
import functools
import json
import time
from collections.abc import Iterator
from typing import Any

import jwt
import msal
import pytest
import requests

from django_live_oauth_mail.testing import (
    ClientCertificate,
    FakeIdentity,
    FakeIdentityPlatform,
    make_client_certificate,
)

OUTLOOK = "https://outlook.office365.com"
BOB = "bob@contoso.com"
CAROL = "carol@contoso.com"
TENANT = FakeIdentity(BOB).tid
JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

pytestmark = pytest.mark.filterwarnings(
    # msal warns about /common and /organizations, which one test uses on purpose.
    "ignore:Using /common or /organizations authority:DeprecationWarning"
)


@pytest.fixture(scope="module")
def certificate() -> ClientCertificate:
    return make_client_certificate()


@pytest.fixture
def platform(certificate: ClientCertificate) -> Iterator[FakeIdentityPlatform]:
    with FakeIdentityPlatform([FakeIdentity(BOB), FakeIdentity(CAROL)]) as server:
        server.add_client_certificate(certificate.certificate_pem)
        yield server


def app(
    platform: FakeIdentityPlatform,
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
    platform: FakeIdentityPlatform, resource: str = OUTLOOK, **kwargs: Any
) -> dict[str, Any]:
    result: dict[str, Any] = app(platform, **kwargs).acquire_token_for_client(
        [f"{resource}/.default"]
    )
    return result


def claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(base64.urlsafe_b64decode(payload + "=="))
    return decoded


def refusal(result: dict[str, Any]) -> tuple[str, list[int]]:
    return result.get("error", ""), result.get("error_codes", [])


# -- identity platform -----------------------------------------------------------


def test_secret_gets_an_app_token_with_the_consented_roles(
    platform: FakeIdentityPlatform,
) -> None:
    platform.admin_consent(TENANT, f"{OUTLOOK}/SMTP.SendAsApp")
    client = app(platform)

    first = client.acquire_token_for_client([f"{OUTLOOK}/.default"])
    again = client.acquire_token_for_client([f"{OUTLOOK}/.default"])

    assert again["access_token"] == first["access_token"]  # msal's cache
    token = first["access_token"]
    assert "refresh_token" not in first
    body = claims(token)
    assert (body["aud"], body["tid"], body["appid"]) == (
        OUTLOOK,
        TENANT,
        platform.client_id,
    )
    assert (body["idtyp"], body["roles"], body["appidacr"]) == (
        "app",
        ["SMTP.SendAsApp"],
        "1",
    )
    assert body["oid"] == body["sub"] and "scp" not in body
    issued = platform.introspect(token)
    assert issued is not None and issued.app
    assert (issued.mailbox, issued.tenant, issued.app_id) == (
        "",
        TENANT,
        platform.client_id,
    )
    assert issued.scopes == {"SMTP.SendAsApp"}
    assert platform.validate_access_token(token) is None  # not a user's token
    [request] = platform.token_requests
    assert (request.grant_type, request.email, request.tenant, request.status) == (
        "client_credentials",
        None,
        TENANT,
        200,
    )
    assert request.scope == f"{OUTLOOK}/.default"
    assert request.client_id == platform.client_id


@pytest.mark.parametrize("by", ["thumbprint", "public_certificate"])
def test_certificate_credential_rs256_and_ps256(
    platform: FakeIdentityPlatform, certificate: ClientCertificate, by: str
) -> None:
    # A SHA-1 thumbprint makes msal sign RS256 (x5t); the certificate, PS256.
    value = (
        certificate.thumbprint if by == "thumbprint" else certificate.certificate_pem
    )
    credential = {"private_key": certificate.private_key_pem, by: value}
    platform.admin_consent(TENANT, f"{OUTLOOK}/SMTP.SendAsApp")

    result = app_token(platform, credential=credential)

    assert claims(result["access_token"])["appidacr"] == "2"
    [request] = platform.token_requests
    assert request.status == 200


def test_unknown_or_mismatched_certificate_is_invalid_client(
    platform: FakeIdentityPlatform, certificate: ClientCertificate
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


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"aud": "https://login.microsoftonline.com/x/oauth2/v2.0/token"}, 700023),
        ({"iss": "someone-else", "sub": "someone-else"}, 700021),
        ({"exp": time.time() - 60}, 700024),
    ],
)
def test_assertion_claims_are_checked(
    platform: FakeIdentityPlatform,
    certificate: ClientCertificate,
    change: dict[str, Any],
    code: int,
) -> None:
    platform.admin_consent(TENANT, "SMTP.SendAsApp")
    endpoint = f"{platform.base_url}/{TENANT}/oauth2/v2.0/token"
    claims_ = {"aud": endpoint, "iss": platform.client_id, "sub": platform.client_id}
    claims_ |= {"exp": time.time() + 600, "jti": "1", **change}
    x5t = base64.urlsafe_b64encode(bytes.fromhex(certificate.thumbprint)).decode()
    assertion = jwt.encode(
        claims_, certificate.private_key_pem, "RS256", headers={"x5t": x5t}
    )
    form = {
        "client_id": platform.client_id,
        "grant_type": "client_credentials",
        "scope": f"{OUTLOOK}/.default",
        "client_assertion_type": JWT_BEARER,
        "client_assertion": assertion,
    }

    response = requests.post(endpoint, form, verify=platform.ca_bundle, timeout=10)

    assert response.status_code == 401
    assert refusal(response.json()) == ("invalid_client", [code])


def test_service_principal_and_roles_come_from_admin_consent(
    platform: FakeIdentityPlatform,
) -> None:
    before = app_token(platform)
    platform.admin_consent(TENANT)  # the enterprise app, without roles
    without_roles = app_token(platform)

    assert refusal(before) == ("invalid_client", [7000229])
    assert (
        f"missing service principal in the tenant {TENANT}"
        in (before["error_description"])
    )
    assert "roles" not in claims(without_roles["access_token"])
    assert [r.status for r in platform.token_requests] == [401, 200]


def test_tenant_and_scope_are_checked(platform: FakeIdentityPlatform) -> None:
    platform.admin_consent(TENANT, "SMTP.SendAsApp")
    common = app_token(platform, tenant="common")
    organizations = app_token(platform, tenant="organizations")
    delegated = app(platform).acquire_token_for_client([f"{OUTLOOK}/SMTP.Send"])

    assert refusal(common) == ("invalid_request", [9001023])
    assert refusal(organizations) == ("invalid_request", [50059])
    assert refusal(delegated) == ("invalid_scope", [1002012])
    assert [r.tenant for r in platform.token_requests] == [
        "common",
        "organizations",
        TENANT,
    ]
