"""Real-socket tests of the fake Microsoft servers in the testing package.

No Django and no database: MSAL, ``requests`` and ``smtplib`` talk to the
servers over TLS that is verified against the throwaway test CA.
"""

from __future__ import annotations

import base64
import functools
import logging
import smtplib
import socket
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
    FakeIdentity,
    FakeIdentityPlatform,
    XOAuth2SMTPServer,
    find_free_port,
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
