"""The outbox admin: a read-only record, retry and cancel, and bodies by permission.

Also the pacing settings of a mailbox, which its admin page edits.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.contrib import messages
from django.contrib.auth.models import Permission
from django.core.mail import EmailMessage
from django.test import Client
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.html import escape

from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.tasks import send_queued_message

from .test_admin import change, staff_with

Status = OutboundMessage.Status
ALICE = "alice@outlook.com"
OUTBOX = "/admin/live_oauth_mail/outboundmessage/"

pytestmark = pytest.mark.django_db

Queue = Callable[..., OutboundMessage]


@pytest.fixture
def tasks() -> Iterator[Any]:
    backend = send_queued_message.get_backend()
    backend.clear()
    yield backend
    backend.clear()


@pytest.fixture
def queue(alice_account: MailAccount, acting_user: Any) -> Queue:
    """Queue a real message from alice's mailbox; its row, in ``status``."""

    def queue(
        subject: str = "Subj", to: str = "to@example.org", status: str = Status.QUEUED
    ) -> OutboundMessage:
        message = EmailMessage(subject, "Body text", ALICE, [to])
        assert QueuedEmailBackend().send_messages([message]) == 1
        rows = OutboundMessage.objects.filter(subject=subject)
        rows.update(status=status)
        return rows.get()

    return queue


def act(client: Client, action: str, *rows: OutboundMessage) -> Any:
    return client.post(
        OUTBOX,
        {"action": action, "_selected_action": [row.pk for row in rows]},
        follow=True,
    )


def reported(response: Any) -> list[tuple[int, str]]:
    """The messages the action left for the admin, with their levels."""
    assert response.status_code == 200
    return [(m.level, str(m)) for m in response.context["messages"]]


def statuses(*rows: OutboundMessage) -> list[str]:
    return [OutboundMessage.objects.get(pk=row.pk).status for row in rows]


def test_changelist_searches_recipients_filters_status_and_shows_newest_first(
    admin_client: Client, queue: Queue
) -> None:
    queue("Invoice 7", to="ann@example.org")
    queue("Newsletter", to="bob@example.org", status=Status.FAILED)
    OutboundMessage.objects.filter(subject="Newsletter").update(
        last_error="5.7.139 " + "x" * 200
    )

    page = admin_client.get(OUTBOX).content.decode()
    assert page.index("Newsletter") < page.index("Invoice 7")
    for column in ("mailbox", "attempts", "sent_or_due", "last_error_summary"):
        assert f"column-{column}" in page
    assert "5.7.139 xxx" in page and "x" * 200 not in page  # the error, shortened
    assert "?status__exact=failed" in page and "?mailbox=alice%40outlook.com" in page

    page = admin_client.get(OUTBOX, {"q": "ann@example.org"}).content.decode()
    assert "Invoice 7" in page and "Newsletter" not in page
    page = admin_client.get(OUTBOX, {"status__exact": "failed"}).content.decode()
    assert "Newsletter" in page and "Invoice 7" not in page
    page = admin_client.get(OUTBOX, {"mailbox": "bob@contoso.com"}).content.decode()
    assert "Newsletter" not in page and "Invoice 7" not in page


