"""The admin: health, actions, shared mailboxes and Send As, and never a token."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib import messages
from django.contrib.auth.models import Permission
from django.db import OperationalError
from django.db.models.signals import pre_delete, pre_save
from django.test import Client
from django.utils import timezone

from django_live_oauth_mail import crypto, signals
from django_live_oauth_mail.exceptions import ConsentRequired
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount, OutboundMessage, SendAsAddress
from django_live_oauth_mail.testing import FakeIdentityPlatform, XOAuth2SMTPServer

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/live_oauth_mail/mailaccount/"


@pytest.fixture
def staff(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def act(staff: Client, action: str, *accounts: MailAccount, **extra: str) -> Any:
    return staff.post(
        CHANGELIST,
        {"action": action, "_selected_action": [a.pk for a in accounts], **extra},
        follow=True,
    )


def confirm_disconnect(staff: Client, *accounts: MailAccount) -> Any:
    """The Disconnect action, confirmed on its page (post=yes)."""
    return act(staff, "disconnect", *accounts, post="yes")


def undecryptable(account: MailAccount) -> MailAccount:
    """Make the row's cache one written with a key the site no longer has."""
    lost_key = Fernet(Fernet.generate_key())
    MailAccount.objects.filter(pk=account.pk).update(
        encrypted_token_cache=lost_key.encrypt(b"{}").decode()
    )
    return MailAccount.objects.get(pk=account.pk)


def reported(response: Any) -> list[tuple[int, str]]:
    """The messages the action left for the admin, with their levels."""
    assert response.status_code == 200
    assert [status for _, status in response.redirect_chain] == [302]
    return [(m.level, str(m)) for m in response.context["messages"]]


