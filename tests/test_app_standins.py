"""App-only (client credentials) sending against the stand-ins, driven by msal.

The app authenticates with a secret or a certificate, an administrator's
consent creates its service principal and grants app roles, and Exchange
(FullAccess) or Graph (application access policy) decide which mailboxes the
app-only token may use.
"""

from __future__ import annotations

import base64
import functools
import smtplib
from collections.abc import Iterator
from email.message import EmailMessage
from typing import Any

import msal
import pytest
import requests

from django_live_oauth_mail.testing import (
    ClientCertificate,
    FakeGraphAPI,
    FakeIdentity,
    FakeIdentityPlatform,
    XOAuth2SMTPServer,
    make_client_certificate,
)

OUTLOOK = "https://outlook.office365.com"
BOB = "bob@contoso.com"
CAROL = "carol@contoso.com"
TENANT = FakeIdentity(BOB).tid

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


def refusal(result: dict[str, Any]) -> tuple[str, list[int]]:
    return result.get("error", ""), result.get("error_codes", [])


def xoauth2(user: str, token: str) -> str:
    return f"user={user}\x01auth=Bearer {token}\x01\x01"


def smtp_login(server: XOAuth2SMTPServer, user: str, token: str) -> smtplib.SMTP:
    client = smtplib.SMTP(server.host, server.port, timeout=5)
    client.starttls(context=server.certificate.client_context())
    client.ehlo()
    client.auth("XOAUTH2", lambda _=None: xoauth2(user, token))
    return client


def graph_post(graph: FakeGraphAPI, path: str, token: str) -> requests.Response:
    message = EmailMessage()
    message["To"] = "dave@example.org"
    message["Subject"] = "App-only"
    message.set_content("Sent by the app.\n")
    return requests.post(
        f"{graph.endpoint}/v1.0/{path}",
        base64.b64encode(message.as_bytes()),
        headers={"Content-Type": "text/plain", "Authorization": f"Bearer {token}"},
        verify=graph.ca_bundle,
        timeout=10,
    )


# -- identity platform -----------------------------------------------------------


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


# -- SMTP and Graph ----------------------------------------------------------------


def test_smtp_takes_app_tokens_for_mailboxes_with_full_access(
    platform: FakeIdentityPlatform,
) -> None:
    platform.admin_consent(TENANT, f"{OUTLOOK}/SMTP.SendAsApp")
    token = app_token(platform)["access_token"]
    with XOAuth2SMTPServer(platform) as smtp:
        smtp.app_access[platform.client_id] = {"Bob@Contoso.com"}
        with smtp_login(smtp, BOB, token) as client:
            client.sendmail(BOB, ["dave@example.org"], b"Subject: hi\r\n\r\nhi\r\n")
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp_login(smtp, CAROL, token)

    [message] = smtp.messages
    assert (message.authenticated_as, message.mechanism) == (BOB, "XOAUTH2")
    assert refused.value.smtp_code == 535
    assert refused.value.smtp_error.startswith(b"5.7.3 Authentication unsuccessful")


def test_smtp_needs_the_send_as_app_role_and_outlooks_audience(
    platform: FakeIdentityPlatform,
) -> None:
    platform.admin_consent(TENANT)
    without_role = app_token(platform)["access_token"]
    platform.admin_consent(TENANT, "https://graph.microsoft.com/Mail.Send")
    for_graph = app_token(platform, "https://graph.microsoft.com")["access_token"]
    with XOAuth2SMTPServer(platform) as smtp:
        smtp.app_access[platform.client_id] = {BOB}
        for token in (without_role, for_graph):
            with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
                smtp_login(smtp, BOB, token)
            assert refused.value.smtp_code == 535


def test_graph_users_routes_take_app_tokens_within_the_access_policy(
    platform: FakeIdentityPlatform,
) -> None:
    with FakeGraphAPI(platform, certificate=platform.certificate) as graph:
        platform.admin_consent(TENANT, f"{graph.endpoint}/Mail.Send")
        token = app_token(platform, graph.endpoint)["access_token"]
        outlook = app_token(platform)["access_token"]
        graph.app_access[platform.client_id] = {BOB}

        sent = graph_post(graph, f"users/{BOB}/sendMail", token)
        outside = graph_post(graph, f"users/{CAROL}/sendMail", token)
        draft = graph_post(graph, f"users/{BOB}/messages", token)
        me = graph_post(graph, "me/sendMail", token)
        wrong_audience = graph_post(graph, f"users/{BOB}/sendMail", outlook)

    assert sent.status_code == 202
    [message] = graph.messages
    assert (message.authenticated_as, message.mail_from) == (BOB, BOB)
    assert (outside.status_code, outside.json()["error"]["code"]) == (
        403,
        "ErrorAccessDenied",
    )
    assert "AppOnly AccessPolicy" in outside.json()["error"]["message"]
    assert (draft.status_code, draft.json()["error"]["code"]) == (
        403,
        "ErrorAccessDenied",
    )  # drafts need Mail.ReadWrite
    assert (me.status_code, me.json()["error"]["code"]) == (400, "BadRequest")
    assert wrong_audience.status_code == 401
