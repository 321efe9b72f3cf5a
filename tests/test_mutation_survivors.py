"""Behaviours a mutation audit found that no test asserted (issue #23).

Each test here fails when the line that guards its behaviour is mutated
(``make mutation`` finds the next ones; docs/development.md).
"""

from __future__ import annotations

import datetime
import pprint
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core.mail import EmailMessage
from django.test import Client

from django_live_oauth_mail import crypto, sending_as
from django_live_oauth_mail.exceptions import (
    AccountNotFound,
    ReconnectRequired,
    SenderNotAllowed,
)
from django_live_oauth_mail.identity import flows
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount, SendAsAddress
from django_live_oauth_mail.ownership import routing
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .conftest import Linker
from .helpers import refreshes, stored_refresh_token
from .mailers import make_backend
from .standins import IdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)


# -- the connect flow: any answer with a state spends it ------------------------------


def test_a_callback_with_only_a_state_spends_it(
    user: Any, identity_platform: IdentityPlatform
) -> None:
    client = Client()
    client.force_login(user)
    authorize = client.post("/mail/connect/")["Location"]
    answer = identity_platform.approve(authorize, "alice@outlook.com")
    state = answer.params["state"]

    probe = client.get("/mail/callback/", {"state": state})
    assert probe.status_code == 400
    assert state not in client.session[flows.SESSION_KEY]

    # Microsoft's real answer for that state now comes too late.
    late = client.get(urlsplit(answer.url).path, dict(answer.params))
    assert late.status_code == 400
    assert b"expired or was already used" in late.content
    assert MailAccount.objects.count() == 0
    assert identity_platform.token_requests == []


# -- the decrypted token cache --------------------------------------------------------


def test_the_decrypted_token_cache_hides_its_content_in_every_repr(
    alice_account: MailAccount,
) -> None:
    cache = MailAccount.objects.get(pk=alice_account.pk).read_token_cache()
    refresh_token = stored_refresh_token(alice_account)
    assert refresh_token in cache  # still the plaintext, for msal

    shown = [
        repr(cache),
        f"{cache!r}",
        repr({"cache": [cache]}),
        pprint.pformat({"cache": cache}),
    ]
    assert repr(cache) == "'<decrypted, hidden>'"
    for text in shown:
        assert refresh_token not in text and "RefreshToken" not in text


def test_decrypt_returns_text_that_equals_the_plaintext_but_hides_it() -> None:
    plaintext = crypto.decrypt(crypto.encrypt("s3cret-value"))
    assert plaintext == "s3cret-value"
    assert "s3cret-value" not in repr(plaintext)


# -- token leases and stale copies ----------------------------------------------------


