"""Who may claim which address: shared Send As entries, app mailboxes, links.

Every writer (the admin, the forms, the command, the connect flow) goes
through :mod:`django_live_oauth_mail.ownership.claims`, so these drive each one.
"""

from __future__ import annotations

import io
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Permission
from django.core.management import CommandError, call_command
from django.test import Client

from django_live_oauth_mail.exceptions import AddressTaken
from django_live_oauth_mail.identity.accounts import add_app_mailbox
from django_live_oauth_mail.models import MailAccount, SendAsAddress
from django_live_oauth_mail.ownership.claims import OPERATOR, send_as_problem

from ..conftest import Linker
from ..test_admin import CHANGELIST, SEND_AS_RIGHTS, change, staff_with

pytestmark = pytest.mark.django_db(transaction=True)

TENANT = "contoso.onmicrosoft.com"


@pytest.fixture
def staff_member(django_user_model: Any) -> Client:
    """Staff who may change mailboxes and their Send As addresses; no superuser."""
    return staff_with(
        django_user_model,
        "view_mailaccount",
        "change_mailaccount",
        *SEND_AS_RIGHTS,
    )


@pytest.fixture
def superuser(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def shares(client: Client, account: MailAccount, address: str) -> Any:
    """Add ``address`` as a shared Send As entry of ``account`` in the admin."""
    return change(client, account, send_as=[{"address": address, "shared": "on"}])


def entries(account: MailAccount) -> list[tuple[str, bool]]:
    return list(account.send_as_addresses.values_list("address", "shared"))


@pytest.mark.parametrize(
    ("site_settings", "address"),
    [
        ({}, "webmaster@example.com"),  # DEFAULT_FROM_EMAIL in tests/settings.py
        ({}, "WebMaster@Example.com"),
        ({"DEFAULT_FROM_EMAIL": "Site <noreply@example.com>"}, "noreply@example.com"),
        ({"SERVER_EMAIL": "Errors <Errors@Example.com>"}, "errors@example.com"),
        ({"DEFAULT_ACCOUNT": "Sender <Sender@Contoso.com>"}, "sender@contoso.com"),
    ],
)
def test_staff_cannot_share_a_site_address(
    staff_member: Client,
    alice_account: MailAccount,
    settings: Any,
    live_settings: dict[str, Any],
    site_settings: dict[str, str],
    address: str,
) -> None:
    for name, value in site_settings.items():
        if name == "DEFAULT_ACCOUNT":
            live_settings[name] = value
        else:
            setattr(settings, name, value)

    response = shares(staff_member, alice_account, address)

    assert response.status_code == 200
    page = response.content.decode()
    assert "one of the site&#x27;s addresses" in page
    assert "Only a superuser can make it a shared Send As address" in page
    assert entries(alice_account) == []


@pytest.mark.parametrize("status", ["active", "reconnect_required"])
def test_staff_cannot_share_another_mailboxs_address(
    staff_member: Client,
    link: Linker,
    alice_account: MailAccount,
    other_user: Any,
    status: str,
) -> None:
    theirs = link(other_user, "dave@fabrikam.com")
    MailAccount.objects.filter(pk=theirs.pk).update(status=status)

    response = shares(staff_member, alice_account, "Dave@Fabrikam.COM")

    assert response.status_code == 200
    assert "another mailbox&#x27;s address" in response.content.decode()
    assert entries(alice_account) == []


def test_staff_cannot_share_an_address_another_mailbox_already_shares(
    staff_member: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    SendAsAddress.objects.create(
        account=bob_account, address="support@contoso.com", shared=True
    )
    response = shares(staff_member, alice_account, "support@contoso.com")
    assert response.status_code == 200
    assert entries(alice_account) == []


def test_staff_may_share_an_address_no_one_else_has(
    staff_member: Client, alice_account: MailAccount
) -> None:
    response = shares(staff_member, alice_account, "Team@Contoso.com")
    assert response.status_code == 302
    assert entries(alice_account) == [("team@contoso.com", True)]


def test_a_superuser_may_share_a_site_address_and_another_mailboxs(
    superuser: Client, link: Linker, alice_account: MailAccount, other_user: Any
) -> None:
    link(other_user, "dave@fabrikam.com")
    response = change(
        superuser,
        alice_account,
        send_as=[
            {"address": "WebMaster@example.com", "shared": "on"},
            {"address": "dave@fabrikam.com", "shared": "on"},
        ],
    )
    assert response.status_code == 302
    assert entries(alice_account) == [
        ("dave@fabrikam.com", True),
        ("webmaster@example.com", True),
    ]


def test_sharing_a_persons_mailbox_takes_its_own_permission(
    staff_member: Client,
    superuser: Client,
    django_user_model: Any,
    alice_account: MailAccount,
) -> None:
    response = change(staff_member, alice_account, shared="on")
    assert response.status_code == 200
    assert "share_mailaccount" in response.text
    assert MailAccount.objects.get(pk=alice_account.pk).shared is False

    assert change(superuser, alice_account, shared="on").status_code == 302
    assert MailAccount.objects.get(pk=alice_account.pk).shared is True
    # Turning sharing off takes nothing from anyone: any editor may.
    assert change(staff_member, alice_account).status_code == 302
    assert MailAccount.objects.get(pk=alice_account.pk).shared is False

    clerk = django_user_model.objects.get(username="clerk")
    clerk.user_permissions.add(Permission.objects.get(codename="share_mailaccount"))
    assert change(staff_member, alice_account, shared="on").status_code == 302
    assert MailAccount.objects.get(pk=alice_account.pk).shared is True


def test_the_rule_is_the_same_for_code_that_knows_no_user(
    alice_account: MailAccount, django_user_model: Any
) -> None:
    retired = django_user_model.objects.create_superuser("old", "o@example.com", "pw")
    retired.is_active = False
    address = "webmaster@example.com"

    assert send_as_problem(alice_account, address, shared=True, by=None)
    assert send_as_problem(alice_account, address, shared=True, by=retired)
    assert send_as_problem(alice_account, address, shared=True, by=OPERATOR) is None
    # A personal entry never takes it, whoever asks.
    assert send_as_problem(alice_account, address, shared=False, by=OPERATOR)


# -- app mailboxes and personal links ------------------------------------------------


def test_an_app_mailbox_cannot_take_a_linked_address(
    superuser: Client, alice_account: MailAccount
) -> None:
    response = superuser.post(
        f"{CHANGELIST}add/", {"email": "ALICE@outlook.com", "tenant_id": TENANT}
    )
    assert response.status_code == 200
    assert "is linked as a person&#x27;s mailbox" in response.content.decode()
    with pytest.raises(AddressTaken, match="is linked as a person's mailbox"):
        add_app_mailbox("Alice@Outlook.com", TENANT)
    with pytest.raises(CommandError, match="is linked as a person's mailbox"):
        call_command(
            "live_oauth_mail",
            "add-app",
            "alice@outlook.com",
            "--tenant",
            TENANT,
            stdout=io.StringIO(),
        )
    assert list(MailAccount.objects.values_list("email", "kind")) == [
        ("alice@outlook.com", "personal")
    ]


def test_linking_an_app_mailboxs_address_is_refused_with_a_page(
    link: Linker, user: Any
) -> None:
    add_app_mailbox("Dave@Fabrikam.com", TENANT)
    client = Client()
    client.force_login(user)
    answer = link.platform.approve(link.start(client), "dave@fabrikam.com")

    response = client.get(urlsplit(answer.url).path, dict(answer.params))

    assert response.status_code == 409
    page = response.content.decode()
    assert "This mailbox cannot be linked" in page
    assert "is one of the site&#x27;s app mailboxes" in page
    assert list(MailAccount.objects.values_list("email", "kind", "user")) == [
        ("dave@fabrikam.com", "app", None)
    ]


# -- a second user linking the same mailbox ----------------------------------------


def test_a_second_user_linking_the_same_mailbox_never_takes_over_the_first_link(
    link: Linker, user: Any, other_user: Any
) -> None:
    first = link(user, "alice@outlook.com")

    second = link(other_user, "Alice@Outlook.com")

    assert second.pk != first.pk
    assert second.home_account_id == first.home_account_id  # the same mailbox
    kept = MailAccount.objects.get(pk=first.pk)
    assert kept.user_id == user.pk
    # Still the first sign-in's tokens: the second user's did not overwrite them.
    assert kept.encrypted_token_cache == first.encrypted_token_cache
    assert kept.read_token_cache() != second.read_token_cache()
    assert sorted(MailAccount.objects.values_list("user_id", flat=True)) == sorted(
        [user.pk, other_user.pk]
    )
