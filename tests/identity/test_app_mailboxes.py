"""App-only mailboxes: the app sends as noreply@ with its own token.

No person links them: the tenant granted the app a role (admin consent) and
access to the mailbox. The stand-ins issue client-credential tokens per
tenant and accept them only for mailboxes granted to the app.
"""

from __future__ import annotations

import io
import uuid
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command

from django_live_oauth_mail.exceptions import AppConsentRequired, TokenRejected
from django_live_oauth_mail.identity.accounts import add_app_mailbox
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import (
    FakeGraphAPI,
    FakeIdentityPlatform,
    XOAuth2SMTPServer,
    make_client_certificate,
)

pytestmark = pytest.mark.django_db(transaction=True)

NOREPLY = "noreply@contoso.com"
CLIENT_ID = "test-client-id"
SMTP_ROLE = "https://outlook.office365.com/SMTP.SendAsApp"


@pytest.fixture
def tenant() -> str:
    """A tenant of its own per test: consent given in one never leaks."""
    return str(uuid.uuid4())


@pytest.fixture
def noreply(
    tenant: str, identity_platform: FakeIdentityPlatform, smtp_server: XOAuth2SMTPServer
) -> MailAccount:
    """Registered, consented to SMTP.SendAsApp, and granted FullAccess."""
    identity_platform.admin_consent(tenant, SMTP_ROLE)
    smtp_server.app_access[CLIENT_ID] = {NOREPLY}
    return add_app_mailbox(NOREPLY, tenant)[0]


def client_credentials(platform: FakeIdentityPlatform) -> list[Any]:
    return [r for r in platform.token_requests if r.grant_type == "client_credentials"]


