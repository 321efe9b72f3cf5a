"""A provider that exists only here plugs in at the identity seam.

It is registered in :mod:`django_live_oauth_mail.identity.providers` and
nowhere else. The real connect and callback views link its mailbox, and
``get_access_token`` refreshes its token under the same lease, storing and
signalling as for Microsoft's, without msal ever being asked.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import secrets
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

import msal
import pytest
from django.test import Client
from django.utils import timezone

from django_live_oauth_mail import signals
from django_live_oauth_mail.conf import Protocol
from django_live_oauth_mail.exceptions import (
    AuthorizationDeclined,
    ReconnectRequired,
)
from django_live_oauth_mail.identity import providers
from django_live_oauth_mail.identity.issued import AccessToken
from django_live_oauth_mail.identity.providers import LinkedIdentity
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.secret import Secret

from ..standins import IdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)

PROVIDER = "acme"
CAROL = "carol@acme.test"


@dataclasses.dataclass
class AcmeIdentity:
    """The provider's far end: the codes and refresh tokens it issued, and
    each refresh it was asked for, with the mailbox's lease as it stood."""

    codes: dict[str, str] = dataclasses.field(default_factory=dict)
    refresh_tokens: dict[str, str] = dataclasses.field(default_factory=dict)
    refreshes: list[tuple[str, datetime.datetime | None]] = dataclasses.field(
        default_factory=list
    )
    lifetime: int = 3600

    def approve(self, authorize_url: str, email: str) -> tuple[str, dict[str, str]]:
        """The user signs in: where the provider sends them back, and with what."""
        query = dict(parse_qsl(urlsplit(authorize_url).query))
        code = secrets.token_urlsafe(8)
        self.codes[code] = email
        return query["redirect_uri"], {"state": query["state"], "code": code}

    def tokens_for(self, email: str) -> dict[str, Any]:
        refresh_token = secrets.token_urlsafe(8)
        self.refresh_tokens[refresh_token] = email
        return {
            "access_token": f"acme-{secrets.token_urlsafe(8)}",
            "refresh_token": refresh_token,
            "expires_on": timezone.now().timestamp() + self.lifetime,
        }


class AcmeProvider:
    """The whole provider: the interface filled against :class:`AcmeIdentity`."""

    def __init__(self, far_end: AcmeIdentity) -> None:
        self.far_end = far_end

    def start_link(
        self, redirect_uri: str, *, login_hint: str | None
    ) -> dict[str, Any]:
        state = secrets.token_urlsafe(8)
        query = urlencode({"state": state, "redirect_uri": redirect_uri})
        return {"state": state, "auth_uri": f"https://acme.test/authorize?{query}"}

    def finish_link(
        self, flow: dict[str, Any], params: Mapping[str, str]
    ) -> LinkedIdentity:
        if params.get("error"):
            raise AuthorizationDeclined("You cancelled at Acme.")
        email = self.far_end.codes.pop(params["code"])
        state = self.far_end.tokens_for(email)
        return LinkedIdentity(
            email=email,
            display_name="Carol Acme",
            tenant_id="",
            home_account_id=f"acme:{email}",
            is_personal=True,
            expires_at=_when(state["expires_on"]),
            serialized_cache=json.dumps(state),
        )

    def cached_token(
        self, account: MailAccount, protocol: Protocol
    ) -> AccessToken | None:
        state = json.loads(account.read_token_cache())
        if state["expires_on"] - timezone.now().timestamp() < 300:
            return None
        return AccessToken(
            Secret(state["access_token"]), _when(state["expires_on"]), False
        )

    def redeem(
        self, account: MailAccount, protocol: Protocol, *, force_refresh: bool
    ) -> AccessToken:
        lease = MailAccount.objects.get(pk=account.pk).refreshing_until
        self.far_end.refreshes.append((account.email, lease))
        old = json.loads(account.read_token_cache())["refresh_token"]
        email = self.far_end.refresh_tokens.pop(old, None)  # rotated: spent
        if email is None:
            raise ReconnectRequired(
                f"Acme no longer accepts {account.email}'s sign-in. Link it again.",
                mailbox=account.email,
                error="invalid_grant",
            )
        state = self.far_end.tokens_for(email)
        return AccessToken(
            Secret(state["access_token"]),
            _when(state["expires_on"]),
            True,
            json.dumps(state),
        )

    def app_token(
        self, account: MailAccount, protocol: Protocol, *, force_refresh: bool
    ) -> AccessToken:
        expires_on = timezone.now().timestamp() + 3600
        return AccessToken(Secret(f"acme-app-{protocol}"), _when(expires_on), True)