def test_retry_queues_a_failed_message_again_and_skips_a_sent_one(
    admin_client: Client,
    queue: Queue,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    failed = queue("Failed one", status=Status.FAILED)
    OutboundMessage.objects.filter(pk=failed.pk).update(
        attempts=3, last_error="Refused."
    )
    sent = queue("Sent one", status=Status.SENT)
    tasks.clear()

    with django_capture_on_commit_callbacks(execute=True):
        response = act(admin_client, "retry", failed, sent)

    assert reported(response) == [
        (messages.SUCCESS, "Queued 1 message again."),
        (
            messages.WARNING,
            "Skipped 1 message: only failed, unknown or cancelled messages can be "
            "retried.",
        ),
    ]
    assert statuses(failed, sent) == [Status.QUEUED, Status.SENT]
    retried = OutboundMessage.objects.get(pk=failed.pk)
    assert (retried.attempts, retried.last_error) == (0, "")
    assert [r.args for r in tasks.results] == [[failed.pk]]


def test_cancel_cancels_a_queued_message_and_leaves_a_sent_one_alone(
    admin_client: Client, queue: Queue
) -> None:
    waiting = queue("Waiting")
    sent = queue("Sent one", status=Status.SENT)

    response = act(admin_client, "cancel", waiting, sent)

    assert reported(response) == [
        (messages.SUCCESS, "Cancelled 1 message."),
        (
            messages.WARNING,
            "Skipped 1 message: only queued or deferred messages can be cancelled.",
        ),
    ]
    assert statuses(waiting, sent) == [Status.CANCELLED, Status.SENT]


def test_an_action_with_nothing_to_do_only_says_what_it_skipped(
    admin_client: Client, queue: Queue
) -> None:
    sent = queue("Sent one", status=Status.SENT)
    response = act(admin_client, "retry", sent)
    assert [level for level, _ in reported(response)] == [messages.WARNING]
    assert statuses(sent) == [Status.SENT]


def test_the_body_shows_only_with_its_permission(
    django_user_model: Any, admin_client: Client, queue: Queue
) -> None:
    row = queue()
    url = f"{OUTBOX}{row.pk}/change/"
    clerk = staff_with(
        django_user_model, "view_outboundmessage", "change_outboundmessage"
    )

    page = clerk.get(url).content.decode()
    assert "Body text" not in page
    assert "live_oauth_mail.view_outboundmessage_body" in page
    # The envelope is plain, for everyone who may see the row.
    assert "to@example.org" in page and escape(row.message_id) in page

    django_user_model.objects.get(username="clerk").user_permissions.add(
        Permission.objects.get(codename="view_outboundmessage_body")
    )
    page = clerk.get(url).content.decode()
    assert "Body text" in page and f"Message-ID: {escape(row.message_id)}" in page
    assert "Body text" in admin_client.get(url).content.decode()  # a superuser


def test_no_page_shows_the_encrypted_message(
    admin_client: Client, queue: Queue
) -> None:
    row = queue()
    pages = [
        admin_client.get(OUTBOX).content.decode(),
        admin_client.get(f"{OUTBOX}{row.pk}/change/").content.decode(),
    ]
    for page in pages:
        assert row.encrypted_message not in page
        assert row.encrypted_message[:40] not in page
        assert "encrypted_message" not in page


def test_a_message_that_cannot_be_decrypted_says_so(
    admin_client: Client, queue: Queue
) -> None:
    row = queue()
    lost_key = Fernet(Fernet.generate_key())
    OutboundMessage.objects.filter(pk=row.pk).update(
        encrypted_message=lost_key.encrypt(b"Body text").decode()
    )
    response = admin_client.get(f"{OUTBOX}{row.pk}/change/")
    assert response.status_code == 200
    page = response.content.decode()
    assert f"Queued message {row.pk} from {ALICE} cannot be decrypted" in page
    assert "Body text" not in page


def test_rows_are_a_record_no_one_adds_or_edits(
    admin_client: Client, queue: Queue
) -> None:
    row = queue()
    url = f"{OUTBOX}{row.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="subject"' not in page and 'name="status"' not in page
    assert 'name="_save"' not in page
    assert admin_client.get(f"{OUTBOX}add/").status_code == 403
    refused = admin_client.post(url, {"subject": "Edited", "status": Status.SENT})
    assert refused.status_code == 403
    row.refresh_from_db()
    assert (row.subject, row.status) == ("Subj", Status.QUEUED)


def test_rows_can_be_deleted_with_the_delete_permission(
    admin_client: Client, queue: Queue
) -> None:
    kept, purged = queue("Kept"), queue("Purged", status=Status.SENT)
    response = admin_client.post(
        OUTBOX,
        {"action": "delete_selected", "_selected_action": [purged.pk], "post": "yes"},
    )
    assert response.status_code == 302
    assert list(OutboundMessage.objects.values_list("pk", flat=True)) == [kept.pk]


def test_a_viewer_cannot_retry_or_cancel(django_user_model: Any, queue: Queue) -> None:
    failed = queue("Failed one", status=Status.FAILED)
    waiting = queue("Waiting")
    viewer = staff_with(django_user_model, "view_outboundmessage")

    page = viewer.get(OUTBOX).content.decode()
    assert "Failed one" in page
    assert "Retry (queue again)" not in page and "Cancel (do not send)" not in page
    act(viewer, "retry", failed)
    act(viewer, "cancel", waiting)

    assert statuses(failed, waiting) == [Status.FAILED, Status.QUEUED]


def test_a_mailbox_pacing_is_edited_on_its_page(
    admin_client: Client, alice_account: MailAccount
) -> None:
    url = f"/admin/live_oauth_mail/mailaccount/{alice_account.pk}/change/"
    page = admin_client.get(url).content.decode()
    assert 'name="send_rate"' in page and 'name="daily_recipients"' in page

    response = change(
        admin_client, alice_account, send_rate=" 10/minute ", daily_recipients="500"
    )
    assert response.status_code == 302
    account = MailAccount.objects.get(pk=alice_account.pk)
    assert (account.send_rate, account.daily_recipients) == ("10/minute", 500)

    # Cleared, both follow the settings again.
    assert change(admin_client, account).status_code == 302
    account = MailAccount.objects.get(pk=alice_account.pk)
    assert (account.send_rate, account.daily_recipients) == ("", None)


def test_a_send_rate_the_workers_could_not_read_is_refused(
    admin_client: Client, alice_account: MailAccount
) -> None:
    response = change(admin_client, alice_account, send_rate="fast")
    assert response.status_code == 200
    assert "such as &#x27;30/minute&#x27;" in response.content.decode()
    assert MailAccount.objects.get(pk=alice_account.pk).send_rate == ""


def test_the_list_shows_when_a_message_went_or_may_go(
    admin_client: Client, queue: Queue
) -> None:
    due = timezone.make_aware(datetime.datetime(2031, 5, 6, 7, 8))
    sent = timezone.make_aware(datetime.datetime(2030, 1, 2, 3, 4))
    waiting, done, failed = queue("Waiting"), queue("Done"), queue("Failed")
    OutboundMessage.objects.filter(pk=waiting.pk).update(
        status=Status.DEFERRED, send_after=due
    )
    OutboundMessage.objects.filter(pk=done.pk).update(status=Status.SENT, sent_at=sent)
    OutboundMessage.objects.filter(pk=failed.pk).update(
        status=Status.FAILED, send_after=due
    )

    page = admin_client.get(OUTBOX).content.decode()
    cells = dict(
        re.findall(
            r'<td class="field-subject">(\w+)</td>.*?field-sent_or_due">(.*?)</td>',
            page,
            re.S,
        )
    )

    def short(moment: datetime.datetime) -> str:
        return date_format(timezone.localtime(moment), "SHORT_DATETIME_FORMAT")

    assert cells == {
        "Waiting": f"not before {short(due)}",
        "Done": short(sent),
        "Failed": "-",  # a failed message waits for nothing
    }
