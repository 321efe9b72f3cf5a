"""Real-socket tests of the fake Microsoft servers in the testing package.

No Django and no database: MSAL, ``requests`` and ``smtplib`` talk to the
servers over TLS that is verified against the throwaway test CA.
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import smtplib
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from email.message import EmailMessage
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


def xoauth2(user: str, token: str) -> str:
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def message(sender: str = BOB, subject: str = "Hello") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = f"Bob <{sender}>"
    msg["To"] = "carol@example.org"
    msg["Subject"] = subject
    msg.set_content("Hi Carol,\nthis came through XOAUTH2.\n")
    msg.add_attachment(
        b"\x00\x01binary", maintype="application", subtype="pdf", filename="report.pdf"
    )
    return msg


def connect(server: XOAuth2SMTPServer) -> smtplib.SMTP:
    client = smtplib.SMTP(server.host, server.port, timeout=5)
    client.starttls(context=server.certificate.client_context())
    client.ehlo()
    return client


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
def smtp(fake: FakeIdentityPlatform) -> Iterator[XOAuth2SMTPServer]:
    with XOAuth2SMTPServer(
        fake,
        smtp_auth_disabled=["disabled@contoso.com"],
        submission_quota_exceeded=["quota@contoso.com"],
    ) as server:
        yield server


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


def test_smtp_xoauth2_send(smtp: XOAuth2SMTPServer, bob_token: str) -> None:
    assert len(bob_token) >= 1000  # longer than aiosmtpd's default line limit
    with connect(smtp) as client:
        assert client.has_extn("auth")
        assert client.esmtp_features["auth"].split() == ["XOAUTH2"]
        code, reply = client.auth("XOAUTH2", lambda _=None: xoauth2(BOB, bob_token))
        assert (code, reply) == (235, b"2.7.0 Authentication successful")
        client.send_message(message())

    [received] = smtp.wait_for_messages(1)
    assert received.authenticated_as == BOB
    assert received.mechanism == "XOAUTH2"
    assert received.mail_from == BOB
    assert received.rcpt_tos == ["carol@example.org"]
    assert received.subject == "Hello"
    assert received.text == "Hi Carol,\nthis came through XOAUTH2.\n"
    assert received.attachments == [("report.pdf", b"\x00\x01binary")]
    assert smtp.sessions == 1
    [attempt] = smtp.auth_attempts
    assert (attempt.user, attempt.success, attempt.session_id) == (BOB, True, 1)


def test_smtp_xoauth2_challenge_variant(
    smtp: XOAuth2SMTPServer, bob_token: str
) -> None:
    with connect(smtp) as client:
        code, _ = client.auth(
            "XOAUTH2", lambda _=None: xoauth2(BOB, bob_token), initial_response_ok=False
        )
        assert code == 235


@pytest.mark.parametrize(
    ("user", "expected"),
    [
        (BOB, "5.7.3 Authentication unsuccessful"),  # token expired server-side
        (ALICE, "5.7.3 Authentication unsuccessful"),  # token is Bob's
        ("disabled@contoso.com", "5.7.139 Authentication unsuccessful"),
    ],
)
def test_smtp_auth_rejections(
    fake: FakeIdentityPlatform,
    smtp: XOAuth2SMTPServer,
    bob_token: str,
    user: str,
    expected: str,
) -> None:
    if user == BOB:
        fake.expire_access_tokens()
    with connect(smtp) as client, pytest.raises(smtplib.SMTPAuthenticationError) as err:
        client.auth("XOAUTH2", lambda _=None: xoauth2(user, bob_token))
    assert err.value.smtp_code == 535
    assert err.value.smtp_error.decode().startswith(expected)
    assert smtp.auth_attempts[-1].success is False


def test_smtp_rules_can_change_while_running(
    smtp: XOAuth2SMTPServer, bob_token: str
) -> None:
    smtp.smtp_auth_disabled.add(BOB.upper())
    with connect(smtp) as client, pytest.raises(smtplib.SMTPAuthenticationError):
        client.auth("XOAUTH2", lambda _=None: xoauth2(BOB, bob_token))
    smtp.smtp_auth_disabled.clear()
    smtp.enforce_send_as = False
    with connect(smtp) as client:
        client.auth("XOAUTH2", lambda _=None: xoauth2(BOB, bob_token))
        client.send_message(message(), from_addr="shared@contoso.com")
    assert smtp.messages[0].mail_from == "shared@contoso.com"


def test_smtp_malformed_xoauth2(smtp: XOAuth2SMTPServer) -> None:
    with connect(smtp) as client:
        client.ehlo()
        code, reply = client.docmd("AUTH", "XOAUTH2 bm90LXhvYXV0aDI=")
    assert (code, reply) == (501, b"5.5.2 Cannot Decode response")


def test_smtp_send_as_denied_and_quota(
    fake: FakeIdentityPlatform, smtp: XOAuth2SMTPServer, bob_token: str
) -> None:
    with connect(smtp) as client:
        client.auth("XOAUTH2", lambda _=None: xoauth2(BOB, bob_token))
        with pytest.raises(smtplib.SMTPDataError) as err:
            client.send_message(message(), from_addr="ceo@contoso.com")
    assert err.value.smtp_code == 554
    assert err.value.smtp_error.decode().startswith(
        f"5.2.252 SendAsDenied; {BOB} not allowed to send as ceo@contoso.com"
    )

    fake.add_identity(FakeIdentity("quota@contoso.com"))
    quota_token = sign_in(fake, confidential_app(fake), "quota@contoso.com")
    with connect(smtp) as client:
        client.auth(
            "XOAUTH2",
            lambda _=None: xoauth2("quota@contoso.com", quota_token["access_token"]),
        )
        with pytest.raises(smtplib.SMTPDataError, match="SubmissionQuotaExceeded"):
            client.send_message(message(sender="quota@contoso.com"))
    assert smtp.messages == []


def test_smtp_requires_starttls_and_auth(smtp: XOAuth2SMTPServer) -> None:
    with smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client:
        client.ehlo()
        assert "auth" not in client.esmtp_features
        assert client.docmd("AUTH", "XOAUTH2 abc")[0] == 530
        client.starttls(context=smtp.certificate.client_context())
        client.ehlo()
        code, reply = client.mail(BOB)
    assert (code, reply) == (530, b"5.7.57 Client not authenticated to send mail.")


def test_smtp_password_auth_only_when_configured(smtp: XOAuth2SMTPServer) -> None:
    with connect(smtp) as client:
        client.ehlo()
        assert client.docmd("AUTH", "LOGIN")[0:2] == (
            504,
            b"5.7.4 Unrecognized authentication type",
        )

    passwords = {BOB: "hunter2"}
    with XOAuth2SMTPServer(passwords=passwords) as server, connect(server) as client:
        client.ehlo()
        assert sorted(client.esmtp_features["auth"].split()) == [
            "LOGIN",
            "PLAIN",
            "XOAUTH2",
        ]
        with pytest.raises(smtplib.SMTPAuthenticationError) as err:
            client.login(BOB, "wrong")
        assert err.value.smtp_code == 535
        assert client.login(BOB, "hunter2")[0] == 235
        client.send_message(message())
        [received] = server.wait_for_messages(1)
        assert received.mechanism in ("LOGIN", "PLAIN")


def test_smtp_custom_validator_and_huge_token() -> None:
    token = "t" * 10_000
    with XOAuth2SMTPServer({token: BOB}.get) as server, connect(server) as client:
        assert client.auth("XOAUTH2", lambda _=None: xoauth2(BOB, token))[0] == 235


def test_smtp_fault_injection(smtp: XOAuth2SMTPServer, bob_token: str) -> None:
    smtp.fail_next(stage="connect")
    with pytest.raises(smtplib.SMTPConnectError) as err:
        smtplib.SMTP(smtp.host, smtp.port, timeout=5)
    assert err.value.smtp_code == 421

    smtp.fail_next(stage="data", reply="451 4.7.500 Server busy. Please try again.")
    smtp.fail_next(stage="auth", disconnect=True)
    with connect(smtp) as client, pytest.raises(smtplib.SMTPServerDisconnected):
        client.auth("XOAUTH2", lambda _=None: xoauth2(BOB, bob_token))

    with connect(smtp) as client:
        client.auth("XOAUTH2", lambda _=None: xoauth2(BOB, bob_token))
        with pytest.raises(smtplib.SMTPDataError) as data_err:
            client.send_message(message())
        assert data_err.value.smtp_code == 451
        client.send_message(message(subject="retried"))  # same connection works

    assert [m.subject for m in smtp.messages] == ["retried"]
    assert smtp.sessions == 3
    smtp.reset()
    assert (smtp.sessions, smtp.messages, smtp.auth_attempts) == (0, [], [])


def test_wait_for_messages_times_out(smtp: XOAuth2SMTPServer) -> None:
    with pytest.raises(TimeoutError):
        smtp.wait_for_messages(1, timeout=0.05)


def test_no_credentials_in_logs(
    fake: FakeIdentityPlatform,
    smtp: XOAuth2SMTPServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    app = confidential_app(fake)
    result = sign_in(fake, app, BOB)
    token = result["access_token"]
    secrets = [token, result["refresh_token"]]
    for initial_response_ok in (True, False):
        with connect(smtp) as client:
            client.auth(
                "XOAUTH2",
                lambda _=None: xoauth2(BOB, token),
                initial_response_ok=initial_response_ok,
            )
            client.send_message(message())
    with connect(smtp) as client:
        client.ehlo()
        client.docmd("AUTH", "XOAUTH2")
        client.docmd(f"Bearer {token}")  # not base64: aiosmtpd would log it

    payload = base64.b64encode(xoauth2(BOB, token).encode()).decode()
    secrets += [payload, token[:40], token[-40:]]
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert "AUTH XOAUTH2 ********" in logged  # aiosmtpd did log the command
    for secret in secrets:
        assert secret not in logged


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
