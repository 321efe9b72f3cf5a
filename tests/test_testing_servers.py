"""Real-socket tests of the fake Microsoft servers in the testing package.

No Django and no database: MSAL, ``requests`` and ``smtplib`` talk to the
servers over TLS that is verified against the throwaway test CA.
"""

from __future__ import annotations

import functools
import json
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
import requests

from django_live_oauth_mail.testing import (
    PERSONAL_TENANT_ID,
    ConsentPageError,
    FakeIdentity,
    FakeIdentityPlatform,
    XOAuth2SMTPServer,
    find_free_port,
    make_test_certificate,
)

SMTP_SEND = "https://outlook.office.com/SMTP.Send"
REDIRECT_URI = "https://app.test/oauth/callback"
ALICE = "alice@outlook.com"
BOB = "bob@contoso.com"

pytestmark = pytest.mark.filterwarnings(
    # MSAL nags about response_mode; some tests use the query mode on purpose.
    "ignore:response_mode='form_post' is recommended:UserWarning"
)


# -- helpers -----------------------------------------------------------------


def http_client(ca_bundle: str) -> requests.Session:
    # REQUESTS_CA_BUNDLE would override Session.verify; per-request verify wins.
    session = requests.Session()
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, verify=ca_bundle, timeout=10
    )
    return session


def confidential_app(
    fake: FakeIdentityPlatform, secret: str = "test-client-secret"
) -> msal.ConfidentialClientApplication:
    return msal.ConfidentialClientApplication(
        fake.client_id,
        client_credential=secret,
        authority=fake.authority,
        instance_discovery=False,
        http_client=http_client(fake.ca_bundle),
    )


def sign_in(
    fake: FakeIdentityPlatform,
    app: msal.ClientApplication,
    email: str,
    response_mode: str = "form_post",
) -> dict[str, Any]:
    flow = app.initiate_auth_code_flow(
        [SMTP_SEND],
        redirect_uri=REDIRECT_URI,
        login_hint=email,
        response_mode=response_mode,
    )
    response = fake.approve(flow["auth_uri"], email)
    result: dict[str, Any] = app.acquire_token_by_auth_code_flow(flow, response.params)
    return result


# -- fixtures ----------------------------------------------------------------


@pytest.fixture
def fake() -> Iterator[FakeIdentityPlatform]:
    identities = [
        FakeIdentity(ALICE, name="Alice", kind="personal", email_claim=False),
        FakeIdentity(BOB, name="Bob Builder"),
    ]
    with FakeIdentityPlatform(identities) as platform:
        yield platform


@pytest.fixture
def bob_token(fake: FakeIdentityPlatform) -> str:
    token: str = sign_in(fake, confidential_app(fake), BOB)["access_token"]
    return token


# -- certificates and ports --------------------------------------------------


def test_certificate_is_cached_and_verifiable() -> None:
    certificate = make_test_certificate()
    assert make_test_certificate() is certificate
    assert make_test_certificate(["127.0.0.1", "localhost"]) is certificate
    context = certificate.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname
    with open(certificate.cert_path) as chain:
        assert chain.read().count("BEGIN CERTIFICATE") == 2


def test_find_free_port_is_bindable() -> None:
    port = find_free_port()
    assert 0 < port < 65536
    # Free means a server can take it now, and what it took is then in use.
    with socket.create_server(("127.0.0.1", port)) as server:
        assert server.getsockname()[1] == port
        with pytest.raises(OSError):
            socket.create_server(("127.0.0.1", port)).close()


def test_servers_move_off_a_taken_port_only_if_auto_picked() -> None:
    platform = FakeIdentityPlatform()
    squatter = socket.create_server((platform.host, platform.port))
    with squatter, platform:
        assert platform.port != squatter.getsockname()[1]
        assert platform.authority.endswith(f":{platform.port}/common")
        with pytest.raises(OSError):
            FakeIdentityPlatform(port=platform.port).start()


# -- identity platform with MSAL -------------------------------------------------


