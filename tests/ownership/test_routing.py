"""Who may send as whom: no code path sends through a mailbox its user does not own.

Every test here sends over real sockets and asserts what the SMTP stand-in
saw; "nothing was sent" means no session was even opened.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.mail import EmailMessage, send_mail
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.test import Client
from django.test.utils import CaptureQueriesContext

from django_live_oauth_mail import sending_as
from django_live_oauth_mail.exceptions import (
    AccountNotFound,
    ConfigurationError,
    SendAsDenied,
    SenderNotAllowed,
)
from django_live_oauth_mail.middleware import SendingAsMiddleware
from django_live_oauth_mail.models import MailAccount, SendAsAddress
from django_live_oauth_mail.ownership.acting import acting_user_pk
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from ..conftest import Linker
from ..mailers import make_backend

pytestmark = pytest.mark.django_db

ALICE_VARIANTS = [
    "alice@outlook.com",
    "ALICE@Outlook.COM",
    "Alice <alice@outlook.com>",
    '"Alice A." <Alice@OUTLOOK.com>',
    "  alice@outlook.com  ",
    "=?utf-8?q?Alice?= <alice@outlook.com>",
]


def message(sender: str | None, subject: str = "Hi") -> EmailMessage:
    return EmailMessage(subject, "body", sender, ["rcpt@example.org"])


def post_contact(client: Client, sender: str) -> Any:
    return client.post("/contact/", {"email": sender, "message": "hello"})


# -- a view that copies the visitor's address into from_email ------------------


@pytest.mark.parametrize("sender", ALICE_VARIANTS)
def test_anonymous_visitor_cannot_send_as_a_linked_mailbox(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, sender: str
) -> None:
    response = post_contact(Client(), sender)

    assert response.status_code == 403
    assert response.content == b"SenderNotAllowed"
    assert smtp_server.sessions == 0
    assert smtp_server.auth_attempts == []


@pytest.mark.parametrize("sender", ALICE_VARIANTS)
def test_another_user_without_a_mailbox_cannot_send_as_a_linked_mailbox(
    alice_account: MailAccount,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
    sender: str,
) -> None:
    client = Client()
    client.force_login(other_user)

    assert post_contact(client, sender).status_code == 403
    assert smtp_server.sessions == 0


def test_another_user_with_a_mailbox_cannot_send_as_someone_elses(
    alice_account: MailAccount,
    link: Linker,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    link(other_user, "dave@fabrikam.com")
    client = Client()
    client.force_login(other_user)

    assert post_contact(client, "Alice <alice@outlook.com>").status_code == 403
    # Their own mailbox still works from the same view.
    assert post_contact(client, "dave@fabrikam.com").content == b"sent 1"
    assert [m.authenticated_as for m in smtp_server.messages] == ["dave@fabrikam.com"]


def test_owners_view_sends_with_nothing_but_the_middleware(
    alice_account: MailAccount, user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    client = Client()
    client.force_login(user)

    assert post_contact(client, "Alice <ALICE@outlook.com>").content == b"sent 1"

    [received] = smtp_server.messages
    assert received.authenticated_as == "alice@outlook.com"
    assert received.mail_from == "ALICE@outlook.com"


def test_without_the_middleware_a_view_has_no_acting_user(
    alice_account: MailAccount,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    settings: Any,
) -> None:
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if not m.endswith("SendingAsMiddleware")
    ]
    client = Client()
    client.force_login(user)

    assert post_contact(client, "alice@outlook.com").status_code == 403
    assert smtp_server.sessions == 0


# -- shared mailboxes ----------------------------------------------------------


def test_shared_mailbox_serves_any_code(
    alice_account: MailAccount, other_user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(shared=True)
    visitor = Client()
    signed_in = Client()
    signed_in.force_login(other_user)

    assert post_contact(visitor, "alice@outlook.com").content == b"sent 1"
    assert post_contact(signed_in, "Alice <alice@outlook.com>").content == b"sent 1"
    assert message("alice@outlook.com").send() == 1  # no request at all

    assert [m.authenticated_as for m in smtp_server.messages] == [
        "alice@outlook.com"
    ] * 3


def test_the_owners_own_link_wins_over_a_shared_one(
    link: Linker,
    user: Any,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    shared = link(user, "bob@contoso.com")
    MailAccount.objects.filter(pk=shared.pk).update(shared=True)
    own = link(other_user, "bob@contoso.com")

    with sending_as(other_user):
        assert make_backend().send_messages([message("bob@contoso.com")]) == 1
    assert make_backend().send_messages([message("bob@contoso.com")]) == 1

    used = list(MailAccount.objects.filter(last_used_at__isnull=False))
    assert {a.pk for a in used} == {own.pk, shared.pk}


# -- outside a request ---------------------------------------------------------


def test_outside_a_request_sending_needs_an_acting_user(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    with pytest.raises(SenderNotAllowed) as caught:
        send_mail("s", "b", "alice@outlook.com", ["r@example.org"])

    text = str(caught.value)
    assert "alice@outlook.com" in text
    assert "sending_as" in text and "shared" in text and "account=" in text
    assert caught.value.mailbox == "alice@outlook.com"
    assert isinstance(caught.value, AccountNotFound)
    assert smtp_server.sessions == 0


def test_sending_as_the_owner_sends(
    alice_account: MailAccount, user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    with sending_as(user):
        assert send_mail("s", "b", "alice@outlook.com", ["r@example.org"]) == 1
    # A task gets a primary key, not a user: that works too.
    with sending_as(user.pk):
        assert send_mail("s", "b", "alice@outlook.com", ["r@example.org"]) == 1
    assert [m.authenticated_as for m in smtp_server.messages] == [
        "alice@outlook.com"
    ] * 2


def test_sending_as_another_user_does_not_send(
    alice_account: MailAccount, other_user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    with sending_as(other_user), pytest.raises(SenderNotAllowed, match="pk"):
        send_mail("s", "b", "alice@outlook.com", ["r@example.org"])
    assert smtp_server.sessions == 0


def test_user_option_sends_that_users_mailbox_only(
    alice_account: MailAccount,
    user: Any,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    assert make_backend(user=user).send_messages([message("alice@outlook.com")]) == 1
    # user= wins over the acting user, both ways.
    with sending_as(user), pytest.raises(SenderNotAllowed):
        make_backend(user=other_user).send_messages([message("alice@outlook.com")])
    # No fallback to "the user's newest mailbox" for a From they don't own.
    with pytest.raises(AccountNotFound, match=r"nobody@example\.org"):
        make_backend(user=user).send_messages([message("nobody@example.org")])
    assert [m.authenticated_as for m in smtp_server.messages] == ["alice@outlook.com"]


def test_explicit_account_is_trusted(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    assert (
        make_backend(account="alice@outlook.com").send_messages(
            [message("alice@outlook.com")]
        )
        == 1
    )
    assert smtp_server.messages[0].authenticated_as == "alice@outlook.com"


def test_a_refused_message_fails_the_batch_before_anything_is_sent(
    alice_account: MailAccount,
    link: Linker,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    link(other_user, "dave@fabrikam.com")
    batch = [message("dave@fabrikam.com"), message("alice@outlook.com")]

    with sending_as(other_user), pytest.raises(SenderNotAllowed):
        make_backend().send_messages(batch)
    assert smtp_server.sessions == 0

    with sending_as(other_user):
        assert make_backend(fail_silently=True).send_messages(batch) == 1
    assert [m.authenticated_as for m in smtp_server.messages] == ["dave@fabrikam.com"]


@pytest.mark.parametrize("sender", ["<>", "Alice <>", "@"])
def test_an_unreadable_from_is_refused(
    alice_account: MailAccount, user: Any, smtp_server: XOAuth2SMTPServer, sender: str
) -> None:
    with sending_as(user), pytest.raises(AccountNotFound, match="one readable address"):
        message(sender).send()
    assert smtp_server.sessions == 0


@pytest.mark.parametrize(
    "sender",
    [
        "alice@outlook.com, mallory@example.org",
        "mallory@example.org, alice@outlook.com",
        "Alice <alice@outlook.com>, Mallory <mallory@example.org>",
    ],
)
def test_a_from_with_two_addresses_is_refused(
    alice_account: MailAccount, user: Any, smtp_server: XOAuth2SMTPServer, sender: str
) -> None:
    # Read as either address, it would sign in as Alice and send a message
    # whose From names someone else too.
    with sending_as(user), pytest.raises(AccountNotFound, match="one readable address"):
        message(sender).send()
    assert smtp_server.sessions == 0


# -- the acting user itself ----------------------------------------------------


@pytest.mark.offline
def test_sending_as_nests_and_restores(user: Any, other_user: Any) -> None:
    assert acting_user_pk() is None
    with sending_as(user):
        assert acting_user_pk() == user.pk
        with sending_as(other_user):
            assert acting_user_pk() == other_user.pk
        with sending_as(None):
            assert acting_user_pk() is None
        assert acting_user_pk() == user.pk
    assert acting_user_pk() is None


@pytest.mark.offline
def test_sending_as_decorates_functions_and_coroutines(
    user: Any, other_user: Any
) -> None:
    @sending_as(user)
    def plain() -> Any:
        return acting_user_pk()

    @sending_as(other_user)
    async def coroutine() -> Any:
        await asyncio.sleep(0)
        return acting_user_pk()

    assert plain() == user.pk
    assert asyncio.run(coroutine()) == other_user.pk
    assert acting_user_pk() is None


@pytest.mark.offline
def test_sending_as_refuses_what_is_not_a_user(user: Any) -> None:
    with pytest.raises(TypeError, match="True"):
        sending_as(True)  # True == 1 would act as the user with pk 1
    with pytest.raises(TypeError, match="generator"):

        @sending_as(user)
        def messages() -> Any:
            yield acting_user_pk()

    assert acting_user_pk() is None


@pytest.mark.offline
def test_one_sending_as_object_serves_threads_that_overlap(
    user: Any, other_user: Any
) -> None:
    as_user = sending_as(user)
    entered = threading.Barrier(2)
    first_left = threading.Event()
    seen: dict[str, Any] = {}

    def first() -> None:
        with as_user:
            entered.wait()
        seen["first after"] = acting_user_pk()
        first_left.set()

    def second() -> None:
        with sending_as(other_user), as_user:
            entered.wait()
            first_left.wait()
            seen["second inside"] = acting_user_pk()
        seen["second after"] = acting_user_pk()

    threads = [threading.Thread(target=first), threading.Thread(target=second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    # Each thread's exit undid its own block, in its own context.
    assert seen == {
        "first after": None,
        "second inside": user.pk,
        "second after": None,
    }


@pytest.mark.offline
def test_a_new_thread_starts_with_no_acting_user(user: Any) -> None:
    seen: list[Any] = []
    with sending_as(user):
        thread = threading.Thread(target=lambda: seen.append(acting_user_pk()))
        thread.start()
        thread.join()
    assert seen == [None]


@pytest.mark.offline
def test_concurrent_tasks_each_keep_their_own_acting_user(
    user: Any, other_user: Any
) -> None:
    async def as_(who: Any) -> Any:
        with sending_as(who):
            await asyncio.sleep(0.01)  # let the other task run in between
            return acting_user_pk()

    async def both() -> list[Any]:
        return list(await asyncio.gather(as_(user), as_(other_user)))

    assert asyncio.run(both()) == [user.pk, other_user.pk]


@pytest.mark.offline
def test_middleware_sets_the_acting_user_for_sync_and_async_views(
    user: Any,
) -> None:
    request = HttpRequest()
    request.user = user

    def view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(acting_user_pk()))

    async def async_view(request: HttpRequest) -> HttpResponse:
        return HttpResponse(str(acting_user_pk()))

    assert SendingAsMiddleware(view)(request).content == str(user.pk).encode()
    response = asyncio.run(SendingAsMiddleware(async_view)(request))
    assert response.content == str(user.pk).encode()
    assert acting_user_pk() is None


@pytest.mark.offline
def test_anonymous_request_user_is_no_acting_user() -> None:
    from django.contrib.auth.models import AnonymousUser

    with sending_as(AnonymousUser()):
        assert acting_user_pk() is None


# -- Send As addresses ---------------------------------------------------------


def test_send_as_a_listed_address_goes_through_the_users_mailbox(
    alice_account: MailAccount, user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    SendAsAddress.objects.create(account=alice_account, address="Team@Contoso.com")
    smtp_server.send_as["alice@outlook.com"] = {"team@contoso.com"}

    with sending_as(user):
        assert message("Team <team@contoso.com>").send() == 1

    [received] = smtp_server.messages
    assert received.authenticated_as == "alice@outlook.com"
    assert received.mail_from == "team@contoso.com"
    assert received.message["From"] == "Team <team@contoso.com>"


def test_send_as_an_unlisted_address_is_refused_before_sending(
    alice_account: MailAccount, user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    SendAsAddress.objects.create(account=alice_account, address="team@contoso.com")
    with sending_as(user), pytest.raises(AccountNotFound, match=r"sales@contoso\.com"):
        message("sales@contoso.com").send()
    assert smtp_server.sessions == 0


def test_someone_elses_send_as_address_is_not_usable(
    alice_account: MailAccount, other_user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    SendAsAddress.objects.create(account=alice_account, address="team@contoso.com")
    with sending_as(other_user), pytest.raises(SenderNotAllowed):
        message("team@contoso.com").send()
    assert post_contact(Client(), "team@contoso.com").status_code == 403
    assert smtp_server.sessions == 0


def test_a_shared_send_as_address_serves_any_code_without_sharing_the_mailbox(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    SendAsAddress.objects.create(
        account=alice_account, address="noreply@contoso.com", shared=True
    )
    smtp_server.send_as["alice@outlook.com"] = {"noreply@contoso.com"}

    assert message("noreply@contoso.com").send() == 1
    with pytest.raises(SenderNotAllowed):
        message("alice@outlook.com").send()
    assert [m.mail_from for m in smtp_server.messages] == ["noreply@contoso.com"]


def test_send_as_not_granted_in_exchange_names_the_permission(
    alice_account: MailAccount, user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    SendAsAddress.objects.create(account=alice_account, address="team@contoso.com")

    with sending_as(user), pytest.raises(SendAsDenied) as caught:
        message("team@contoso.com").send()

    text = str(caught.value)
    assert "5.2.252" in text
    assert (
        "Add-RecipientPermission -Identity team@contoso.com -Trustee "
        "alice@outlook.com -AccessRights SendAs"
    ) in text
    assert smtp_server.messages == []


def test_send_as_addresses_do_not_add_queries_per_message(
    alice_account: MailAccount, user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    for address in ("a@contoso.com", "b@contoso.com", "c@contoso.com"):
        SendAsAddress.objects.create(account=alice_account, address=address)
    smtp_server.send_as["alice@outlook.com"] = {"a@contoso.com", "b@contoso.com"}
    batch = [message(s) for s in ("a@contoso.com", "alice@outlook.com") * 5]
    batch.append(message("b@contoso.com"))

    with sending_as(user), CaptureQueriesContext(connection) as queries:
        assert make_backend().send_messages(batch) == 11

    assert len(queries) == 2  # find the mailboxes, mark them used
    assert smtp_server.sessions == 1


def test_a_users_send_as_entry_never_takes_the_sites_or_anothers_address(
    alice_account: MailAccount,
    link: Linker,
    user: Any,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    # Entries written past the form (which refuses them): Alice's mailbox
    # lists the site's From, Dave's own address and a shared Send As address.
    dave = link(other_user, "dave@fabrikam.com")
    site = link(other_user, "bob@contoso.com")
    live_settings["DEFAULT_ACCOUNT"] = "Site <Bob@contoso.com>"
    SendAsAddress.objects.create(
        account=site, address="noreply@contoso.com", shared=True
    )
    for address in (
        "webmaster@example.com",
        "dave@fabrikam.com",
        "noreply@contoso.com",
    ):
        SendAsAddress.objects.create(account=alice_account, address=address)
    smtp_server.send_as["bob@contoso.com"] = {
        "webmaster@example.com",
        "noreply@contoso.com",
    }

    with sending_as(user):
        assert message("webmaster@example.com").send() == 1
        assert message("noreply@contoso.com").send() == 1
        with pytest.raises(SenderNotAllowed, match=r"dave@fabrikam\.com"):
            message("dave@fabrikam.com").send()

    assert [m.authenticated_as for m in smtp_server.messages] == ["bob@contoso.com"] * 2
    assert not MailAccount.objects.filter(pk=dave.pk, last_used_at__isnull=False)


def test_an_address_linked_twice_is_chosen_shared_first(
    link: Linker,
    user: Any,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    link(user, "bob@contoso.com")  # older, a person's own link
    shared = link(other_user, "bob@contoso.com")
    MailAccount.objects.filter(pk=shared.pk).update(shared=True)
    live_settings["DEFAULT_ACCOUNT"] = "bob@contoso.com"
    smtp_server.send_as["bob@contoso.com"] = {"webmaster@example.com"}

    assert make_backend(account="bob@contoso.com").send_messages([message(None)]) == 1
    assert message(None).send() == 1

    used = MailAccount.objects.filter(last_used_at__isnull=False)
    assert list(used.values_list("pk", flat=True)) == [shared.pk]


# -- DEFAULT_ACCOUNT -----------------------------------------------------------


@pytest.fixture
def shared_default(
    link: Linker, other_user: Any, live_settings: dict[str, Any]
) -> MailAccount:
    """bob@contoso.com as DEFAULT_ACCOUNT, allowed to send as the site's From."""
    account = link(other_user, "bob@contoso.com")
    live_settings["DEFAULT_ACCOUNT"] = "Bob@Contoso.com"
    return account


