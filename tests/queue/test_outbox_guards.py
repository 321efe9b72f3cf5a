"""The worker's guards: what it must refuse to send, and the daily budget's edges.

Each test here fails when the guard it names is removed or loosened.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from django.utils import timezone

from django_live_oauth_mail import sending_as
from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.queue import outbox, service
from django_live_oauth_mail.queue.tasks import send_queued_message
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .test_outbox import message, queue, run_tasks
from .test_outbox import tasks as tasks  # autouse: clears the recorded tasks

Status = OutboundMessage.Status
ALICE = "alice@outlook.com"
DAY = datetime.timedelta(days=1)

pytestmark = pytest.mark.django_db


def _to(count: int) -> tuple[str, ...]:
    return tuple(f"r{n}@example.org" for n in range(count))


def _queued(*messages: Any, capture: Any, **options: Any) -> dict[str, OutboundMessage]:
    with capture(execute=True):
        queue(*messages, **options)
    return {row.subject: row for row in OutboundMessage.objects.all()}


def _status(row: OutboundMessage) -> tuple[str, int, str]:
    row.refresh_from_db()
    return row.status, row.attempts, row.last_error


# -- a message being sent is left alone ------------------------------------------


def test_a_second_task_for_a_message_being_sent_sends_nothing(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    row = _queued(message(), capture=django_capture_on_commit_callbacks)["Hi"]
    assert outbox.start(row, timezone.now())  # a worker is sending it now
    send_queued_message(row.pk)  # the task, delivered a second time
    assert smtp_server.messages == []
    assert smtp_server.auth_attempts == []
    assert _status(row)[:2] == (Status.SENDING, 1)


def test_retry_and_cancel_leave_a_message_being_sent_alone(
    alice_account: MailAccount,
    acting_user: Any,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    row = _queued(message(), capture=django_capture_on_commit_callbacks)["Hi"]
    assert outbox.start(row, timezone.now())
    tasks.clear()
    with django_capture_on_commit_callbacks(execute=True):
        assert service.retry([row.pk]) == 0
        assert outbox.cancel([row.pk]) == 0
    assert tasks.results == []  # not scheduled again either
    assert _status(row) == (Status.SENDING, 1, "")


# -- routing at delivery ---------------------------------------------------------


def test_a_message_another_link_of_the_same_address_would_now_send_is_not_sent(
    alice_account: MailAccount,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(shared=True)
    with sending_as(None):
        row = _queued(message(), capture=django_capture_on_commit_callbacks)["Hi"]
    # Another user's link of the same address (with working tokens), now the
    # shared one: routing picks it, not the link the message was queued for.
    second = MailAccount.objects.create(
        user=other_user,
        email=ALICE,
        kind=MailAccount.Kind.PERSONAL,
        home_account_id="second-link",
        encrypted_token_cache=alice_account.encrypted_token_cache,
        shared=True,
    )
    MailAccount.objects.filter(pk=alice_account.pk).update(shared=False)
    run_tasks()
    status, attempts, error = _status(row)
    assert (status, attempts) == (Status.FAILED, 0)
    assert f"another link of {ALICE} (mailbox pk {second.pk})" in error
    assert smtp_server.auth_attempts == []


def test_a_deactivated_acting_users_queued_mail_fails_saying_so(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    row = _queued(message(), capture=django_capture_on_commit_callbacks)["Hi"]
    acting_user.is_active = False
    acting_user.save(update_fields=["is_active"])
    run_tasks()
    status, attempts, error = _status(row)
    assert (status, attempts) == (Status.FAILED, 0)
    assert f"user pk {acting_user.pk}" in error
    assert "has been deactivated" in error
    assert smtp_server.auth_attempts == []


def test_a_deactivated_users_mail_from_a_shared_mailbox_or_chosen_by_code_goes(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    rows = _queued(message("chosen"), capture=django_capture_on_commit_callbacks)
    with django_capture_on_commit_callbacks(execute=True):
        QueuedEmailBackend(account=alice_account).send_messages([message("code")])
    MailAccount.objects.filter(pk=alice_account.pk).update(shared=True)
    acting_user.is_active = False
    acting_user.save(update_fields=["is_active"])
    run_tasks()
    assert _status(rows["chosen"])[0] == Status.SENT
    assert OutboundMessage.objects.get(subject="code").status == Status.SENT
    assert len(smtp_server.messages) == 2


def test_a_message_with_no_acting_user_is_unaffected(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(shared=True)
    with sending_as(None):
        row = _queued(message(), capture=django_capture_on_commit_callbacks)["Hi"]
    assert row.acting_user_id is None
    run_tasks()
    assert _status(row)[0] == Status.SENT


# -- the daily recipient budget --------------------------------------------------


@pytest.fixture
def budget_of_3(live_settings: dict[str, Any]) -> int:
    live_settings["DAILY_RECIPIENTS"] = {"personal": 3}
    return 3


def test_a_message_with_exactly_the_budget_goes_and_one_more_fails(
    budget_of_3: int,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    rows = _queued(
        message("3", _to(3)),
        message("4", _to(4)),
        capture=django_capture_on_commit_callbacks,
    )
    run_tasks()
    assert _status(rows["3"])[0] == Status.SENT
    status, _, error = _status(rows["4"])
    assert status == Status.FAILED
    assert "4 recipients, more than the 3" in error
    assert [len(m.rcpt_tos) for m in smtp_server.messages] == [3]


def test_the_budget_is_filled_exactly_then_defers(
    budget_of_3: int,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    rows = _queued(
        message("two", _to(2)),
        message("fills it", _to(1)),
        message("one too many", _to(1)),
        capture=django_capture_on_commit_callbacks,
    )
    run_tasks()
    assert _status(rows["two"])[0] == Status.SENT
    assert _status(rows["fills it"])[0] == Status.SENT
    status, _, error = _status(rows["one too many"])
    assert status == Status.DEFERRED
    assert "has sent to 3 of its 3 recipients" in error


@pytest.mark.parametrize(
    ("age", "expected"),
    [
        pytest.param(DAY + datetime.timedelta(minutes=1), Status.SENT, id="aged-out"),
        pytest.param(DAY - datetime.timedelta(minutes=1), Status.DEFERRED, id="inside"),
    ],
)
def test_the_budget_counts_the_last_24_hours(
    age: datetime.timedelta,
    expected: str,
    budget_of_3: int,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    rows = _queued(
        message("earlier", _to(3)),
        message("now", _to(1)),
        capture=django_capture_on_commit_callbacks,
    )
    started = timezone.now() - age
    OutboundMessage.objects.filter(pk=rows["earlier"].pk).update(
        status=Status.SENT, started_at=started, sent_at=started, attempts=1
    )
    run_tasks()
    now = rows["now"]
    assert _status(now)[0] == expected
    if expected == Status.DEFERRED:
        # It waits exactly until the earlier recipients leave the window.
        assert now.send_after == started + DAY


def test_a_message_is_not_counted_against_itself_when_tried_again(
    budget_of_3: int,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    rows = _queued(message("3", _to(3)), capture=django_capture_on_commit_callbacks)
    # As a first attempt that failed for a moment left it: started, deferred.
    OutboundMessage.objects.update(
        status=Status.DEFERRED,
        started_at=timezone.now() - datetime.timedelta(minutes=5),
        attempts=1,
    )
    run_tasks()
    assert _status(rows["3"])[:2] == (Status.SENT, 2)
    assert [len(m.rcpt_tos) for m in smtp_server.messages] == [3]
