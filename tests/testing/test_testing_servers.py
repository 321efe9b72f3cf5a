"""Real-socket tests of the fake Microsoft servers in the testing package.

No Django and no database: MSAL, ``requests`` and ``smtplib`` talk to the
servers over TLS that is verified against the throwaway test CA.
"""

from __future__ import annotations

import functools
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


def test_smtp_requires_starttls_before_auth(fake: FakeIdentityPlatform) -> None:
    with (
        XOAuth2SMTPServer(fake) as smtp,
        smtplib.SMTP(smtp.host, smtp.port, timeout=5) as client,
    ):
        client.ehlo()
        assert "auth" not in client.esmtp_features
        assert client.docmd("AUTH", "XOAUTH2 abc")[0] == 530
        client.starttls(context=ssl.create_default_context(cafile=smtp.ca_bundle))
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