def test_auth_code_flow_with_msal(fake: FakeIdentityPlatform) -> None:
    result = sign_in(fake, confidential_app(fake), BOB)

    assert result["token_type"] == "Bearer"
    assert result["scope"] == SMTP_SEND
    assert len(result["access_token"]) >= 1000
    assert result["access_token"].count(".") == 2  # work accounts: JWT look-alike
    claims = result["id_token_claims"]
    assert claims["email"] == claims["preferred_username"] == BOB
    assert claims["name"] == "Bob Builder"
    assert claims["aud"] == fake.client_id
    assert claims["iss"] == f"{fake.base_url}/{claims['tid']}/v2.0"
    assert fake.validate_access_token(result["access_token"]) == BOB
    assert fake.requests[:3] == [
        ("GET", "/common/v2.0/.well-known/openid-configuration"),
        ("GET", "/common/oauth2/v2.0/authorize"),
        ("POST", "/common/oauth2/v2.0/authorize"),
    ]
    [request] = fake.token_requests
    assert (request.grant_type, request.email, request.status) == (
        "authorization_code",
        BOB,
        200,
    )


def test_sign_in_pages_over_plain_http_for_demos() -> None:
    with FakeIdentityPlatform(
        [FakeIdentity(BOB, name="Bob Builder")], pages_over_http=True
    ) as fake:
        app = confidential_app(fake)
        flow = app.initiate_auth_code_flow([SMTP_SEND], redirect_uri=REDIRECT_URI)
        assert flow["auth_uri"].startswith(fake.pages_url + "/common/oauth2/v2.0/")
        assert fake.pages_url.startswith("http://") and fake.authority.startswith(
            "https"
        )
        response = fake.approve(flow["auth_uri"], BOB)
        result = app.acquire_token_by_auth_code_flow(flow, response.params)
        assert fake.validate_access_token(result["access_token"]) == BOB


def test_personal_account_tokens(fake: FakeIdentityPlatform) -> None:
    result = sign_in(fake, confidential_app(fake), ALICE)

    assert result["access_token"].startswith("EwB")
    assert len(result["access_token"]) >= 1000
    claims = result["id_token_claims"]
    assert claims["tid"] == PERSONAL_TENANT_ID
    assert "email" not in claims  # email_claim=False
    assert claims["preferred_username"] == ALICE


def test_refresh_rotates_and_revoke_invalidates(fake: FakeIdentityPlatform) -> None:
    app = confidential_app(fake)
    first = sign_in(fake, app, BOB)
    [account] = app.get_accounts(username=BOB)

    refreshed = app.acquire_token_silent_with_error(
        [SMTP_SEND], account, force_refresh=True
    )
    assert refreshed["token_source"] == "identity_provider"
    assert refreshed["access_token"] != first["access_token"]

    reused = app.acquire_token_by_refresh_token(first["refresh_token"], [SMTP_SEND])
    assert reused["error"] == "invalid_grant"
    assert reused["error_codes"] == [70000]
    assert reused["error_description"].startswith("AADSTS70000:")

    fake.revoke(BOB, error_code=700082)
    revoked = app.acquire_token_silent_with_error(
        [SMTP_SEND], account, force_refresh=True
    )
    assert revoked["error"] == "invalid_grant"
    assert revoked["error_codes"] == [700082]
    assert [r.status for r in fake.token_requests] == [200, 200, 400, 400]


def test_revoke_with_mfa_code_carries_suberror(fake: FakeIdentityPlatform) -> None:
    app = confidential_app(fake)
    sign_in(fake, app, BOB)
    fake.revoke(BOB, error_code=50076)
    [account] = app.get_accounts()
    result = app.acquire_token_silent_with_error(
        [SMTP_SEND], account, force_refresh=True
    )
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [50076]
    assert result["suberror"] == "basic_action"


def test_short_access_token_lifetime_makes_msal_refresh(
    fake: FakeIdentityPlatform,
) -> None:
    fake.access_token_lifetime = 60  # MSAL refreshes with < 5 minutes left
    app = confidential_app(fake)
    sign_in(fake, app, BOB)
    [account] = app.get_accounts()
    result = app.acquire_token_silent_with_error([SMTP_SEND], account)
    assert result["token_source"] == "identity_provider"
    assert result["expires_in"] == 60


