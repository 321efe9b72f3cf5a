"""The connect, callback, disconnect and accounts views, over the real flow."""

from __future__ import annotations

import html
import re
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.core.mail import EmailMessage
from django.test import Client

from django_live_oauth_mail import signals
from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.identity import flows
from django_live_oauth_mail.models import MailAccount, SendAsAddress
from django_live_oauth_mail.testing import PERSONAL_TENANT_ID

from .standins import IdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def callback(client: Client, answer: Any) -> Any:
    return client.get(urlsplit(answer.url).path, dict(answer.params))


def test_every_view_requires_login() -> None:
    anonymous = Client()
    for method, url in [
        ("get", "/mail/"),
        ("get", "/mail/connect/"),
        ("post", "/mail/connect/"),
        ("get", "/mail/callback/?state=x&code=y"),
        ("get", "/mail/1/disconnect/"),
        ("post", "/mail/1/disconnect/"),
    ]:
        response = getattr(anonymous, method)(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url


def test_connect_get_shows_a_form_and_never_leaves_the_site(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    response = client.get("/mail/connect/")
    assert response.status_code == 200
    assert b'method="post"' in response.content
    assert b"csrfmiddlewaretoken" in response.content
    assert identity_platform.requests == []


def test_connect_post_requires_csrf(user: Any) -> None:
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    assert strict.post("/mail/connect/").status_code == 403


def test_connect_redirects_to_authorize_with_pkce_state_and_nonce(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    response = client.post("/mail/connect/")
    assert response.status_code == 302
    location = urlsplit(response["Location"])
    assert f"https://{location.netloc}" in identity_platform.authority
    assert location.path.endswith("/oauth2/v2.0/authorize")
    query = parse_qs(location.query)
    assert query["code_challenge_method"] == ["S256"]
    assert query["code_challenge"][0] and query["state"][0] and query["nonce"][0]
    assert query["redirect_uri"] == ["http://testserver/mail/callback/"]
    assert set(query["scope"][0].split()) == {
        "https://outlook.office.com/SMTP.Send",
        "email",
        "openid",
        "profile",
        "offline_access",
    }


def test_personal_account_is_linked(
    client: Client, user: Any, identity_platform: IdentityPlatform
) -> None:
    connected: list[tuple[Any, MailAccount]] = []

    def receiver(sender: Any, user: Any, account: MailAccount, **kwargs: Any) -> None:
        connected.append((user, account))

    authorize = client.post("/mail/connect/")["Location"]
    signals.account_connected.connect(receiver)
    try:
        response = callback(
            client, identity_platform.approve(authorize, "alice@outlook.com")
        )
    finally:
        signals.account_connected.disconnect(receiver)

    assert response.status_code == 302
    assert response["Location"] == "/mail/"
    account = MailAccount.objects.get()
    assert (account.user, account.email) == (user, "alice@outlook.com")
    assert account.kind == MailAccount.Kind.PERSONAL
    assert account.tenant_id == PERSONAL_TENANT_ID
    assert account.status == MailAccount.Status.ACTIVE
    assert account.display_name == "Alice Personal"
    assert account.token_expires_at is not None
    assert [(u, a.pk) for u, a in connected] == [(user, account.pk)]
    page = client.get("/mail/")
    assert b"alice@outlook.com is linked" in page.content


def test_work_account_is_linked(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    callback(client, identity_platform.approve(authorize, "bob@contoso.com"))
    account = MailAccount.objects.get()
    assert account.kind == MailAccount.Kind.WORK
    assert account.tenant_id and account.tenant_id != PERSONAL_TENANT_ID


def test_mailbox_falls_back_to_preferred_username(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    callback(client, identity_platform.approve(authorize, "carol@contoso.com"))
    assert MailAccount.objects.get().email == "carol@contoso.com"


def test_form_post_callback_is_accepted(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    response = client.post(urlsplit(answer.url).path, dict(answer.params))
    assert response.status_code == 302
    assert MailAccount.objects.filter(email="alice@outlook.com").exists()


def test_linking_again_renews_the_same_account(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    for _ in range(2):
        authorize = client.post("/mail/connect/")["Location"]
        callback(client, identity_platform.approve(authorize, "alice@outlook.com"))
    assert MailAccount.objects.count() == 1


def test_declining_consent_shows_a_friendly_page_and_stores_nothing(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    response = callback(client, identity_platform.decline(authorize))
    assert response.status_code == 400
    assert b"cancelled" in response.content
    assert MailAccount.objects.count() == 0


def test_replayed_callback_is_refused(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    assert callback(client, answer).status_code == 302
    MailAccount.objects.all().delete()
    replay = callback(client, answer)
    assert replay.status_code == 400
    assert MailAccount.objects.count() == 0


def test_state_from_another_session_is_refused(
    client: Client, user: Any, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    other_session = Client()
    other_session.force_login(user)
    assert callback(other_session, answer).status_code == 400
    assert MailAccount.objects.count() == 0


def test_state_started_by_another_user_in_the_same_session_is_refused(
    client: Client, other_user: Any, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    session_cookie = client.cookies["sessionid"].value
    # Same browser, but now someone else is signed in (Django would flush the
    # session on login; a hand-built session proves the flow is bound to the user).
    engine_client = Client()
    engine_client.force_login(other_user)
    session = engine_client.session
    session["live_oauth_mail_flows"] = client.session["live_oauth_mail_flows"]
    session.save()
    assert session_cookie != engine_client.cookies["sessionid"].value
    assert callback(engine_client, answer).status_code == 400
    assert MailAccount.objects.count() == 0


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"state": "forged", "code": "forged"},
        {"code": "no-state"},
        {"state": "x" * 10_000, "code": "y"},
        {"error": "server_error", "error_description": "<script>alert(1)</script>"},
    ],
)
def test_hostile_callbacks_get_a_4xx_page_and_store_nothing(
    client: Client, params: dict[str, str]
) -> None:
    client.post("/mail/connect/")
    response = client.get("/mail/callback/", params)
    assert 400 <= response.status_code < 500
    assert b"<script>alert(1)</script>" not in response.content
    assert MailAccount.objects.count() == 0


def error_title(response: Any) -> str:
    """The error page's heading, which must match its <title>."""
    page = response.content.decode()
    heading = re.search(r'id="lom-error">\s*<h1>(.*?)</h1>', page)
    title = re.search(r"<title>(.*?)</title>", page)
    assert heading and title, page[:500]
    assert heading[1] == title[1]
    return html.unescape(heading[1])


@pytest.mark.parametrize(
    ("params", "title"),
    [
        pytest.param({}, "This is not a sign-in response", id="empty"),
        pytest.param(
            {"code": "no-state"}, "That sign-in response was not valid", id="no-state"
        ),
        pytest.param(
            {"state": "{state}"},
            "That sign-in response was not valid",
            id="neither-code-nor-error",
        ),
        pytest.param(
            {"state": "x" * 10_000, "code": "oversized-code"},
            "That sign-in response was not valid",
            id="oversized",
        ),
        pytest.param(
            {"state": "forged", "code": "forged-code"},
            "That sign-in link has expired or was already used",
            id="unknown-state",
        ),
        pytest.param(
            {"state": "{state}", "error": "access_denied"},
            "You cancelled the sign-in",
            id="declined",
        ),
        pytest.param(
            {
                "state": "{state}",
                "error": "server_error",
                "error_description": "AADSTS50000: There was an error issuing a token.",
            },
            "Signing in with Microsoft failed",
            id="microsoft-error",
        ),
        pytest.param(
            {"state": "{state}", "code": "forged-code"},
            "Signing in with Microsoft failed",
            id="code-refused",
        ),
    ],
)
def test_each_bad_callback_is_titled_for_what_went_wrong(
    client: Client, params: dict[str, str], title: str
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    params = {key: value.format(state=state) for key, value in params.items()}
    response = client.get("/mail/callback/", params)
    assert response.status_code == 400
    assert error_title(response) == title
    assert "code" not in params or params["code"] not in response.content.decode()
    assert MailAccount.objects.count() == 0


def test_an_expired_flow_is_titled_expired(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    session = client.session
    for entry in session[flows.SESSION_KEY].values():
        entry["started"] -= flows.MAX_AGE_SECONDS + 1
    session.save()
    response = callback(client, answer)
    assert response.status_code == 400
    assert error_title(response) == "That sign-in link has expired or was already used"
    assert "15 minutes" in response.content.decode()
    assert answer.params["code"] not in response.content.decode()


def test_forged_code_with_a_real_state_is_refused(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    state = parse_qs(urlsplit(authorize).query)["state"][0]
    response = client.get("/mail/callback/", {"state": state, "code": "forged"})
    assert response.status_code == 400
    assert MailAccount.objects.count() == 0
    assert [r.grant_type for r in identity_platform.token_requests] == [
        "authorization_code"
    ]


def test_platform_outage_during_exchange_shows_try_again(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    identity_platform.fail_next_token_requests(1, status=503, body="<html>oops</html>")
    response = callback(client, answer)
    assert response.status_code == 503
    assert b"try again" in response.content.lower()
    assert MailAccount.objects.count() == 0


def test_next_is_followed_only_to_this_site(
    client: Client, identity_platform: IdentityPlatform
) -> None:
    authorize = client.post("/mail/connect/", {"next": "https://evil.example/"})[
        "Location"
    ]
    response = callback(
        client, identity_platform.approve(authorize, "alice@outlook.com")
    )
    assert response["Location"] == "/mail/"
    authorize = client.post("/mail/connect/", {"next": "/compose/"})["Location"]
    response = callback(client, identity_platform.approve(authorize, "bob@contoso.com"))
    assert response["Location"] == "/compose/"


def test_success_url_setting(
    client: Client,
    identity_platform: IdentityPlatform,
    live_settings: dict[str, Any],
) -> None:
    live_settings["SUCCESS_URL"] = "/welcome/"
    authorize = client.post("/mail/connect/")["Location"]
    response = callback(
        client, identity_platform.approve(authorize, "alice@outlook.com")
    )
    assert response["Location"] == "/welcome/"


def test_reconnect_passes_login_hint(client: Client) -> None:
    authorize = client.post("/mail/connect/", {"login_hint": "alice@outlook.com"})[
        "Location"
    ]
    assert parse_qs(urlsplit(authorize).query)["login_hint"] == ["alice@outlook.com"]


def test_disconnect_asks_first_and_a_post_removes_the_users_own_account(
    client: Client, alice_account: MailAccount
) -> None:
    disconnected: list[Any] = []

    def receiver(sender: Any, user: Any, account: MailAccount, **kwargs: Any) -> None:
        disconnected.append(user)

    url = f"/mail/{alice_account.pk}/disconnect/"
    signals.account_disconnected.connect(receiver)
    try:
        question = client.get(url)
        assert MailAccount.objects.count() == 1
        response = client.post(url)
    finally:
        signals.account_disconnected.disconnect(receiver)
    assert question.status_code == 200
    page = question.content.decode()
    assert "<h1>Disconnect alice@outlook.com?</h1>" in page
    assert f'<form method="post" action="{url}">' in page
    assert "csrfmiddlewaretoken" in page
    assert response.status_code == 302
    assert MailAccount.objects.count() == 0
    assert disconnected == [alice_account.user]


def test_the_accounts_page_links_disconnect_to_the_question(
    client: Client, alice_account: MailAccount
) -> None:
    page = client.get("/mail/").content.decode()
    url = f"/mail/{alice_account.pk}/disconnect/"
    assert f'href="{url}" data-action="disconnect"' in page
    assert f'action="{url}"' not in page  # no one-click form any more


def test_the_question_says_what_disconnecting_removes_and_fails(
    client: Client, alice_account: MailAccount, acting_user: Any
) -> None:
    SendAsAddress.objects.create(account=alice_account, address="team@outlook.com")
    MailAccount.objects.filter(pk=alice_account.pk).update(shared=True)
    messages = [
        EmailMessage(subject, "x", "alice@outlook.com", ["z@example.com"])
        for subject in ("one", "two")
    ]
    assert QueuedEmailBackend().send_messages(messages) == 2
    page = client.get(f"/mail/{alice_account.pk}/disconnect/?next=/compose/")
    text = " ".join(page.content.decode().split())
    assert "deletes its link to alice@outlook.com and the tokens" in text
    assert "Mail from alice@outlook.com stops" in text
    assert "Send As addresses go with it: team@outlook.com." in text
    assert "It is shared" in text
    assert "The 2 messages waiting to be sent from it fail." in text
    assert 'name="next" value="/compose/"' in text
    assert 'href="/compose/">Cancel</a>' in text


def test_disconnecting_another_users_account_is_404(
    link: Any, other_user: Any, client: Client
) -> None:
    theirs = link(other_user, "bob@contoso.com")
    assert client.post(f"/mail/{theirs.pk}/disconnect/").status_code == 404
    assert MailAccount.objects.filter(pk=theirs.pk).exists()


def test_accounts_page_lists_only_the_users_mailboxes(
    link: Any, user: Any, other_user: Any, client: Client
) -> None:
    link(user, "alice@outlook.com")
    link(other_user, "bob@contoso.com")
    page = client.get("/mail/").content.decode()
    assert "alice@outlook.com" in page
    assert "bob@contoso.com" not in page


def test_accounts_page_offers_reconnect_with_the_mailbox_as_hint(
    client: Client, alice_account: MailAccount
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(
        status=MailAccount.Status.RECONNECT_REQUIRED,
        last_error="The sign-in for alice@outlook.com has expired.",
    )
    page = client.get("/mail/").content.decode()
    assert "Reconnect required" in page
    assert 'name="login_hint" value="alice@outlook.com"' in page
    assert "has expired" in page