def test_changelist_filters_and_search(
    staff: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    page = staff.get(CHANGELIST, {"kind__exact": "personal"}).content.decode()
    assert "alice@outlook.com" in page and "bob@contoso.com" not in page
    page = staff.get(CHANGELIST, {"q": "contoso"}).content.decode()
    assert "bob@contoso.com" in page and "alice@outlook.com" not in page
    page = staff.get(
        CHANGELIST, {"status__exact": "reconnect_required"}
    ).content.decode()
    assert "alice@outlook.com" not in page


def test_health_fields_are_read_only(staff: Client, alice_account: MailAccount) -> None:
    page = staff.get(f"{CHANGELIST}{alice_account.pk}/change/").content.decode()
    assert 'name="status"' not in page and 'name="email"' not in page


def test_add_registers_an_app_mailbox_and_nothing_else(staff: Client) -> None:
    page = staff.get(f"{CHANGELIST}add/").content.decode()
    assert 'name="email"' in page and 'name="tenant_id"' in page
    assert 'name="user"' not in page and 'name="status"' not in page

    refused = staff.post(
        f"{CHANGELIST}add/", {"email": "noreply@contoso.com", "tenant_id": "common"}
    )
    assert refused.status_code == 200
    assert "is not a tenant" in refused.content.decode()
    assert not MailAccount.objects.exists()

    response = staff.post(
        f"{CHANGELIST}add/",
        {"email": "NoReply@Contoso.com", "tenant_id": "contoso.onmicrosoft.com"},
    )
    assert response.status_code == 302
    (account,) = MailAccount.objects.all()
    assert (account.email, account.user, account.kind, account.shared) == (
        "noreply@contoso.com",
        None,
        "app",
        True,
    )
    assert account.tenant_id == "contoso.onmicrosoft.com"
    page = staff.get(f"{CHANGELIST}{account.pk}/change/").content.decode()
    assert 'name="shared"' not in page  # an app mailbox is always shared
    again = staff.post(
        f"{CHANGELIST}add/",
        {"email": "noreply@contoso.com", "tenant_id": "fabrikam.onmicrosoft.com"},
    )
    assert "is already an app mailbox" in again.content.decode()
    assert MailAccount.objects.get().tenant_id == "contoso.onmicrosoft.com"
    assert "App (client credentials)" in staff.get(CHANGELIST).content.decode()


def test_send_test_message_action(
    staff: Client,
    admin_user: Any,
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    response = act(staff, "send_test_message", alice_account)
    assert "test message sent to" in response.content.decode()
    [received] = smtp_server.messages
    assert received.rcpt_tos == [admin_user.email]
    assert received.authenticated_as == "alice@outlook.com"


def test_send_test_message_action_reports_the_failing_step(
    staff: Client, alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    smtp_server.smtp_auth_disabled.add("alice@outlook.com")
    response = act(staff, "send_test_message", alice_account)
    text = response.content.decode()
    assert "failed at auth" in text and "5.7.139" in text


def test_refresh_now_action(
    staff: Client, alice_account: MailAccount, identity_platform: FakeIdentityPlatform
) -> None:
    identity_platform.reset()
    response = act(staff, "refresh_now", alice_account)
    assert "Refreshed 1 mailbox." in response.content.decode()
    assert [r.grant_type for r in identity_platform.token_requests] == ["refresh_token"]
    assert MailAccount.objects.get(pk=alice_account.pk).last_refreshed_at is not None


def test_refresh_now_reports_a_revoked_grant(
    staff: Client, alice_account: MailAccount, identity_platform: FakeIdentityPlatform
) -> None:
    identity_platform.revoke("alice@outlook.com")
    response = act(staff, "refresh_now", alice_account)
    assert "Link the mailbox again" in response.content.decode()
    assert MailAccount.objects.get(pk=alice_account.pk).status == "reconnect_required"


def test_refresh_now_reports_a_mailbox_it_cannot_decrypt_and_refreshes_the_rest(
    staff: Client,
    alice_account: MailAccount,
    bob_account: MailAccount,
    identity_platform: FakeIdentityPlatform,
) -> None:
    undecryptable(alice_account)
    identity_platform.reset()

    response = act(staff, "refresh_now", alice_account, bob_account)

    [(level, text), done] = reported(response)
    assert level == messages.ERROR
    assert text.startswith("alice@outlook.com: The stored tokens of alice@outlook")
    assert "linked again" in text
    assert done == (messages.SUCCESS, "Refreshed 1 mailbox.")
    assert [r.email for r in identity_platform.token_requests] == ["bob@contoso.com"]


def test_send_test_message_reports_a_mailbox_it_cannot_decrypt_and_sends_the_rest(
    staff: Client,
    alice_account: MailAccount,
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    undecryptable(alice_account)

    response = act(staff, "send_test_message", alice_account, bob_account)

    [(level, text), (sent, sent_text)] = reported(response)
    assert level == messages.ERROR
    assert text.startswith(
        "alice@outlook.com: failed at token: The stored tokens of alice@outlook"
    )
    assert sent == messages.SUCCESS and sent_text.startswith("bob@contoso.com: test")
    [received] = smtp_server.messages
    assert received.authenticated_as == "bob@contoso.com"


def test_a_mailbox_that_cannot_be_decrypted_can_still_be_disconnected(
    staff: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    undecryptable(alice_account)
    response = confirm_disconnect(staff, alice_account, bob_account)
    assert reported(response) == [(messages.SUCCESS, "Disconnected 2 mailboxes.")]
    assert MailAccount.objects.count() == 0


def test_disconnect_reports_a_database_error_and_disconnects_the_rest(
    staff: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    def locked(sender: Any, instance: MailAccount, **kwargs: Any) -> None:
        if instance.email == "alice@outlook.com":
            raise OperationalError("database is locked")

    pre_delete.connect(locked, sender=MailAccount)
    try:
        response = confirm_disconnect(staff, alice_account, bob_account)
    finally:
        pre_delete.disconnect(locked, sender=MailAccount)

    assert reported(response) == [
        (messages.ERROR, "alice@outlook.com: database is locked"),
        (messages.SUCCESS, "Disconnected 1 mailbox."),
    ]
    assert list(MailAccount.objects.values_list("email", flat=True)) == [
        "alice@outlook.com"
    ]


def test_pages_of_a_mailbox_that_cannot_be_decrypted_still_work(
    staff: Client, alice_account: MailAccount
) -> None:
    account = undecryptable(alice_account)
    assert "alice@outlook.com" in staff.get(CHANGELIST).content.decode()
    assert staff.get(f"{CHANGELIST}{account.pk}/change/").status_code == 200
    assert staff.get(f"{CHANGELIST}{account.pk}/delete/").status_code == 200
    assert change(staff, account, shared="on").status_code == 302
    assert MailAccount.objects.get(pk=account.pk).shared is True


def test_disconnect_action_deletes_and_signals(
    staff: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    seen: list[str] = []

    def receiver(sender: Any, account: MailAccount, **kwargs: Any) -> None:
        seen.append(account.email)

    signals.account_disconnected.connect(receiver)
    try:
        response = confirm_disconnect(staff, alice_account, bob_account)
    finally:
        signals.account_disconnected.disconnect(receiver)
    assert "Disconnected 2 mailboxes." in response.content.decode()
    assert MailAccount.objects.count() == 0
    assert sorted(seen) == ["alice@outlook.com", "bob@contoso.com"]


def waiting_message(account: MailAccount) -> OutboundMessage:
    return OutboundMessage.objects.create(
        account=account,
        mailbox=account.email,
        from_email=account.email,
        recipients="to@example.org",
        recipient_count=1,
        message_id="<m@example.org>",
        encrypted_message="-",
    )


def test_disconnect_asks_first_and_says_what_it_will_do(
    staff: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    waiting_message(alice_account)
    waiting_message(alice_account)
    cache = alice_account.encrypted_token_cache

    page = act(staff, "disconnect", alice_account, bob_account)

    assert page.status_code == 200 and page.redirect_chain == []
    text = page.content.decode()
    assert "Disconnecting these 2 mailboxes deletes" in text
    assert "alice@outlook.com (ann) — 2 queued messages fail" in text
    assert "2 messages waiting to be sent fail" in text
    for account in (alice_account, bob_account):
        assert f'name="_selected_action" value="{account.pk}"' in text
    assert 'name="post" value="yes"' in text
    assert 'name="action" value="disconnect"' in text
    assert f'href="{CHANGELIST}" class="button cancel-link"' in text
    # Nothing happened yet.
    assert MailAccount.objects.count() == 2
    assert MailAccount.objects.get(pk=alice_account.pk).encrypted_token_cache == cache
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {"queued"}

    confirmed = confirm_disconnect(staff, alice_account, bob_account)

    assert reported(confirmed) == [(messages.SUCCESS, "Disconnected 2 mailboxes.")]
    assert MailAccount.objects.count() == 0
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {"failed"}


def test_the_disconnect_page_is_only_for_those_who_may_delete(
    django_user_model: Any, alice_account: MailAccount
) -> None:
    clerk = staff_with(django_user_model, "view_mailaccount", "change_mailaccount")
    response = act(clerk, "disconnect", alice_account)
    assert "Disconnecting this mailbox" not in response.content.decode()
    assert MailAccount.objects.filter(pk=alice_account.pk).exists()


def test_actions_need_change_or_delete_permission(
    django_user_model: Any, alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    from django.contrib.auth.models import Permission

    viewer = django_user_model.objects.create_user("viewer", "v@example.org", "pw")
    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_mailaccount"))
    client = Client()
    client.force_login(viewer)

    for action in ("disconnect", "refresh_now", "send_test_message"):
        act(client, action, alice_account, post="yes")

    assert MailAccount.objects.filter(pk=alice_account.pk).exists()
    assert smtp_server.messages == []
    page = client.get(CHANGELIST).content.decode()
    assert "Disconnect" not in page and "Refresh the token now" not in page


def change(staff: Client, account: MailAccount, **data: Any) -> Any:
    """POST the change form as a browser would, with the Send As inline."""
    rows = data.pop("send_as", [])
    existing = list(account.send_as_addresses.all())
    form = {
        "send_as_addresses-TOTAL_FORMS": str(len(rows)),
        "send_as_addresses-INITIAL_FORMS": str(len(existing)),
        "send_as_addresses-MIN_NUM_FORMS": "0",
        "send_as_addresses-MAX_NUM_FORMS": "1000",
        "_save": "Save",
        **data,
    }
    for i, row in enumerate(rows):
        row = {"account": str(account.pk), **row}
        if i < len(existing):
            row.setdefault("id", str(existing[i].pk))
        form.update({f"send_as_addresses-{i}-{k}": v for k, v in row.items()})
    return staff.post(f"{CHANGELIST}{account.pk}/change/", form)


def test_shared_is_editable_and_the_rest_stays_read_only(
    staff: Client, alice_account: MailAccount
) -> None:
    page = staff.get(f"{CHANGELIST}{alice_account.pk}/change/").content.decode()
    assert 'name="shared"' in page
    assert 'name="status"' not in page and 'name="email"' not in page
    response = change(staff, alice_account, shared="on", email="mallory@evil.example")
    assert response.status_code == 302
    account = MailAccount.objects.get(pk=alice_account.pk)
    assert account.shared is True
    assert account.email == "alice@outlook.com"
    change(staff, account)
    assert MailAccount.objects.get(pk=alice_account.pk).shared is False


def test_changelist_shows_and_filters_shared(
    staff: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    change(staff, bob_account, shared="on")
    page = staff.get(CHANGELIST).content.decode()
    assert "column-shared" in page and "?shared__exact=1" in page
    page = staff.get(CHANGELIST, {"shared__exact": "1"}).content.decode()
    assert "bob@contoso.com" in page and "alice@outlook.com" not in page
    page = staff.get(CHANGELIST, {"shared__exact": "0"}).content.decode()
    assert "alice@outlook.com" in page and "bob@contoso.com" not in page


def test_inline_send_as_addresses_are_saved_normalized(
    staff: Client, alice_account: MailAccount
) -> None:
    response = change(
        staff,
        alice_account,
        send_as=[
            {"address": " NoReply@Contoso.com ", "shared": "on"},
            {"address": "Team@Contoso.com"},
        ],
    )
    assert response.status_code == 302
    assert list(alice_account.send_as_addresses.values_list("address", "shared")) == [
        ("noreply@contoso.com", True),
        ("team@contoso.com", False),
    ]
    # The search finds a mailbox by one of its Send As addresses.
    page = staff.get(CHANGELIST, {"q": "noreply@contoso"}).content.decode()
    assert "alice@outlook.com" in page


@pytest.mark.parametrize(
    "address", ["NOREPLY@contoso.com", "Alice@Outlook.com", "not-an-address"]
)
def test_inline_refuses_duplicates_the_own_address_and_invalid_ones(
    staff: Client, alice_account: MailAccount, address: str
) -> None:
    change(staff, alice_account, send_as=[{"address": "noreply@contoso.com"}])
    response = change(
        staff,
        alice_account,
        send_as=[{"address": "noreply@contoso.com"}, {"address": address}],
    )
    assert response.status_code == 200
    assert "errorlist" in response.content.decode()
    assert list(alice_account.send_as_addresses.values_list("address", flat=True)) == [
        "noreply@contoso.com"
    ]


def test_saving_the_change_form_leaves_the_token_cache_alone(
    staff: Client, alice_account: MailAccount
) -> None:
    before = MailAccount.objects.get(pk=alice_account.pk).encrypted_token_cache
    change(staff, alice_account, send_as=[{"address": "team@contoso.com"}])
    change(staff, alice_account, shared="on")
    assert MailAccount.objects.get(pk=alice_account.pk).encrypted_token_cache == before


def test_saving_the_change_form_keeps_a_refresh_that_committed_meanwhile(
    staff: Client, alice_account: MailAccount
) -> None:
    refreshed = MailAccount.objects.get(pk=alice_account.pk)
    refreshed.encrypted_token_cache = crypto.encrypt('{"refreshed": true}')

    def refresh_meanwhile(sender: Any, instance: MailAccount, **kwargs: Any) -> None:
        # The admin read the row already; a worker's refresh now commits.
        MailAccount.objects.filter(pk=instance.pk).update(
            encrypted_token_cache=refreshed.encrypted_token_cache,
            status=MailAccount.Status.RECONNECT_REQUIRED,
        )

    pre_save.connect(refresh_meanwhile, sender=MailAccount)
    try:
        response = change(staff, alice_account, shared="on")
    finally:
        pre_save.disconnect(refresh_meanwhile, sender=MailAccount)
    assert response.status_code == 302
    account = MailAccount.objects.get(pk=alice_account.pk)
    assert account.shared is True
    assert account.read_token_cache() == '{"refreshed": true}'
    assert account.status == MailAccount.Status.RECONNECT_REQUIRED


def test_admin_pages_never_show_a_token(
    staff: Client, alice_account: MailAccount
) -> None:
    account = MailAccount.objects.get(pk=alice_account.pk)
    cache = json.loads(account.read_token_cache())
    secrets = [
        entry["secret"]
        for section in ("AccessToken", "RefreshToken", "IdToken")
        for entry in cache.get(section, {}).values()
    ]
    assert secrets
    pages = [
        staff.get(CHANGELIST).content.decode(),
        staff.get(f"{CHANGELIST}{account.pk}/change/").content.decode(),
        change(
            staff, account, shared="on", send_as=[{"address": "bad"}]
        ).content.decode(),
    ]
    for page in pages:
        assert account.encrypted_token_cache not in page
        assert "encrypted_token_cache" not in page
        for secret in secrets:
            assert secret not in page


def test_the_transport_is_shown_and_can_be_reset(
    staff: Client, alice_account: MailAccount
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(transport="graph")
    page = staff.get(CHANGELIST).content.decode()
    assert "column-transport" in page and "Microsoft Graph" in page
    assert "?transport__exact=graph" in page
    form = staff.get(f"{CHANGELIST}{alice_account.pk}/change/").content.decode()
    assert 'name="transport"' in form

    # Cleared, the mailbox follows the TRANSPORT setting (and tries SMTP again).
    assert change(staff, alice_account, transport="").status_code == 302
    assert MailAccount.objects.get(pk=alice_account.pk).transport == ""
    assert change(staff, alice_account, transport="smtp").status_code == 302
    assert MailAccount.objects.get(pk=alice_account.pk).transport == "smtp"


def test_a_missing_graph_consent_shows_on_the_mailbox(
    staff: Client,
    alice_account: MailAccount,
    live_settings: dict[str, Any],
    identity_platform: FakeIdentityPlatform,
) -> None:
    live_settings["TRANSPORT"] = "graph"
    # alice linked for SMTP only: no Graph consent (unless an earlier test
    # gave it, so take it back the way an admin would).
    graph_scope = f"{live_settings['GRAPH_ENDPOINT']}/Mail.Send"
    identity_platform.withdraw_consent("alice@outlook.com", graph_scope)
    with pytest.raises(ConsentRequired):
        get_access_token(alice_account, protocol="graph")

    page = staff.get(f"{CHANGELIST}{alice_account.pk}/change/").content.decode()
    assert "has not granted this app Mail.Send" in page
    assert MailAccount.objects.get(pk=alice_account.pk).status == "active"


def staff_with(django_user_model: Any, *codenames: str) -> Client:
    """A client signed in as a staff user with only these permissions."""
    clerk = django_user_model.objects.create_user("clerk", "clerk@example.org", "pw")
    clerk.is_staff = True
    clerk.save()
    clerk.user_permissions.set(
        Permission.objects.filter(
            content_type__app_label="live_oauth_mail", codename__in=codenames
        )
    )
    client = Client()
    client.force_login(clerk)
    return client


SAVE_BUTTONS = ('name="_save"', 'name="_continue"', 'name="_addanother"')
SEND_AS_RIGHTS = (
    "view_sendasaddress",
    "add_sendasaddress",
    "change_sendasaddress",
    "delete_sendasaddress",
)


@pytest.mark.parametrize(
    ("codenames", "buttons"),
    [
        pytest.param(
            ("view_mailaccount", *SEND_AS_RIGHTS), (), id="viewer-with-send-as-rights"
        ),
        pytest.param(("view_mailaccount", "view_sendasaddress"), (), id="viewer"),
        pytest.param(
            ("view_mailaccount", "change_mailaccount", *SEND_AS_RIGHTS),
            ('name="_save"', 'name="_continue"'),
            id="editor",
        ),
    ],
)
def test_save_buttons_show_only_where_something_can_be_saved(
    django_user_model: Any,
    alice_account: MailAccount,
    codenames: tuple[str, ...],
    buttons: tuple[str, ...],
) -> None:
    SendAsAddress.objects.create(account=alice_account, address="team@outlook.com")
    client = staff_with(django_user_model, *codenames)
    page = client.get(f"{CHANGELIST}{alice_account.pk}/change/").content.decode()
    assert tuple(b for b in SAVE_BUTTONS if b in page) == buttons
    # Nothing that page lets one type can be saved without the buttons.
    editable = bool(buttons)
    assert ('name="shared"' in page) is editable
    assert ('name="send_as_addresses-0-address"' in page) is editable
    # (Sharing a person's mailbox is a superuser's call: the rate stands in.)
    response = change(
        client,
        alice_account,
        send_as=[{"address": "team@outlook.com"}],
        send_rate="10/minute",
    )
    assert response.status_code == (302 if editable else 403)
    stored = MailAccount.objects.get(pk=alice_account.pk).send_rate
    assert (stored == "10/minute") is editable


def test_the_list_says_when_a_mailbox_was_last_used(
    staff: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    now = timezone.now()
    MailAccount.objects.filter(pk=alice_account.pk).update(
        last_used_at=now - datetime.timedelta(hours=3, minutes=5)
    )
    MailAccount.objects.filter(pk=bob_account.pk).update(last_used_at=None)
    page = staff.get(CHANGELIST).content.decode()
    used = re.findall(r'<td class="field-last_used">(.*?)</td>', page)
    assert used == ["3\xa0hours ago", "never"]  # ordered by address
    MailAccount.objects.filter(pk=bob_account.pk).update(last_used_at=now)
    page = staff.get(CHANGELIST).content.decode()
    assert re.findall(r'<td class="field-last_used">(.*?)</td>', page)[1] == "just now"
