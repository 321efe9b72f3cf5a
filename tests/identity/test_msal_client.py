"""identity/: msal calls for different mailboxes and users never wait for one another.

Refreshes and code exchanges for different mailboxes run in parallel (no lock
is held across an HTTP request). One user's throttled or failed exchange leaves
every other user's link alone, while a retry of the same flow still waits out
Retry-After. Discovery happens once per process. A stored cache msal cannot
read, and a refresh token that expired, each say what to do next.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.test import Client

from django_live_oauth_mail import crypto
from django_live_oauth_mail.conf import conf
from django_live_oauth_mail.exceptions import (
    AuthorizationFailed,
    IdentityPlatformUnavailable,
    ReconnectRequired,
)
from django_live_oauth_mail.identity import applications, delegated, linking
from django_live_oauth_mail.identity.issued import AccessToken
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.secret import Secret
from django_live_oauth_mail.testing.identity import FakeIdentity

from ..secret_search import exc_info, places_of
from ..standins import IdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)

ALICE = "alice@outlook.com"
BOB = "bob@contoso.com"
DAVE = "dave@fabrikam.com"
REDIRECT_URI = "http://testserver/mail/callback/"
#: How long the slowed-down token endpoint takes to answer.
DELAY = 1.2


def slow_down_token_endpoint(
    platform: IdentityPlatform, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Make every token request take DELAY seconds (the stand-in has no setting)."""
    answer = platform.dispatch

    def dispatch(request: Any) -> Any:
        if request.method == "POST" and request.path.endswith("/oauth2/v2.0/token"):
            time.sleep(DELAY)
        return answer(request)

    monkeypatch.setattr(platform, "dispatch", dispatch)


def run_at_once(*calls: Callable[[], Any]) -> tuple[list[Any], float]:
    """Run each call on its own thread, all released together: results, seconds."""
    start = threading.Barrier(len(calls) + 1)
    results: list[Any] = [None] * len(calls)

    def run(index: int, call: Callable[[], Any]) -> None:
        start.wait(timeout=10)
        try:
            results[index] = call()
        except BaseException as error:  # re-raised below
            results[index] = error

    threads = [
        threading.Thread(target=run, args=(index, call), daemon=True)
        for index, call in enumerate(calls)
    ]
    for thread in threads:
        thread.start()
    start.wait(timeout=10)
    began = time.monotonic()
    for thread in threads:
        thread.join(timeout=30)
    elapsed = time.monotonic() - began
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return results, elapsed


def refresh(account: MailAccount) -> Callable[[], AccessToken]:
    """A forced refresh of ``account``, its cache read now (not on the thread)."""
    serialized = Secret(account.read_token_cache())
    return lambda: delegated.acquire_token(
        serialized,
        account.home_account_id,
        scopes=conf.SCOPES,
        mailbox=account.email,
        force_refresh=True,
    )


def refresh_now(account: MailAccount) -> AccessToken:
    """Refresh ``account`` and keep the rotated cache on it (unsaved)."""
    token = refresh(account)()
    assert token.serialized_cache is not None
    account.encrypted_token_cache = crypto.encrypt(token.serialized_cache)
    return token


def signed_in(
    platform: IdentityPlatform, email: str
) -> tuple[dict[str, Any], dict[str, str]]:
    """A started flow and the platform's answer to it, not yet exchanged."""
    flow = linking.start_link(REDIRECT_URI)
    answer = platform.approve(flow["auth_uri"], email)
    return flow, dict(answer.params)


def callback(client: Client, answer: Any) -> Any:
    return client.get(urlsplit(answer.url).path, dict(answer.params))


def token_requests(platform: IdentityPlatform) -> list[tuple[str, Any, int]]:
    return [(r.grant_type, r.email, r.status) for r in platform.token_requests]


def discovery_requests(platform: IdentityPlatform) -> int:
    return sum(1 for _, path in platform.requests if "openid-configuration" in path)


# -- parallel calls ---------------------------------------------------------------