def _when(timestamp: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(timestamp, datetime.timezone.utc)


def _as_acme(account: MailAccount) -> MailAccount:
    """The link's provider, as the ``MailAccount.provider`` column of #26 will
    hold it; until then the instance carries it."""
    account.provider = PROVIDER  # type: ignore[attr-defined]
    return account


@pytest.fixture
def acme() -> Iterator[AcmeIdentity]:
    far_end = AcmeIdentity()
    providers.register(PROVIDER, AcmeProvider(far_end))
    yield far_end
    providers.unregister(PROVIDER)


@pytest.fixture
def msal_untouched(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every way into msal we use, recorded and refused."""
    asked: list[str] = []
    for name in (
        "ConfidentialClientApplication",
        "PublicClientApplication",
        "SerializableTokenCache",
    ):

        def refuse(*args: Any, _name: str = name, **kwargs: Any) -> None:
            asked.append(_name)
            raise AssertionError(f"msal.{_name} was used")

        monkeypatch.setattr(msal, name, refuse)
    return asked


@pytest.fixture
def client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _link(client: Client, acme: AcmeIdentity) -> MailAccount:
    start = client.post(f"/mail/connect/?provider={PROVIDER}")
    assert start.status_code == 302
    assert start["Location"].startswith("https://acme.test/authorize?")
    redirect_uri, params = acme.approve(start["Location"], CAROL)
    done = client.get(urlsplit(redirect_uri).path, params)
    assert done.status_code == 302, done.content[:500]
    return _as_acme(MailAccount.objects.get(email=CAROL))


def test_its_mailbox_is_linked_through_the_real_views(
    client: Client,
    user: Any,
    acme: AcmeIdentity,
    identity_platform: IdentityPlatform,
    msal_untouched: list[str],
) -> None:
    account = _link(client, acme)
    assert (account.user, account.status) == (user, MailAccount.Status.ACTIVE)
    assert account.home_account_id == f"acme:{CAROL}"
    assert account.display_name == "Carol Acme"
    [refresh_token] = acme.refresh_tokens
    assert json.loads(account.read_token_cache())["refresh_token"] == refresh_token
    assert identity_platform.requests == [] and msal_untouched == []


def test_the_connect_page_keeps_the_provider_for_its_button(
    client: Client, acme: AcmeIdentity
) -> None:
    page = client.get(f"/mail/connect/?provider={PROVIDER}")
    assert b'name="provider" value="acme"' in page.content
    assert b'name="provider"' not in client.get("/mail/connect/").content


def test_an_unknown_provider_is_not_found(client: Client) -> None:
    assert client.get("/mail/connect/?provider=nobody").status_code == 404
    assert client.post("/mail/connect/", {"provider": "nobody"}).status_code == 404


def test_cancelling_at_the_provider_links_nothing(
    client: Client, acme: AcmeIdentity
) -> None:
    start = client.post(f"/mail/connect/?provider={PROVIDER}")
    redirect_uri, params = acme.approve(start["Location"], CAROL)
    answer = {"state": params["state"], "error": "access_denied"}
    page = client.get(urlsplit(redirect_uri).path, answer)
    assert page.status_code == 400
    assert b"You cancelled the sign-in" in page.content
    assert not MailAccount.objects.exists()


def test_an_expiring_token_is_refreshed_once_under_the_lease_and_stored(
    client: Client,
    acme: AcmeIdentity,
    identity_platform: IdentityPlatform,
    msal_untouched: list[str],
) -> None:
    acme.lifetime = 120  # under the five-minute margin
    account = _link(client, acme)
    acme.lifetime = 3600
    refreshed: list[MailAccount] = []

    def receiver(sender: Any, account: MailAccount, **kwargs: Any) -> None:
        refreshed.append(account)

    signals.token_refreshed.connect(receiver)
    try:
        before = timezone.now()
        first = get_access_token(account)
        second = get_access_token(account)
    finally:
        signals.token_refreshed.disconnect(receiver)

    [(mailbox, lease)] = acme.refreshes
    assert mailbox == CAROL and lease is not None and lease > before
    assert first.refreshed is True and second.refreshed is False
    assert second.value == first.value
    stored = MailAccount.objects.get(pk=account.pk)
    state = json.loads(stored.read_token_cache())
    assert first.value == Secret(state["access_token"])
    assert list(acme.refresh_tokens) == [state["refresh_token"]]  # rotated
    assert stored.token_expires_at == first.expires_at
    assert stored.last_refreshed_at is not None and stored.refreshing_until is None
    assert [a.pk for a in refreshed] == [account.pk]
    assert identity_platform.requests == [] and msal_untouched == []


def test_a_refused_refresh_marks_its_mailbox_for_linking_again(
    client: Client, acme: AcmeIdentity, msal_untouched: list[str]
) -> None:
    account = _link(client, acme)
    acme.refresh_tokens.clear()  # the user revoked the grant at Acme

    with pytest.raises(ReconnectRequired, match="Acme no longer accepts"):
        get_access_token(account, force_refresh=True)

    stored = MailAccount.objects.get(pk=account.pk)
    assert stored.status == MailAccount.Status.RECONNECT_REQUIRED
    assert "Acme no longer accepts" in stored.last_error
    assert stored.refreshing_until is None
    assert msal_untouched == []


def test_its_app_mailbox_gets_the_provider_s_app_token(
    acme: AcmeIdentity, msal_untouched: list[str]
) -> None:
    app = MailAccount.objects.create(
        email="robot@acme.test", kind=MailAccount.Kind.APP, shared=True
    )
    token = get_access_token(_as_acme(app), protocol="graph")
    assert token.value == Secret("acme-app-graph")
    assert msal_untouched == []


def test_stored_mailboxes_are_microsoft_s_until_they_name_a_provider() -> None:
    from django_live_oauth_mail.identity import microsoft

    assert providers.for_account(MailAccount(email=CAROL)) is microsoft


def test_the_views_and_token_state_name_no_microsoft_module() -> None:
    # The seam: the views and tokens.py ask the registry, never msal's modules.
    from django_live_oauth_mail import views
    from django_live_oauth_mail.identity import tokens

    for module in (views, tokens):
        with open(module.__file__ or "") as source:
            text = source.read()
        for name in ("linking", "delegated", "app_only", "microsoft", "msal"):
            assert f"import {name}" not in text, (module.__name__, name)
            assert f"{name}." not in text, (module.__name__, name)
