"""The admin: health at a glance, three actions, and never a token."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from django_live_oauth_mail import signals
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import FakeIdentityPlatform, XOAuth2SMTPServer

pytestmark = pytest.mark.django_db(transaction=True)

CHANGELIST = "/admin/live_oauth_mail/mailaccount/"


@pytest.fixture
def staff(admin_user: Any) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def act(staff: Client, action: str, *accounts: MailAccount) -> Any:
    return staff.post(
        CHANGELIST,
        {"action": action, "_selected_action": [a.pk for a in accounts]},
        follow=True,
    )


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


def test_health_fields_are_read_only_and_no_add(
    staff: Client, alice_account: MailAccount
) -> None:
    page = staff.get(f"{CHANGELIST}{alice_account.pk}/change/").content.decode()
    assert 'name="status"' not in page and 'name="email"' not in page
    assert staff.get(f"{CHANGELIST}add/").status_code == 403


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


def test_disconnect_action_deletes_and_signals(
    staff: Client, alice_account: MailAccount, bob_account: MailAccount
) -> None:
    seen: list[str] = []

    def receiver(sender: Any, account: MailAccount, **kwargs: Any) -> None:
        seen.append(account.email)

    signals.account_disconnected.connect(receiver)
    try:
        response = act(staff, "disconnect", alice_account, bob_account)
    finally:
        signals.account_disconnected.disconnect(receiver)
    assert "Disconnected 2 mailboxes." in response.content.decode()
    assert MailAccount.objects.count() == 0
    assert sorted(seen) == ["alice@outlook.com", "bob@contoso.com"]


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
        act(client, action, alice_account)

    assert MailAccount.objects.filter(pk=alice_account.pk).exists()
    assert smtp_server.messages == []
    page = client.get(CHANGELIST).content.decode()
    assert "Disconnect" not in page and "Refresh the token now" not in page