def test_two_mailboxes_refresh_at_the_same_time(
    alice_account: MailAccount,
    bob_account: MailAccount,
    identity_platform: IdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slow_down_token_endpoint(identity_platform, monkeypatch)
    identity_platform.reset()

    tokens, elapsed = run_at_once(refresh(alice_account), refresh(bob_account))

    assert DELAY <= elapsed < 1.8 * DELAY, elapsed
    assert [identity_platform.validate_access_token(t.value) for t in tokens] == [
        ALICE,
        BOB,
    ]
    assert all(t.refreshed and t.serialized_cache for t in tokens)
    assert sorted(token_requests(identity_platform)) == [
        ("refresh_token", ALICE, 200),
        ("refresh_token", BOB, 200),
    ]


def test_linking_does_not_wait_for_a_slow_refresh(
    alice_account: MailAccount,
    identity_platform: IdentityPlatform,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flow, answer = signed_in(identity_platform, DAVE)
    slow_down_token_endpoint(identity_platform, monkeypatch)
    identity_platform.reset()

    (token, identity), elapsed = run_at_once(
        refresh(alice_account), lambda: linking.finish_link(flow, answer)
    )

    assert DELAY <= elapsed < 1.8 * DELAY, elapsed
    assert identity_platform.validate_access_token(token.value) == ALICE
    assert identity.email == DAVE
    assert sorted(token_requests(identity_platform)) == [
        ("authorization_code", DAVE, 200),
        ("refresh_token", ALICE, 200),
    ]


# -- throttling is per flow and per mailbox ---------------------------------------


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"status": 429, "headers": {"Retry-After": "20"}}, id="429"),
        pytest.param({"status": 500, "body": "<html>oops</html>"}, id="500"),
    ],
)
def test_one_users_failed_exchange_leaves_another_users_link_working(
    user: Any,
    other_user: Any,
    link: Any,
    identity_platform: IdentityPlatform,
    fault: dict[str, Any],
) -> None:
    client = Client()
    client.force_login(user)
    answer = identity_platform.approve(link.start(client), ALICE)
    identity_platform.fail_next_token_requests(1, **fault)
    assert callback(client, answer).status_code == 503

    linked = link(other_user, BOB)  # fails unless the callback succeeds

    assert linked.is_active
    assert token_requests(identity_platform) == [
        ("authorization_code", None, fault["status"]),
        ("authorization_code", BOB, 200),  # it reached the platform
    ]
    assert not MailAccount.objects.filter(email=ALICE).exists()


def test_a_retry_of_the_throttled_flow_waits_out_retry_after(
    identity_platform: IdentityPlatform,
) -> None:
    flow, answer = signed_in(identity_platform, ALICE)
    identity_platform.fail_next_token_requests(
        1, status=429, headers={"Retry-After": "20"}
    )
    with pytest.raises(IdentityPlatformUnavailable):
        linking.finish_link(flow, answer)

    with pytest.raises(IdentityPlatformUnavailable, match="Try again"):
        linking.finish_link(flow, answer)
    assert len(identity_platform.token_requests) == 1  # msal refused it itself

    # Signing in again starts a new flow, which is not throttled.
    flow, answer = signed_in(identity_platform, ALICE)
    assert linking.finish_link(flow, answer).email == ALICE


def test_a_throttled_refresh_leaves_other_mailboxes_alone(
    alice_account: MailAccount,
    bob_account: MailAccount,
    identity_platform: IdentityPlatform,
) -> None:
    identity_platform.reset()
    identity_platform.fail_next_token_requests(
        1, status=429, headers={"Retry-After": "20"}
    )
    with pytest.raises(IdentityPlatformUnavailable):
        refresh(alice_account)()

    bobs = refresh(bob_account)()
    assert identity_platform.validate_access_token(bobs.value) == BOB

    with pytest.raises(IdentityPlatformUnavailable):
        refresh(alice_account)()  # the same refresh token, within Retry-After
    assert token_requests(identity_platform) == [
        ("refresh_token", None, 429),
        ("refresh_token", BOB, 200),
    ]


def test_discovery_happens_once_per_process_for_links_refreshes_and_device_codes(
    link: Any,
    user: Any,
    other_user: Any,
    identity_platform: IdentityPlatform,
) -> None:
    # tests/sending/test_counts.py counts it for batches of sends; this adds linking,
    # several mailboxes and the public client, each building its own msal app.
    applications.reset()  # as in a new worker process
    identity_platform.reset()

    alice = link(user, ALICE)
    bob = link(other_user, BOB)
    for account in (alice, bob, alice):
        refresh_now(account)
    linking.start_device_link()
    flow, answer = signed_in(identity_platform, DAVE)
    linking.finish_link(flow, answer)

    assert discovery_requests(identity_platform) == 1
    assert [grant for grant, _, _ in token_requests(identity_platform)] == [
        "authorization_code",
        "authorization_code",
        "refresh_token",
        "refresh_token",
        "refresh_token",
        "authorization_code",
    ]