def test_an_app_mailbox_sends_over_smtp_with_no_person_linked(
    noreply: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    assert noreply.user is None and noreply.shared
    # No acting user: any code may send from an app mailbox.
    assert mail.send_mail("Receipt", "Thanks.", NOREPLY, ["ann@example.org"]) == 1

    (received,) = smtp_server.messages
    assert received.authenticated_as == NOREPLY
    assert received.rcpt_tos == ["ann@example.org"]


def test_one_token_request_serves_many_sends_and_names_the_tenant(
    noreply: MailAccount,
    tenant: str,
    identity_platform: FakeIdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["SESSION_REUSE"] = False  # each send signs in again
    identity_platform.reset()

    for number in range(5):
        mail.send_mail(f"m{number}", "Body", NOREPLY, ["ann@example.org"])

    assert len(smtp_server.messages) == 5
    assert smtp_server.sessions == 5
    (request,) = client_credentials(identity_platform)
    assert request.tenant == tenant
    assert request.scope.split() == ["https://outlook.office365.com/.default"]
    assert identity_platform.token_requests == [request]


def test_an_app_mailbox_sends_over_graph(
    tenant: str,
    identity_platform: FakeIdentityPlatform,
    graph_server: FakeGraphAPI,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["TRANSPORT"] = "graph"
    identity_platform.admin_consent(tenant, f"{graph_server.endpoint}/Mail.Send")
    graph_server.app_access[CLIENT_ID] = {NOREPLY}
    add_app_mailbox(NOREPLY, tenant)

    message = mail.EmailMessage(
        "Receipt", "Thanks.", NOREPLY, ["ann@example.org"], bcc=["audit@example.org"]
    )
    assert message.send() == 1

    (received,) = graph_server.messages
    assert received.authenticated_as == NOREPLY
    assert sorted(received.rcpt_tos) == ["ann@example.org", "audit@example.org"]
    assert ("POST", f"/v1.0/users/{NOREPLY}/sendMail") in graph_server.requests
    (request,) = client_credentials(identity_platform)
    assert request.scope == f"{graph_server.endpoint}/.default"
    assert smtp_server.auth_attempts == []


def test_a_mailbox_not_granted_to_the_app_says_how_to_grant_it(
    noreply: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    smtp_server.app_access.clear()  # no FullAccess (or no service principal)

    with pytest.raises(TokenRejected) as caught:
        mail.send_mail("Receipt", "Thanks.", NOREPLY, ["ann@example.org"])

    text = str(caught.value)
    assert "535 5.7.3" in text
    assert f"New-ServicePrincipal -AppId {CLIENT_ID}" in text
    assert f"Add-MailboxPermission -Identity {NOREPLY}" in text
    assert "-AccessRights FullAccess" in text
    assert smtp_server.messages == []


def test_a_graph_mailbox_outside_the_apps_scope_names_the_scope_to_grant(
    tenant: str,
    identity_platform: FakeIdentityPlatform,
    graph_server: FakeGraphAPI,
    live_settings: dict[str, Any],
) -> None:
    live_settings["TRANSPORT"] = "graph"
    identity_platform.admin_consent(tenant, f"{graph_server.endpoint}/Mail.Send")
    add_app_mailbox(NOREPLY, tenant)  # not in graph_server.app_access

    with pytest.raises(Exception, match="ErrorAccessDenied") as caught:
        mail.send_mail("Receipt", "Thanks.", NOREPLY, ["ann@example.org"])

    assert "New-ManagementRoleAssignment" in str(caught.value)
    assert graph_server.messages == []


def test_a_tenant_without_the_app_gives_the_admin_consent_url(
    tenant: str, identity_platform: FakeIdentityPlatform
) -> None:
    add_app_mailbox(NOREPLY, tenant)  # the tenant never consented

    with pytest.raises(AppConsentRequired) as caught:
        mail.send_mail("Receipt", "Thanks.", NOREPLY, ["ann@example.org"])

    assert caught.value.error_codes == [7000229]
    url = f"{identity_platform.base_url}/{tenant}/adminconsent?client_id={CLIENT_ID}"
    assert url in str(caught.value)


def test_a_token_without_the_role_is_refused_before_use(
    tenant: str,
    identity_platform: FakeIdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    identity_platform.admin_consent(tenant)  # a service principal, no roles
    smtp_server.app_access[CLIENT_ID] = {NOREPLY}
    add_app_mailbox(NOREPLY, tenant)

    with pytest.raises(AppConsentRequired) as caught:
        mail.send_mail("Receipt", "Thanks.", NOREPLY, ["ann@example.org"])

    assert "lacks the SMTP.SendAsApp application permission" in str(caught.value)
    assert "adminconsent?client_id=" in str(caught.value)
    assert smtp_server.auth_attempts == []  # checked before the server saw it

    # Once the administrator consents, the next send works: the token
    # without the role was not kept.
    identity_platform.admin_consent(tenant, SMTP_ROLE)
    assert mail.send_mail("Receipt", "Thanks.", NOREPLY, ["ann@example.org"]) == 1
    assert [m.authenticated_as for m in smtp_server.messages] == [NOREPLY]


def test_certificate_credentials_work(
    noreply: MailAccount,
    identity_platform: FakeIdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    certificate = make_client_certificate()
    identity_platform.add_client_certificate(certificate.certificate_pem)
    live_settings["CLIENT_SECRET"] = ""  # so only the certificate can sign in
    live_settings["CLIENT_CERTIFICATE"] = {
        "private_key": certificate.private_key_pem,
        "thumbprint": certificate.thumbprint,
    }

    assert mail.send_mail("Receipt", "Thanks.", NOREPLY, ["ann@example.org"]) == 1

    assert [r.status for r in client_credentials(identity_platform)] == [200]
    assert [m.authenticated_as for m in smtp_server.messages] == [NOREPLY]


def test_add_app_command_registers_and_test_command_sends(
    tenant: str,
    identity_platform: FakeIdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    identity_platform.admin_consent(tenant, SMTP_ROLE)
    smtp_server.app_access[CLIENT_ID] = {NOREPLY}
    out = io.StringIO()

    call_command(
        "live_oauth_mail",
        "add-app",
        "NoReply@Contoso.com",
        "--tenant",
        tenant,
        stdout=out,
    )
    call_command(
        "live_oauth_mail", "test", NOREPLY, "--to", "me@example.org", stdout=out
    )
    call_command("live_oauth_mail", "status", stdout=out)

    output = out.getvalue()
    assert f"Registered {NOREPLY} as an app mailbox in tenant {tenant}" in output
    for step in ("token", "tcp", "starttls", "auth", "send"):
        assert f"ok   {step}" in output
    assert "(app)" in output and "App (client credentials)" in output
    account = MailAccount.objects.get()
    assert (account.user, account.kind, account.shared) == (None, "app", True)
    assert [m.rcpt_tos for m in smtp_server.messages] == [["me@example.org"]]


@pytest.mark.offline
@pytest.mark.parametrize(
    "tenant", ["common", "organizations", "", "contoso.com?x=1#", "not a tenant"]
)
def test_only_a_tenant_id_or_domain_is_a_tenant(tenant: str) -> None:
    with pytest.raises(ValueError, match="is not a tenant"):
        add_app_mailbox(NOREPLY, tenant)
    assert add_app_mailbox(NOREPLY, "contoso.onmicrosoft.com")[0].tenant_id == (
        "contoso.onmicrosoft.com"
    )


def test_under_auto_an_app_mailbox_set_to_graph_needs_no_smtp_role(
    tenant: str,
    identity_platform: FakeIdentityPlatform,
    graph_server: FakeGraphAPI,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["TRANSPORT"] = "auto"  # people's mail goes through SMTP
    identity_platform.admin_consent(tenant, f"{graph_server.endpoint}/Mail.Send")
    graph_server.app_access[CLIENT_ID] = {NOREPLY}
    add_app_mailbox(NOREPLY, tenant)
    call_command("live_oauth_mail", "transport", NOREPLY, "graph", stdout=io.StringIO())

    assert mail.send_mail("Receipt", "Thanks.", NOREPLY, ["ann@example.org"]) == 1

    assert [m.mechanism for m in smtp_server.messages] == ["graph"]
    assert smtp_server.auth_attempts == []
