"""Owners add and remove their mailboxes' Send As addresses, and only their own."""

from __future__ import annotations

from typing import Any

import pytest
from django.forms import modelform_factory
from django.test import Client

from django_live_oauth_mail.forms import SendAsAddressForm
from django_live_oauth_mail.models import MailAccount, SendAsAddress

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def client(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def add(client: Client, account: MailAccount, address: str, **extra: str) -> Any:
    return client.post(
        f"/mail/{account.pk}/send-as/", {"address": address, **extra}, follow=True
    )


def addresses_of(account: MailAccount) -> list[tuple[str, bool]]:
    return list(
        SendAsAddress.objects.filter(account=account).values_list("address", "shared")
    )


def test_owner_adds_an_address_stored_lowercase(
    client: Client, alice_account: MailAccount
) -> None:
    response = add(client, alice_account, "  Shared-Inbox@Contoso.com ")
    assert response.redirect_chain == [("/mail/", 302)]
    assert addresses_of(alice_account) == [("shared-inbox@contoso.com", False)]
    page = response.content.decode()
    assert (
        "alice@outlook.com can now send your mail as shared-inbox@contoso.com" in page
    )
    assert 'data-send-as="shared-inbox@contoso.com"' in page


def test_owner_cannot_make_an_address_shared(
    client: Client, alice_account: MailAccount
) -> None:
    add(client, alice_account, "noreply@contoso.com", shared="on")
    assert addresses_of(alice_account) == [("noreply@contoso.com", False)]


def test_a_duplicate_address_is_refused(
    client: Client, alice_account: MailAccount
) -> None:
    add(client, alice_account, "support@contoso.com")
    response = add(client, alice_account, "SUPPORT@contoso.com")
    assert response.status_code == 200
    assert addresses_of(alice_account) == [("support@contoso.com", False)]
    assert (
        "alice@outlook.com already sends as support@contoso.com"
        in response.content.decode()
    )


def test_the_same_address_may_serve_two_mailboxes(
    client: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    add(client, alice_account, "support@contoso.com")
    add(client, bob_account, "support@contoso.com")
    assert addresses_of(bob_account) == [("support@contoso.com", False)]


def test_the_mailboxs_own_address_is_refused(
    client: Client, alice_account: MailAccount
) -> None:
    response = add(client, alice_account, "Alice@Outlook.com")
    assert addresses_of(alice_account) == []
    assert (
        "alice@outlook.com is the mailbox&#x27;s own address"
        in response.content.decode()
    )


@pytest.mark.parametrize(
    "address",
    ["", "not-an-address", "<script>x</script>@contoso.com", "a@" + "b" * 260],
)
def test_an_invalid_address_is_refused(
    client: Client, alice_account: MailAccount, address: str
) -> None:
    response = add(client, alice_account, address)
    assert response.redirect_chain == [("/mail/", 302)]
    assert addresses_of(alice_account) == []
    page = response.content.decode()
    assert 'class="error"' in page
    assert "<script>x</script>" not in page


@pytest.mark.parametrize(
    "address",
    [
        "Webmaster@example.com",  # DEFAULT_FROM_EMAIL
        "errors@example.com",  # SERVER_EMAIL
        "dave@fabrikam.com",  # another user's linked mailbox
        "noreply@contoso.com",  # a shared Send As address
        "site@contoso.com",  # DEFAULT_ACCOUNT
    ],
)
def test_the_sites_and_other_mailboxes_addresses_are_refused(
    client: Client,
    alice_account: MailAccount,
    link: Any,
    other_user: Any,
    settings: Any,
    live_settings: dict[str, Any],
    address: str,
) -> None:
    settings.SERVER_EMAIL = "Errors <errors@example.com>"
    live_settings["DEFAULT_ACCOUNT"] = "site@contoso.com"
    link(other_user, "dave@fabrikam.com")
    support = link(other_user, "bob@contoso.com")
    SendAsAddress.objects.create(
        account=support, address="noreply@contoso.com", shared=True
    )

    response = add(client, alice_account, address)

    assert addresses_of(alice_account) == []
    assert "so one user&#x27;s mailbox cannot send as it" in response.content.decode()


def test_a_superuser_may_add_a_site_address_only_as_shared(
    alice_account: MailAccount, admin_user: Any
) -> None:
    AdminForm = modelform_factory(
        SendAsAddress, form=SendAsAddressForm, fields=("address", "shared")
    )
    data = {"address": "webmaster@example.com"}

    personal = AdminForm(
        data, instance=SendAsAddress(account=alice_account), requested_by=admin_user
    )
    shared = AdminForm(
        {**data, "shared": "on"},
        instance=SendAsAddress(account=alice_account),
        requested_by=admin_user,
    )

    assert personal.errors["address"][0].startswith("webmaster@example.com is the")
    assert shared.is_valid(), shared.errors
    shared.save()
    assert addresses_of(alice_account) == [("webmaster@example.com", True)]


def test_owner_cannot_remove_a_shared_address(
    client: Client, alice_account: MailAccount
) -> None:
    shared = SendAsAddress.objects.create(
        account=alice_account, address="noreply@contoso.com", shared=True
    )
    page = client.get("/mail/").content.decode()
    assert f"/mail/send-as/{shared.pk}/remove/" not in page

    response = client.post(f"/mail/send-as/{shared.pk}/remove/")

    assert response.status_code == 404
    assert addresses_of(alice_account) == [("noreply@contoso.com", True)]


def test_owner_removes_an_address(client: Client, alice_account: MailAccount) -> None:
    kept = SendAsAddress.objects.create(account=alice_account, address="a@contoso.com")
    removed = SendAsAddress.objects.create(
        account=alice_account, address="b@contoso.com"
    )
    response = client.post(f"/mail/send-as/{removed.pk}/remove/", follow=True)
    assert response.redirect_chain == [("/mail/", 302)]
    assert list(SendAsAddress.objects.values_list("pk", flat=True)) == [kept.pk]
    assert MailAccount.objects.filter(pk=alice_account.pk).exists()
    assert (
        "alice@outlook.com no longer sends from b@contoso.com"
        in response.content.decode()
    )


def test_another_user_cannot_add_to_someone_elses_mailbox(
    link: Any, other_user: Any, client: Client
) -> None:
    theirs = link(other_user, "bob@contoso.com")
    response = client.post(
        f"/mail/{theirs.pk}/send-as/", {"address": "ceo@contoso.com"}
    )
    assert response.status_code == 404
    assert SendAsAddress.objects.count() == 0


def test_another_user_cannot_remove_from_someone_elses_mailbox(
    link: Any, other_user: Any, client: Client
) -> None:
    theirs = link(other_user, "bob@contoso.com")
    send_as = SendAsAddress.objects.create(account=theirs, address="team@contoso.com")
    response = client.post(f"/mail/send-as/{send_as.pk}/remove/")
    assert response.status_code == 404
    assert addresses_of(theirs) == [("team@contoso.com", False)]


def test_a_missing_mailbox_or_address_is_404(client: Client) -> None:
    assert client.post("/mail/999/send-as/", {"address": "a@b.com"}).status_code == 404
    assert client.post("/mail/send-as/999/remove/").status_code == 404


def test_anonymous_is_sent_to_login(link: Any, user: Any) -> None:
    account = link(user, "alice@outlook.com")
    send_as = SendAsAddress.objects.create(account=account, address="team@contoso.com")
    anonymous = Client()
    for url, data in [
        (f"/mail/{account.pk}/send-as/", {"address": "ceo@contoso.com"}),
        (f"/mail/send-as/{send_as.pk}/remove/", {}),
    ]:
        response = anonymous.post(url, data)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/login/?next="), url
    assert addresses_of(account) == [("team@contoso.com", False)]


def test_get_is_not_allowed(client: Client, alice_account: MailAccount) -> None:
    send_as = SendAsAddress.objects.create(
        account=alice_account, address="team@contoso.com"
    )
    assert client.get(f"/mail/{alice_account.pk}/send-as/").status_code == 405
    assert client.get(f"/mail/send-as/{send_as.pk}/remove/").status_code == 405
    assert addresses_of(alice_account) == [("team@contoso.com", False)]


def test_adding_and_removing_need_csrf(user: Any, alice_account: MailAccount) -> None:
    send_as = SendAsAddress.objects.create(
        account=alice_account, address="team@contoso.com"
    )
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(user)
    response = strict.post(
        f"/mail/{alice_account.pk}/send-as/", {"address": "ceo@contoso.com"}
    )
    assert response.status_code == 403
    assert strict.post(f"/mail/send-as/{send_as.pk}/remove/").status_code == 403
    assert addresses_of(alice_account) == [("team@contoso.com", False)]


def test_mailboxes_page_shows_addresses_shared_badges_and_the_exchange_hint(
    client: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    MailAccount.objects.filter(pk=bob_account.pk).update(shared=True)
    SendAsAddress.objects.create(
        account=alice_account, address="noreply@contoso.com", shared=True
    )
    page = client.get("/mail/").content.decode()
    alice_row, bob_row = (
        page.split('data-mailbox="alice@outlook.com"')[1].split("data-mailbox=")[0],
        page.split('data-mailbox="bob@contoso.com"')[1],
    )
    assert 'data-send-as="noreply@contoso.com"' in alice_row
    assert "lom-badge shared" in alice_row and "lom-badge shared" in bob_row
    assert f'action="/mail/{alice_account.pk}/send-as/"' in alice_row
    assert "Add-RecipientPermission" in page