def test_reset_forgets_discovery(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    refresh_now(alice_account)
    identity_platform.reset()
    applications.reset()
    refresh_now(alice_account)
    refresh_now(alice_account)
    assert discovery_requests(identity_platform) == 1


# -- caches msal cannot read -------------------------------------------------------


def without(section: str, field: str) -> Callable[[str], str]:
    def damage(serialized: str) -> str:
        cache = json.loads(serialized)
        for entry in cache[section].values():
            del entry[field]
        return json.dumps(cache)

    return damage


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda _: "not json {", id="not-json"),
        pytest.param(lambda _: "[1, 2]", id="not-an-object"),
        pytest.param(lambda _: '{"AccessToken": []}', id="section-not-an-object"),
        pytest.param(lambda _: '{"RefreshToken": {"k": 1}}', id="entry-not-an-object"),
        pytest.param(without("AccessToken", "expires_on"), id="no-expires_on"),
        pytest.param(without("AccessToken", "secret"), id="no-access-token"),
        pytest.param(without("RefreshToken", "secret"), id="no-refresh-token"),
        pytest.param(without("Account", "authority_type"), id="no-authority_type"),
    ],
)
def test_an_unreadable_cache_asks_for_the_mailbox_to_be_linked_again(
    alice_account: MailAccount,
    identity_platform: IdentityPlatform,
    damage: Callable[[str], str],
) -> None:
    broken = damage(alice_account.read_token_cache())
    identity_platform.reset()

    # The fast path has no mailbox to name; it finds no fresh token...
    assert (
        delegated.cached_access_token(
            broken, alice_account.home_account_id, conf.SCOPES
        )
        is None
    )
    # ...and the refresh path says what is wrong and what to do.
    with pytest.raises(ReconnectRequired) as caught:
        delegated.acquire_token(
            Secret(broken),
            alice_account.home_account_id,
            scopes=conf.SCOPES,
            mailbox=ALICE,
        )
    assert ALICE in str(caught.value)
    assert "cannot be read" in str(caught.value)
    assert "Link the mailbox again" in str(caught.value)
    assert caught.value.error == "unreadable_cache"
    assert identity_platform.requests == []


def test_an_unreadable_stored_cache_marks_the_mailbox_for_relinking(
    alice_account: MailAccount,
) -> None:
    alice_account.encrypted_token_cache = crypto.encrypt("not json {")
    alice_account.save()

    with pytest.raises(ReconnectRequired, match="cannot be read"):
        get_access_token(alice_account)

    stored = MailAccount.objects.get(pk=alice_account.pk)
    assert stored.status == MailAccount.Status.RECONNECT_REQUIRED
    assert "Link the mailbox again" in stored.last_error


# -- expired refresh tokens --------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "says", "never_says"),
    [
        (
            700082,
            ["not used for 90 days", "manage.py live_oauth_mail refresh"],
            "Conditional Access",
        ),
        (
            70043,
            ["sign-in frequency", "Conditional Access", "administrator", "exclude"],
            "90 days",
        ),
    ],
)
def test_an_expired_refresh_token_says_why_and_what_to_change(
    alice_account: MailAccount,
    identity_platform: IdentityPlatform,
    code: int,
    says: list[str],
    never_says: str,
) -> None:
    identity_platform.fail_next_token_requests(
        1, status=400, error="invalid_grant", error_code=code
    )
    with pytest.raises(ReconnectRequired) as caught:
        get_access_token(alice_account, force_refresh=True)

    message = str(caught.value)
    assert ALICE in message
    assert "Link the mailbox again" in message
    for phrase in says:
        assert phrase in message
    assert never_says not in message
    assert caught.value.error_codes == [code]
    stored = MailAccount.objects.get(pk=alice_account.pk)
    assert stored.status == MailAccount.Status.RECONNECT_REQUIRED


def test_a_blank_error_description_still_gives_a_message() -> None:
    flow = linking.start_link(REDIRECT_URI)
    answer = {
        "state": flow["state"],
        "error": "server_error",
        "error_description": "\r",
    }
    with pytest.raises(AuthorizationFailed, match=r"server_error\): no details given"):
        linking.finish_link(flow, answer)


def test_a_sign_in_that_fails_after_redeeming_keeps_no_token_in_its_frames(
    identity_platform: IdentityPlatform,
) -> None:
    # The code was redeemed (access, refresh and ID tokens issued), then the
    # ID token named no mailbox: the failure's frames must not hold the tokens.
    identity_platform.add_identity(
        FakeIdentity(
            "nomailbox@fabrikam.com", preferred_username="nomailbox", email_claim=False
        )
    )
    flow, answer = signed_in(identity_platform, "nomailbox@fabrikam.com")
    try:
        linking.finish_link(flow, answer)
    except AuthorizationFailed:
        shown = places_of(exc_info())
    else:
        pytest.fail("Linking a mailbox the ID token does not name succeeded.")
    tokens = [*identity_platform._access, *identity_platform._refresh]
    assert tokens  # they were really issued
    for place, text in shown.items():
        for token in tokens:
            assert token not in text, f"a token is in the {place}"