@pytest.mark.parametrize(
    "sender", [None, "webmaster@example.com", "errors@example.com", "BOB@contoso.com"]
)
def test_default_account_serves_the_sites_own_senders(
    shared_default: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    settings: Any,
    sender: str | None,
) -> None:
    settings.SERVER_EMAIL = "Errors <errors@example.com>"
    smtp_server.send_as["bob@contoso.com"] = {
        "webmaster@example.com",
        "errors@example.com",
    }

    assert message(sender).send() == 1  # no acting user at all
    assert smtp_server.messages[0].authenticated_as == "bob@contoso.com"


@pytest.mark.parametrize("sender", ["stranger@example.org", *ALICE_VARIANTS])
def test_default_account_does_not_serve_other_senders(
    shared_default: MailAccount,
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    sender: str,
) -> None:
    assert post_contact(Client(), sender).status_code == 403
    with pytest.raises(AccountNotFound, match="DEFAULT_ACCOUNT"):
        message("stranger@example.org").send()
    assert smtp_server.sessions == 0


def test_a_default_account_that_is_not_linked_is_named(
    smtp_server: XOAuth2SMTPServer, live_settings: dict[str, Any]
) -> None:
    live_settings["DEFAULT_ACCOUNT"] = "noreply@contoso.com"
    with pytest.raises(AccountNotFound, match=r"noreply@contoso\.com.*not an active"):
        message(None).send()