def test_a_worker_that_uses_the_token_another_stored_releases_its_lease(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    stale_copy = MailAccount.objects.get(pk=alice_account.pk)
    stored = get_access_token(alice_account, force_refresh=True)  # another worker
    identity_platform.reset()

    # Exchange refused the stale copy's token: this worker claims the lease,
    # finds the newer token in the row, uses it, and gives the lease back.
    token = get_access_token(stale_copy, force_refresh=True)

    assert token.value == stored.value
    assert refreshes(identity_platform) == 0
    assert MailAccount.objects.get(pk=alice_account.pk).refreshing_until is None


def test_a_stale_active_copy_of_a_deactivated_mailbox_gets_no_token(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    stale_copy = MailAccount.objects.get(pk=alice_account.pk)
    get_access_token(alice_account, force_refresh=True)  # a fresh token is stored
    # ...and then another worker learnt the grant is gone.
    MailAccount.objects.filter(pk=alice_account.pk).update(
        status=MailAccount.Status.RECONNECT_REQUIRED,
        last_error="AADSTS70000: the grant was revoked",
    )
    identity_platform.reset()
    assert stale_copy.is_active

    # The refresh path re-reads the row: what it says wins over the copy.
    with pytest.raises(ReconnectRequired, match="AADSTS70000"):
        get_access_token(stale_copy, force_refresh=True)

    assert identity_platform.requests == []
    assert not stale_copy.is_active  # the copy learnt the row's state
    stored = MailAccount.objects.get(pk=alice_account.pk)
    assert (stored.status, stored.refreshing_until) == (
        MailAccount.Status.RECONNECT_REQUIRED,
        None,
    )


# -- routing: the oldest link wins ----------------------------------------------------


def _make_oldest(account: MailAccount) -> None:
    """Date ``account``'s link before every other, whatever its primary key."""
    first = MailAccount.objects.order_by("created_at").values_list(
        "created_at", flat=True
    )[0]
    MailAccount.objects.filter(pk=account.pk).update(
        created_at=first - datetime.timedelta(days=1)
    )


def test_of_two_shared_send_as_entries_the_oldest_link_sends(
    link: Linker, user: Any, other_user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    newer = link(user, "bob@contoso.com")  # linked first, so its pk is lower
    older = link(other_user, "alice@outlook.com")
    _make_oldest(older)
    for account in (newer, older):
        SendAsAddress.objects.create(
            account=account, address="support@example.com", shared=True
        )
        smtp_server.send_as[account.email] = {"support@example.com"}

    for _ in range(2):  # deterministic, not the first row the database returns
        assert EmailMessage("s", "b", "support@example.com", ["r@example.org"]).send()

    assert [m.authenticated_as for m in smtp_server.messages] == [
        "alice@outlook.com"
    ] * 2


def test_of_two_links_of_one_mailbox_the_oldest_sends_when_chosen_by_address(
    link: Linker,
    user: Any,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    link(user, "bob@contoso.com")
    older = link(other_user, "bob@contoso.com")
    _make_oldest(older)
    live_settings["DEFAULT_ACCOUNT"] = "bob@contoso.com"
    smtp_server.send_as["bob@contoso.com"] = {"webmaster@example.com"}

    # Chosen explicitly by address, and as DEFAULT_ACCOUNT.
    assert make_backend(account="bob@contoso.com").send_messages(
        [EmailMessage("s", "b", "bob@contoso.com", ["r@example.org"])]
    )
    assert EmailMessage("s", "b", None, ["r@example.org"]).send() == 1

    assert len(smtp_server.messages) == 2
    used = MailAccount.objects.filter(last_used_at__isnull=False)
    assert list(used.values_list("pk", flat=True)) == [older.pk]


# -- routing: DEFAULT_ACCOUNT and open() ----------------------------------------------


def test_a_send_as_entry_for_an_unlinked_default_account_does_not_stand_in_for_it(
    alice_account: MailAccount,
    link: Linker,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    # Written past the form (which refuses them): mailboxes whose addresses
    # sort before and after it list the site's (unlinked) mailbox.
    dave = link(user, "dave@fabrikam.com")
    for account in (alice_account, dave):
        SendAsAddress.objects.create(account=account, address="carol@contoso.com")
    live_settings["DEFAULT_ACCOUNT"] = "carol@contoso.com"

    with pytest.raises(AccountNotFound, match="is not an active linked mailbox"):
        EmailMessage("s", "b", None, ["r@example.org"]).send()
    assert smtp_server.sessions == 0


def test_a_users_send_as_entry_for_another_mailbox_never_sends_its_mail(
    link: Linker, user: Any, other_user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    # Dave's address sorts after Bob's; the rule must not depend on that.
    dave = link(user, "dave@fabrikam.com")
    SendAsAddress.objects.create(account=dave, address="bob@contoso.com")
    link(other_user, "bob@contoso.com")

    with sending_as(user), pytest.raises(SenderNotAllowed):
        EmailMessage("s", "b", "bob@contoso.com", ["r@example.org"]).send()
    assert smtp_server.sessions == 0


def test_routing_any_prefers_the_own_link_to_an_older_send_as_entry(
    link: Linker,
    user: Any,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    dave = link(user, "dave@fabrikam.com")  # older, and sorts after Bob
    SendAsAddress.objects.create(account=dave, address="bob@contoso.com")
    link(other_user, "bob@contoso.com")
    live_settings["ROUTING"] = "any"

    assert EmailMessage("s", "b", "bob@contoso.com", ["r@example.org"]).send() == 1
    assert [m.authenticated_as for m in smtp_server.messages] == ["bob@contoso.com"]


@pytest.mark.parametrize(
    ("default_account", "advice"),
    [
        (None, "Send from a mailbox the acting user linked or a shared one"),
        ("bob@contoso.com", "sends only for an empty From, DEFAULT_FROM_EMAIL"),
    ],
)
def test_a_refused_sender_is_named_with_advice_for_the_setup(
    alice_account: MailAccount,
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
    default_account: str | None,
    advice: str,
) -> None:
    live_settings["DEFAULT_ACCOUNT"] = default_account
    with pytest.raises(AccountNotFound) as caught:
        EmailMessage("s", "b", "stranger@example.org", ["r@example.org"]).send()
    assert caught.value.mailbox == "stranger@example.org"
    assert advice in str(caught.value)
    assert "is not an active linked mailbox" not in str(caught.value)
    assert smtp_server.sessions == 0


def test_route_refuses_only_the_messages_no_mailbox_may_send(
    alice_account: MailAccount,
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(shared=True)
    refused_first = EmailMessage("1", "b", "stranger@example.org", ["r@example.org"])
    sendable = EmailMessage("2", "b", "alice@outlook.com", ["r@example.org"])

    batches, refused = routing.route([refused_first, sendable])

    assert [(a.pk, m) for a, m in batches] == [(alice_account.pk, [sendable])]
    assert [message for message, _ in refused] == [refused_first]


def test_route_with_an_unknown_fixed_mailbox_refuses_every_message(
    alice_account: MailAccount,
) -> None:
    messages = [
        EmailMessage(str(n), "b", "alice@outlook.com", ["r@example.org"])
        for n in range(2)
    ]
    batches, refused = routing.route(messages, account="nobody@example.org")
    assert batches == []
    assert [message for message, _ in refused] == messages
    assert {error.mailbox for _, error in refused} == {"nobody@example.org"}


def test_open_signs_in_as_the_mailbox_that_sends_the_sites_mail(
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["DEFAULT_ACCOUNT"] = "bob@contoso.com"
    backend = make_backend()
    try:
        assert backend.open() is True
    finally:
        backend.close()
    assert [a.user for a in smtp_server.auth_attempts] == ["bob@contoso.com"]


def test_open_without_a_mailbox_for_the_sites_mail_says_what_to_do(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    with pytest.raises(AccountNotFound, match=r"^open\(\) signs in as the mailbox"):
        make_backend().open()
    assert smtp_server.sessions == 0


def test_only_an_smtp_refresh_moves_the_expiry_smtp_sessions_check(
    link: Linker,
    user: Any,
    identity_platform: IdentityPlatform,
    live_settings: dict[str, Any],
) -> None:
    live_settings["TRANSPORT"] = "auto"
    account = link(user, "bob@contoso.com")
    linked_expiry = MailAccount.objects.get(pk=account.pk).token_expires_at
    identity_platform.access_token_lifetime = 7200

    get_access_token(account, protocol="graph", force_refresh=True)
    assert MailAccount.objects.get(pk=account.pk).token_expires_at == linked_expiry

    smtp = get_access_token(account, protocol="smtp", force_refresh=True)
    stored = MailAccount.objects.get(pk=account.pk).token_expires_at
    assert stored == smtp.expires_at != linked_expiry


# -- the connect views: what Microsoft's answer may look like -------------------------


def _started(user: Any, identity_platform: IdentityPlatform, **client: Any) -> Any:
    """A signed-in browser that started linking, and Microsoft's approval."""
    browser = Client(**client)
    browser.force_login(user)
    authorize = browser.post(
        "/mail/connect/", {"csrfmiddlewaretoken": _csrf_token(browser)}
    )["Location"]
    return browser, identity_platform.approve(authorize, "alice@outlook.com")


def _csrf_token(browser: Client) -> str:
    page = browser.get("/mail/connect/")
    return str(page.context["csrf_token"])


def test_microsofts_form_post_answer_needs_no_csrf_token(
    user: Any, identity_platform: IdentityPlatform
) -> None:
    browser, answer = _started(user, identity_platform, enforce_csrf_checks=True)
    response = browser.post(urlsplit(answer.url).path, dict(answer.params))
    assert response.status_code == 302
    assert MailAccount.objects.filter(email="alice@outlook.com").exists()


@pytest.mark.parametrize("method", ["put", "delete", "patch"])
def test_the_connect_views_answer_only_get_and_post(
    user: Any, method: str, identity_platform: IdentityPlatform
) -> None:
    browser = Client()
    browser.force_login(user)
    for path in ("/mail/connect/", "/mail/callback/", "/mail/"):
        assert getattr(browser, method)(path).status_code == 405, path


def test_an_outage_page_says_when_to_try_again(
    user: Any, identity_platform: IdentityPlatform
) -> None:
    browser, answer = _started(user, identity_platform)
    identity_platform.fail_next_token_requests(1, status=503, body="<html>x</html>")
    response = browser.get(urlsplit(answer.url).path, dict(answer.params))
    assert (response.status_code, response["Retry-After"]) == (503, "10")


@pytest.mark.parametrize(
    ("extra_fields", "length", "refused"),
    [
        (18, 8192, False),  # 20 fields, the longest 8192 characters
        (19, 8192, True),
        (18, 8193, True),
    ],
)
def test_a_callback_is_refused_as_too_large_only_past_the_limits(
    user: Any, extra_fields: int, length: int, refused: bool
) -> None:
    browser = Client()
    browser.force_login(user)
    params = {f"x{n}": "v" for n in range(extra_fields)}
    params.update(state="s" * length, code="forged")
    response = browser.get("/mail/callback/", params)
    assert response.status_code == 400
    assert (b"too large" in response.content) is refused