def test_pkce_mismatch_and_code_reuse_rejected(fake: FakeIdentityPlatform) -> None:
    app = confidential_app(fake)
    flow = app.initiate_auth_code_flow(
        [SMTP_SEND], redirect_uri=REDIRECT_URI, response_mode="form_post"
    )
    response = fake.approve(flow["auth_uri"], BOB)

    tampered = dict(flow, code_verifier="x" * 43)
    result = app.acquire_token_by_auth_code_flow(tampered, response.params)
    assert result["error"] == "invalid_grant"
    assert result["error_codes"] == [501481]

    assert "access_token" in app.acquire_token_by_auth_code_flow(flow, response.params)
    again = app.acquire_token_by_auth_code_flow(flow, response.params)
    assert again["error_codes"] == [54005]


def test_wrong_client_secret_is_invalid_client(fake: FakeIdentityPlatform) -> None:
    result = sign_in(fake, confidential_app(fake, secret="nope"), BOB)
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert fake.token_requests[-1].status == 401


def test_query_response_mode_and_decline(fake: FakeIdentityPlatform) -> None:
    app = confidential_app(fake)
    flow = app.initiate_auth_code_flow([SMTP_SEND], redirect_uri=REDIRECT_URI)

    declined = fake.decline(flow["auth_uri"])
    assert declined.response_mode == "query"
    assert declined.error == "access_denied"
    assert declined.params["error_description"].startswith("AADSTS65004: User declined")
    assert declined.params["state"] == flow["state"]
    assert declined.url.startswith(REDIRECT_URI + "?error=access_denied")

    approved = fake.approve(flow["auth_uri"], BOB)
    assert approved.redirect_uri == REDIRECT_URI
    assert approved.code
    result = app.acquire_token_by_auth_code_flow(flow, approved.params)
    assert result["id_token_claims"]["email"] == BOB


def test_consent_page_lists_identities_and_preselects_hint(
    fake: FakeIdentityPlatform,
) -> None:
    flow = confidential_app(fake).initiate_auth_code_flow(
        [SMTP_SEND], redirect_uri=REDIRECT_URI, login_hint=ALICE
    )
    page = http_client(fake.ca_bundle).get(flow["auth_uri"]).text
    assert f'data-identity="{ALICE}"' in page
    assert f'data-identity="{BOB}"' in page
    assert 'id="decline"' in page
    assert "Personal account (Outlook.com)" in page
    assert "Work or school account" in page
    assert 'selected" aria-current="true"' in page
    assert SMTP_SEND in page


def test_bad_authorize_requests_render_error_page(fake: FakeIdentityPlatform) -> None:
    flow = confidential_app(fake).initiate_auth_code_flow(
        [SMTP_SEND], redirect_uri=REDIRECT_URI
    )
    with pytest.raises(ConsentPageError) as wrong_client:
        fake.approve(flow["auth_uri"].replace("test-client-id", "other"), BOB)
    assert wrong_client.value.status == 400
    assert "AADSTS700016" in wrong_client.value.message

    no_pkce = flow["auth_uri"].replace("code_challenge_method=S256", "")
    with pytest.raises(ConsentPageError, match="Proof Key"):
        fake.approve(no_pkce, BOB)


def test_tenant_authority_refuses_other_account_kinds() -> None:
    identities = [FakeIdentity(BOB)]
    with FakeIdentityPlatform(identities, tenant="consumers") as fake:
        flow = confidential_app(fake).initiate_auth_code_flow(
            [SMTP_SEND], redirect_uri=REDIRECT_URI
        )
        with pytest.raises(ConsentPageError, match="AADSTS50020"):
            fake.approve(flow["auth_uri"], BOB)


def test_device_code_flow(fake: FakeIdentityPlatform) -> None:
    fake.device_code_interval = 1
    app = msal.PublicClientApplication(
        fake.client_id,
        authority=fake.authority,
        instance_discovery=False,
        http_client=http_client(fake.ca_bundle),
    )
    flow = app.initiate_device_flow([SMTP_SEND])
    assert flow["user_code"] in flow["message"]

    pending = app.acquire_token_by_device_flow(flow, exit_condition=lambda _: True)
    assert pending["error"] == "authorization_pending"

    fake.approve_device_code(flow["user_code"], ALICE)
    flow["latest_attempt_at"] = 0  # we waited "long enough"
    result = app.acquire_token_by_device_flow(flow)
    assert fake.validate_access_token(result["access_token"]) == ALICE
    assert app.get_accounts()[0]["username"] == ALICE