# -- ROUTING = "any" and the checks --------------------------------------------


def test_routing_any_keeps_the_old_behaviour(
    alice_account: MailAccount,
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["ROUTING"] = "any"
    live_settings["DEFAULT_ACCOUNT"] = "bob@contoso.com"

    assert post_contact(Client(), "Alice <ALICE@outlook.com>").content == b"sent 1"
    with pytest.raises(SendAsDenied):  # DEFAULT_ACCOUNT takes any unknown From
        message("stranger@example.org").send()

    assert [m.authenticated_as for m in smtp_server.messages] == ["alice@outlook.com"]
    assert smtp_server.auth_attempts[-1].user == "bob@contoso.com"


def test_an_unknown_routing_is_a_configuration_error(
    alice_account: MailAccount,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["ROUTING"] = "anyone"
    with sending_as(user), pytest.raises(ConfigurationError, match="ROUTING"):
        make_backend(fail_silently=True).send_messages([message("nobody@example.org")])
    assert smtp_server.sessions == 0


def check_ids() -> set[str]:
    return {message.id for message in run_checks() if message.id}


@pytest.mark.offline
def test_check_warns_when_routing_is_any(live_settings: dict[str, Any]) -> None:
    assert "live_oauth_mail.W005" not in check_ids()
    live_settings["ROUTING"] = "any"
    assert "live_oauth_mail.W005" in check_ids()


@pytest.mark.offline
def test_check_errors_on_an_unknown_routing(live_settings: dict[str, Any]) -> None:
    live_settings["ROUTING"] = "owners"
    assert "live_oauth_mail.E006" in check_ids()


@pytest.mark.offline
def test_check_warns_without_the_middleware(settings: Any) -> None:
    assert "live_oauth_mail.W004" not in check_ids()
    settings.MIDDLEWARE = [
        m for m in settings.MIDDLEWARE if not m.endswith("SendingAsMiddleware")
    ]
    assert "live_oauth_mail.W004" in check_ids()


def test_routing_any_prefers_a_mailboxs_own_address_to_a_send_as_entry(
    alice_account: MailAccount,
    link: Linker,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    # Alice's older link lists Bob's address as Send As; Bob's own link wins.
    SendAsAddress.objects.create(account=alice_account, address="bob@contoso.com")
    link(other_user, "bob@contoso.com")
    live_settings["ROUTING"] = "any"

    assert message("bob@contoso.com").send() == 1
    assert smtp_server.messages[0].authenticated_as == "bob@contoso.com"
