"""Fixtures: real local stand-ins for Microsoft, and linked mailboxes.

The identity platform and SMTP server start once per session and are reset
before each test; msal's process-wide application cache is reset too, so a
fault injected in one test can never be replayed into the next.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

import django_live_oauth_mail
from django_live_oauth_mail import sending_as
from django_live_oauth_mail.identity import applications
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.sending.sessions import POOL
from django_live_oauth_mail.testing import FakeIdentity

from . import refuse_checkout
from .mailers import BACKEND, USES_MAILERS
from .standins import GraphStandIn, IdentityPlatform, SMTPStandIn

refuse_checkout(django_live_oauth_mail.__file__)

#: Offline tests' endpoints: nothing listens on port 1 on this machine.
CLOSED_PORT = 1

IDENTITIES = [
    FakeIdentity("alice@outlook.com", name="Alice Personal", kind="personal"),
    FakeIdentity("bob@contoso.com", name="Bob Work", kind="work"),
    FakeIdentity(
        "carol@contoso.com", name="Carol NoEmailClaim", kind="work", email_claim=False
    ),
    FakeIdentity("dave@fabrikam.com", name="Dave Work", kind="work"),
]


@pytest.fixture(scope="session")
def _identity_platform() -> Iterator[IdentityPlatform]:
    with IdentityPlatform(
        IDENTITIES, client_id="test-client-id", client_secret="test-client-secret"
    ) as platform:
        yield platform


@pytest.fixture(scope="session")
def _smtp_server(_identity_platform: IdentityPlatform) -> Iterator[SMTPStandIn]:
    with SMTPStandIn(_identity_platform) as server:
        yield server


@pytest.fixture(scope="session")
def _graph_server(
    _identity_platform: IdentityPlatform, _smtp_server: SMTPStandIn
) -> Iterator[GraphStandIn]:
    # The identity platform's certificate, so CA_BUNDLE covers both; it
    # records into the SMTP stand-in's inbox, as the demo's does.
    with GraphStandIn(
        _identity_platform,
        certificate=_identity_platform.certificate,
        smtp=_smtp_server,
    ) as server:
        yield server


def _online(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("offline"):
        pytest.fail("a test marked offline asked for a stand-in server")


@pytest.fixture
def identity_platform(
    request: pytest.FixtureRequest, _identity_platform: IdentityPlatform
) -> IdentityPlatform:
    _online(request)
    _identity_platform.reset()
    _identity_platform.access_token_lifetime = 3600
    return _identity_platform


@pytest.fixture
def smtp_server(
    request: pytest.FixtureRequest, _smtp_server: SMTPStandIn
) -> Iterator[SMTPStandIn]:
    """The SMTP stand-in; rules a test sets (smtp_auth_disabled...) end with it.

    No warm session outlives a test: each starts with an empty pool.
    """
    _online(request)
    POOL.close_all()
    _smtp_server.reset()
    yield _smtp_server
    POOL.close_all()
    _smtp_server.smtp_auth_disabled.clear()
    _smtp_server.submission_quota_exceeded.clear()
    _smtp_server.send_as.clear()
    _smtp_server.app_access.clear()


@pytest.fixture
def graph_server(
    request: pytest.FixtureRequest, _graph_server: GraphStandIn
) -> Iterator[GraphStandIn]:
    """The Graph stand-in; what a test sets on it ends with the test."""
    _online(request)
    _graph_server.reset()
    yield _graph_server
    _graph_server.reset()
    _graph_server.rest_disabled.clear()
    _graph_server.app_access.clear()


def _stand_ins(request: pytest.FixtureRequest) -> dict[str, Any]:
    """Where the app finds Microsoft: the stand-ins, or for an ``offline`` test
    a port where nothing listens, so a call it should not make fails at once
    (and no server starts for it)."""
    if request.node.get_closest_marker("offline"):
        return {
            "AUTHORITY": f"https://127.0.0.1:{CLOSED_PORT}/common",
            "SMTP_HOST": "127.0.0.1",
            "SMTP_PORT": CLOSED_PORT,
            "GRAPH_ENDPOINT": f"https://127.0.0.1:{CLOSED_PORT}/v1.0",
        }
    identity = request.getfixturevalue("identity_platform")
    smtp = request.getfixturevalue("smtp_server")
    graph = request.getfixturevalue("graph_server")
    return {
        "AUTHORITY": identity.authority,
        "CA_BUNDLE": identity.ca_bundle,
        "SMTP_HOST": smtp.host,
        "SMTP_PORT": smtp.port,
        "GRAPH_ENDPOINT": graph.endpoint,
    }


@pytest.fixture(autouse=True)
def live_settings(
    request: pytest.FixtureRequest, settings: Any
) -> Iterator[dict[str, Any]]:
    """Point the app at the stand-ins, with a clean msal state."""
    applications.reset()
    # Django's test set-up swaps every backend for locmem; put ours back so
    # mail really travels to the SMTP stand-in.
    if USES_MAILERS:
        settings.MAILERS = {"default": {"BACKEND": BACKEND}}
    else:
        settings.EMAIL_BACKEND = BACKEND
    settings.LIVE_OAUTH_MAIL = {
        **settings.LIVE_OAUTH_MAIL,
        **_stand_ins(request),
        "SMTP_TIMEOUT": 10,
        "SMTP_RETRY_BACKOFF": 0,
    }
    yield settings.LIVE_OAUTH_MAIL
    applications.reset()


@pytest.fixture
def user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("ann", "ann@example.com", "pw")


@pytest.fixture
def acting_user(user: Any) -> Iterator[Any]:
    """Run the test as ``user``, who owns the mailboxes the fixtures link.

    For tests about transport, tokens and retries rather than who may send:
    their sends go out as the owner, as a view behind the middleware would.
    """
    with sending_as(user):
        yield user


@pytest.fixture
def other_user(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("zed", "zed@example.com", "pw")


class Linker:
    """Links mailboxes through the real views, msal, and the fake platform."""

    def __init__(self, platform: IdentityPlatform) -> None:
        self.platform = platform

    def start(self, client: Client, **data: str) -> str:
        response = client.post("/mail/connect/", data)
        assert response.status_code == 302, response.content[:500]
        return str(response["Location"])

    def __call__(
        self, user: Any, email: str, *, client: Client | None = None
    ) -> MailAccount:
        client = client or Client()
        client.force_login(user)
        authorize_url = self.start(client)
        answer = self.platform.approve(authorize_url, email)
        callback = urlsplit(answer.url)
        response = client.get(callback.path, dict(answer.params))
        assert response.status_code == 302, response.content[:1000]
        return MailAccount.objects.get(user=user, email=email.lower())


@pytest.fixture
def link(db: None, identity_platform: IdentityPlatform) -> Linker:
    return Linker(identity_platform)


@pytest.fixture
def alice_account(link: Linker, user: Any) -> MailAccount:
    return link(user, "alice@outlook.com")


@pytest.fixture
def bob_account(link: Linker, user: Any) -> MailAccount:
    return link(user, "bob@contoso.com")


def postgres_required() -> bool:
    return os.environ.get("LIVE_OAUTH_MAIL_REQUIRE_POSTGRES") == "1"