def test_device_login_page(fake: FakeIdentityPlatform) -> None:
    client = http_client(fake.ca_bundle)
    flow = client.post(
        f"{fake.authority}/oauth2/v2.0/devicecode",
        data={"client_id": fake.client_id, "scope": f"{SMTP_SEND} offline_access"},
    ).json()
    page = client.get(flow["verification_uri"])
    assert page.status_code == 200 and f'data-identity="{BOB}"' in page.text
    wrong = client.post(
        flow["verification_uri"], data={"user_code": "NOPE", "identity": BOB}
    )
    assert wrong.status_code == 400
    right = client.post(
        flow["verification_uri"],
        data={"user_code": flow["user_code"].lower(), "identity": BOB},
    )
    assert right.status_code == 200
    token = client.post(
        f"{fake.authority}/oauth2/v2.0/token",
        data={
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": fake.client_id,
            "device_code": flow["device_code"],
        },
    ).json()
    assert fake.validate_access_token(token["access_token"]) == BOB
    assert "refresh_token" in token and "id_token" not in token  # no openid scope


def test_token_endpoint_fault_injection(fake: FakeIdentityPlatform) -> None:
    client = http_client(fake.ca_bundle)
    token_url = f"{fake.authority}/oauth2/v2.0/token"
    form = {"grant_type": "refresh_token", "client_id": fake.client_id}
    fake.fail_next_token_requests(status=503, body="<html>Service Unavailable</html>")
    fake.fail_next_token_requests(status=429, headers={"Retry-After": "7"})

    outage = client.post(token_url, data=form)
    assert outage.status_code == 503
    assert outage.headers["Content-Type"].startswith("text/html")

    throttled = client.post(token_url, data=form)
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "7"
    assert throttled.json()["error"] == "temporarily_unavailable"

    normal = client.post(token_url, data=form)
    assert normal.json()["error_codes"] == [900144]  # missing refresh_token
    assert [r.status for r in fake.token_requests] == [503, 429, 400]

    fake.reset()
    assert fake.token_requests == [] and fake.requests == []


def test_expire_access_tokens(fake: FakeIdentityPlatform, bob_token: str) -> None:
    assert fake.validate_access_token(bob_token) == BOB
    fake.expire_access_tokens(BOB)
    assert fake.validate_access_token(bob_token) is None
    assert fake.validate_access_token("made-up") is None


# -- SMTP server -------------------------------------------------------------


def test_smtp_requires_starttls_before_auth(fake: FakeIdentityPlatform) -> None:
    with (
        XOAuth2SMTPServer(fake) as smtp,
        smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client,
    ):
        client.ehlo()
        assert "auth" not in client.esmtp_features
        assert client.docmd("AUTH", "XOAUTH2 abc")[0] == 530
        client.starttls(context=smtp.certificate.client_context())
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["XOAUTH2"]
        assert client.mail(BOB)[0] == 530  # AUTH before MAIL, too
    assert (smtp.sessions, smtp.auth_attempts, smtp.messages) == (1, [], [])


def test_identity_part_imports_without_aiosmtpd() -> None:
    script = (
        "import sys; sys.modules['aiosmtpd'] = None\n"
        "import django_live_oauth_mail.testing as t\n"
        "assert t.FakeIdentityPlatform and t.make_test_certificate\n"
        "try:\n"
        "    t.XOAuth2SMTPServer\n"
        "except ImportError as e:\n"
        "    print(e)\n"
        "assert 'django' not in sys.modules\n"
    )
    output = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        cwd=str(Path(__file__).resolve().parents[1]),
    ).stdout
    assert 'pip install "django-live-oauth-mail[testing]"' in output


def test_openid_configuration_document(fake: FakeIdentityPlatform) -> None:
    url = f"{fake.base_url}/organizations/v2.0/.well-known/openid-configuration"
    config = json.loads(http_client(fake.ca_bundle).get(url).text)
    assert config["issuer"] == f"{fake.base_url}/{{tenantid}}/v2.0"
    assert config["token_endpoint"] == (
        f"{fake.base_url}/organizations/oauth2/v2.0/token"
    )
    assert config["device_authorization_endpoint"].endswith("/devicecode")
