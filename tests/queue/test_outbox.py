"""QueuedEmailBackend and the worker, in this process, against the stand-ins.

The dummy task backend (tests/settings.py) records each task instead of
running it; :func:`run_tasks` runs what is due, as a worker would. Real worker
processes are in test_outbox_workers.py.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core import mail
from django.core.mail import EmailMessage
from django.db import transaction
from django.test import TestCase
from django.utils import timezone

from django_live_oauth_mail import signals
from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.identity.accounts import unlink_mailbox
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.queue import outbox, service, worker
from django_live_oauth_mail.queue.tasks import send_queued_message, sending_task
from django_live_oauth_mail.testing import XOAuth2SMTPServer

Status = OutboundMessage.Status
ALICE = "alice@outlook.com"

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tasks() -> Any:
    backend = sending_task().get_backend()
    backend.clear()
    yield backend
    backend.clear()


def run_tasks(*, due_by: datetime.datetime | None = None) -> list[int]:
    """Run the recorded tasks that are due (all, with ``due_by`` far ahead)."""
    backend = sending_task().get_backend()
    due_by = due_by or timezone.now()
    ran: list[int] = []
    while len(ran) < 100:  # a task that keeps rescheduling itself must fail
        due = [
            r
            for r in backend.results
            if r.task.run_after is None or r.task.run_after <= due_by
        ]
        if not due:
            return ran
        for result in due:
            backend.results.remove(result)
            # What the worker schedules, it schedules on commit.
            with TestCase.captureOnCommitCallbacks(execute=True):
                send_queued_message(*result.args)
            ran.append(result.args[0])
    pytest.fail(f"Tasks kept scheduling themselves for messages {sorted(set(ran))}")


def queue(*messages: EmailMessage, **options: Any) -> int:
    return QueuedEmailBackend(**options).send_messages(messages)


def message(subject: str = "Hi", to: tuple[str, ...] = ("to@example.org",)) -> Any:
    return EmailMessage(subject, "Body text", ALICE, list(to))


def test_queueing_stores_an_encrypted_message_and_schedules_it_on_commit(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    email = EmailMessage("Invoice 7", "Secret body", ALICE, ["a@example.org"])
    email.bcc = ["hidden@example.org"]
    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        assert queue(email) == 1
    row = OutboundMessage.objects.get()
    assert tasks.results == []  # nothing until the caller commits
    assert (row.status, row.account, row.mailbox) == (
        Status.QUEUED,
        alice_account,
        ALICE,
    )
    assert row.acting_user_id == acting_user.pk
    assert row.subject == "Invoice 7"
    assert row.recipient_list == ["a@example.org", "hidden@example.org"]
    assert b"Secret body" not in row.encrypted_message.encode()
    assert b"Secret body" in row.read_message()
    assert smtp_server.messages == []
    for callback in callbacks:
        callback()
    assert [r.args for r in tasks.results] == [[row.pk]]


def test_a_queued_message_is_sent_once_as_rendered(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    received: list[OutboundMessage] = []
    signals.message_sent.connect(
        lambda message, **kw: received.append(message), weak=False, dispatch_uid="t"
    )
    try:
        email = message()
        email.bcc = ["hidden@example.org"]
        with django_capture_on_commit_callbacks(execute=True):
            queue(email)
        row = OutboundMessage.objects.get()
        run_tasks()
        send_queued_message(row.pk)  # a task delivered twice sends once
    finally:
        signals.message_sent.disconnect(dispatch_uid="t")
    (sent,) = smtp_server.messages
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == (Status.SENT, 1, "")
    assert row.sent_at is not None
    assert sent.authenticated_as == ALICE
    assert sorted(sent.rcpt_tos) == ["hidden@example.org", "to@example.org"]
    assert sent.message["Message-ID"] == row.message_id
    assert "hidden@example.org" not in str(sent.message)
    assert [m.pk for m in received] == [row.pk]


def test_a_rolled_back_request_sends_nothing(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        try:
            with transaction.atomic():
                queue(message())
                raise RuntimeError("the view failed")
        except RuntimeError:
            pass
    assert OutboundMessage.objects.count() == 0
    assert tasks.results == []
    assert smtp_server.messages == []


def test_send_mail_through_the_configured_queued_backend(
    settings: Any,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    backend = "django_live_oauth_mail.backends.QueuedEmailBackend"
    if hasattr(settings, "MAILERS"):
        settings.MAILERS = {"default": {"BACKEND": backend}}
    else:
        settings.EMAIL_BACKEND = backend
    with django_capture_on_commit_callbacks(execute=True):
        assert mail.send_mail("Hello", "Body", ALICE, ["x@example.org"]) == 1
    assert smtp_server.messages == []
    run_tasks()
    assert [m.rcpt_tos for m in smtp_server.messages] == [["x@example.org"]]


def test_a_message_no_mailbox_may_send_is_refused_before_anything_is_queued(
    alice_account: MailAccount, other_user: Any
) -> None:
    from django_live_oauth_mail import sending_as
    from django_live_oauth_mail.exceptions import SenderNotAllowed

    with sending_as(other_user), pytest.raises(SenderNotAllowed):
        queue(message())
    assert OutboundMessage.objects.count() == 0
    with sending_as(other_user):
        assert queue(message(), fail_silently=True) == 0


def test_the_rate_limit_defers_the_excess_to_when_the_window_allows(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    live_settings["SEND_RATE"] = "2/minute"
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("1"), message("2"), message("3"))
    run_tasks()
    assert len(smtp_server.messages) == 2
    third = OutboundMessage.objects.get(subject="3")
    first = OutboundMessage.objects.get(subject="1")
    assert third.status == Status.DEFERRED
    assert "at most 2 message(s) per minute" in third.last_error
    assert first.started_at is not None and third.send_after is not None
    earliest = first.started_at + datetime.timedelta(minutes=1)
    assert earliest <= third.send_after <= earliest + datetime.timedelta(seconds=7)
    (later,) = tasks.results
    assert later.args == [third.pk] and later.task.run_after == third.send_after
    # A minute on, the window has room again.
    OutboundMessage.objects.filter(pk__in=[first.pk]).update(
        started_at=timezone.now() - datetime.timedelta(minutes=2)
    )
    assert run_tasks(due_by=third.send_after) == [third.pk]
    third.refresh_from_db()
    assert third.status == Status.SENT
    assert len(smtp_server.messages) == 3


def test_a_mailboxs_own_rate_overrides_the_setting(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(send_rate="1/hour")
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("1"), message("2"))
    run_tasks()
    assert len(smtp_server.messages) == 1
    assert (
        "at most 1 message(s) per hour"
        in OutboundMessage.objects.get(subject="2").last_error
    )


def test_the_daily_recipient_budget_defers_the_rest_to_the_next_window(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    live_settings["DAILY_RECIPIENTS"] = {"personal": 3}
    two = ("a@example.org", "b@example.org")
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("1", two), message("2", two), message("big", ("c@x.org",) * 4))
    run_tasks()
    assert len(smtp_server.messages) == 1
    second = OutboundMessage.objects.get(subject="2")
    first = OutboundMessage.objects.get(subject="1")
    assert second.status == Status.DEFERRED
    assert "Daily recipient budget" in second.last_error
    assert second.send_after is not None and first.started_at is not None
    assert second.send_after >= first.started_at + datetime.timedelta(days=1)
    big = OutboundMessage.objects.get(subject="big")
    assert big.status == Status.FAILED
    assert "more than the 3" in big.last_error


def test_a_throttled_submission_is_deferred_with_backoff_then_delivered(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    live_settings["QUEUE_BACKOFF"] = 5
    smtp_server.fail_next(
        stage="connect",
        reply="432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
    )
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    row = OutboundMessage.objects.get()
    before = timezone.now()
    run_tasks()
    row.refresh_from_db()
    assert row.status == Status.DEFERRED
    assert row.last_error.startswith("Throttled (attempt 1 of 10)")
    assert row.send_after is not None
    assert before + datetime.timedelta(seconds=5) <= row.send_after
    assert row.send_after <= timezone.now() + datetime.timedelta(seconds=5.6)
    assert smtp_server.messages == []
    run_tasks(due_by=row.send_after)
    row.refresh_from_db()
    assert (row.status, row.attempts) == (Status.SENT, 2)
    assert len(smtp_server.messages) == 1


def test_a_lasting_refusal_fails_the_message_with_the_servers_reason(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    failures: list[Any] = []
    signals.message_failed.connect(
        lambda message, error, **kw: failures.append((message.pk, error)),
        weak=False,
        dispatch_uid="t",
    )
    smtp_server.fail_next(stage="data", reply="554 5.2.252 SendAsDenied; not allowed")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            queue(message())
        run_tasks()
    finally:
        signals.message_failed.disconnect(dispatch_uid="t")
    row = OutboundMessage.objects.get()
    assert row.status == Status.FAILED
    assert "SendAsDenied" in row.last_error
    assert [pk for pk, _ in failures] == [row.pk]


def test_a_revoked_mailbox_fails_its_queued_messages_with_the_reconnect_message(
    identity_platform: Any,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("1"), message("2"), message("3"))
    identity_platform.expire_access_tokens(ALICE)
    identity_platform.revoke(ALICE)
    first = OutboundMessage.objects.get(subject="1")
    send_queued_message(first.pk)
    rows = {r.subject: r for r in OutboundMessage.objects.all()}
    assert {r.status for r in rows.values()} == {Status.FAILED}
    assert "Link the mailbox again" in rows["1"].last_error
    assert "Link the mailbox again" in rows["3"].last_error
    assert smtp_server.messages == []


def test_a_mailbox_needing_reconnection_fails_the_message_without_trying(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    MailAccount.objects.filter(pk=alice_account.pk).update(
        status=MailAccount.Status.RECONNECT_REQUIRED, last_error="consent withdrawn"
    )
    run_tasks()
    row = OutboundMessage.objects.get()
    assert (row.status, row.attempts) == (Status.FAILED, 0)
    assert "needs to be linked again" in row.last_error
    assert "consent withdrawn" in row.last_error
    assert smtp_server.auth_attempts == []


def test_disconnecting_a_mailbox_fails_its_waiting_mail_and_keeps_the_rows(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("1"), message("2"))
    OutboundMessage.objects.filter(subject="2").update(status=Status.SENT)
    unlink_mailbox(alice_account)
    run_tasks()
    rows = {r.subject: r for r in OutboundMessage.objects.all()}
    assert rows["1"].status == Status.FAILED
    assert "was disconnected" in rows["1"].last_error
    assert rows["2"].status == Status.SENT  # what went out stays as it was
    assert {r.account_id for r in rows.values()} == {None}
    assert {r.mailbox for r in rows.values()} == {ALICE}
    assert smtp_server.messages == []


def test_routing_runs_again_for_the_stored_acting_user(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    link: Any,
    other_user: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    # The worker has no acting user; the stored one still owns the mailbox.
    from django_live_oauth_mail import sending_as

    with sending_as(None):
        run_tasks()
    assert len(smtp_server.messages) == 1


def test_a_message_whose_mailbox_would_change_is_not_sent(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
    django_user_model: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    # The user who queued it is gone: nobody may send from Alice's mailbox now.
    OutboundMessage.objects.update(acting_user=None)
    run_tasks()  # (the test still acts as Alice's owner: the worker must not)
    row = OutboundMessage.objects.get()
    assert row.status == Status.FAILED
    assert "sends only for its owner" in row.last_error
    assert smtp_server.messages == []


def test_a_message_stuck_in_sending_becomes_unknown(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(worker, "_next_stuck_check", 0.0)  # not looked lately
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    row = OutboundMessage.objects.get()
    OutboundMessage.objects.update(
        status=Status.SENDING,
        started_at=timezone.now() - datetime.timedelta(seconds=601),
        attempts=1,
    )
    run_tasks()  # the task is delivered again: it must not send a second copy
    row.refresh_from_db()
    assert row.status == Status.UNKNOWN
    assert "may or may not have accepted it" in row.last_error
    assert smtp_server.messages == []


def test_retry_and_cancel(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("1"), message("2"))
    one = OutboundMessage.objects.get(subject="1")
    two = OutboundMessage.objects.get(subject="2")
    assert outbox.cancel([one.pk]) == 1
    run_tasks()
    one.refresh_from_db()
    assert one.status == Status.CANCELLED
    assert outbox.cancel([two.pk]) == 0  # already sent
    with django_capture_on_commit_callbacks(execute=True):
        assert service.retry([one.pk, two.pk]) == 1
    run_tasks()
    one.refresh_from_db()
    assert one.status == Status.SENT
    assert sorted(m.message["Subject"] for m in smtp_server.messages) == ["1", "2"]


def test_an_engine_that_cannot_defer_sends_at_once_without_pacing(
    settings: Any,
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    settings.TASKS = {
        "default": {
            "BACKEND": f"{settings.TASKS_MODULE}.backends.immediate.ImmediateBackend"
        }
    }
    live_settings["SEND_RATE"] = "1/hour"
    with django_capture_on_commit_callbacks(execute=True):
        assert queue(message("1"), message("2")) == 2
    assert len(smtp_server.messages) == 2
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {
        Status.SENT
    }


def test_too_many_recipients_fails_the_message_rather_than_deferring_it(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    smtp_server.fail_next(stage="rcpt", reply="452 4.5.3 Too many recipients")
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    run_tasks()
    row = OutboundMessage.objects.get()
    assert (row.status, row.attempts) == (Status.FAILED, 1)
    assert "4.5.3" in row.last_error
    assert smtp_server.messages == []


def test_a_large_queued_message_goes_through_graph_with_its_files_uploaded(
    live_settings: dict[str, Any],
    link: Any,
    user: Any,
    acting_user: Any,
    graph_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    import hashlib
    import os

    live_settings["TRANSPORT"] = "graph"
    live_settings["GRAPH_SCOPES"] = ["Mail.Send", "Mail.ReadWrite"]
    link(user, "bob@contoso.com")
    content = os.urandom(6 * 1024 * 1024)
    email = EmailMessage("Big", "Body", "bob@contoso.com", ["to@example.org"])
    email.bcc = ["hidden@example.org"]
    email.attach("small.csv", "a,b\n", "text/csv")
    email.attach("big.bin", content, "application/octet-stream")
    with django_capture_on_commit_callbacks(execute=True):
        queue(email)
    run_tasks()
    assert OutboundMessage.objects.get().status == Status.SENT
    (received,) = graph_server.messages
    files = dict(received.attachments)
    assert sorted(files) == ["big.bin", "small.csv"], graph_server.requests
    assert hashlib.sha256(files["big.bin"]).digest() == hashlib.sha256(content).digest()
    assert files["small.csv"] == b"a,b\n"
    assert sorted(received.rcpt_tos) == ["hidden@example.org", "to@example.org"]
    paths = [path for method, path in graph_server.requests]
    assert sum(p.endswith("/createUploadSession") for p in paths) == 1


def test_graphs_429_defers_for_at_least_its_retry_after(
    live_settings: dict[str, Any],
    link: Any,
    user: Any,
    acting_user: Any,
    graph_server: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    live_settings["TRANSPORT"] = "graph"
    live_settings["QUEUE_BACKOFF"] = 1
    link(user, "bob@contoso.com")
    graph_server.fail_next(headers={"Retry-After": "30"})
    with django_capture_on_commit_callbacks(execute=True):
        queue(EmailMessage("S", "B", "bob@contoso.com", ["to@example.org"]))
    before = timezone.now()
    run_tasks()
    row = OutboundMessage.objects.get()
    assert row.status == Status.DEFERRED
    assert row.last_error.startswith("Throttled (attempt 1 of 10)")
    assert row.send_after is not None
    assert row.send_after >= before + datetime.timedelta(seconds=30)
    assert graph_server.messages == []
    run_tasks(due_by=row.send_after)
    row.refresh_from_db()
    assert row.status == Status.SENT
    assert len(graph_server.messages) == 1


def _queued_row(**kwargs: Any) -> OutboundMessage:
    queue(message(**kwargs))
    return OutboundMessage.objects.get()


def test_a_stale_task_never_moves_a_message_another_worker_is_sending(
    alice_account: MailAccount, acting_user: Any
) -> None:
    row = _queued_row()
    stale = OutboundMessage.objects.get(pk=row.pk)  # read while still queued
    owner = OutboundMessage.objects.get(pk=row.pk)
    assert outbox.start(owner, timezone.now())
    later = timezone.now() + datetime.timedelta(minutes=1)
    assert not outbox.defer(stale, later, "Paced")
    outbox.failed(stale, RuntimeError("stale"))
    assert not outbox.start(stale, timezone.now())
    assert OutboundMessage.objects.get().status == Status.SENDING
    outbox.sent(owner)
    assert OutboundMessage.objects.get().status == Status.SENT


def test_a_slow_worker_records_the_truth_unless_someone_retried_meanwhile(
    alice_account: MailAccount, acting_user: Any
) -> None:
    row = _queued_row()
    slow = OutboundMessage.objects.get(pk=row.pk)
    assert outbox.start(slow, timezone.now() - datetime.timedelta(seconds=700))
    assert outbox.mark_stuck() == 1
    outbox.sent(slow)  # it finished after all: sent, not unknown
    assert OutboundMessage.objects.get().status == Status.SENT

    OutboundMessage.objects.update(status=Status.QUEUED)
    slow = OutboundMessage.objects.get(pk=row.pk)
    assert outbox.start(slow, timezone.now() - datetime.timedelta(seconds=700))
    outbox.mark_stuck()
    assert service.retry([row.pk]) == 1  # a person decided to send it again
    again = OutboundMessage.objects.get(pk=row.pk)
    assert outbox.start(again, timezone.now())
    outbox.failed(slow, RuntimeError("the old attempt's late answer"))
    assert OutboundMessage.objects.get().status == Status.SENDING  # the new one's


def test_a_sent_message_is_never_recorded_as_failed_when_the_database_hiccups(
    monkeypatch: pytest.MonkeyPatch,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django.db import OperationalError

    from django_live_oauth_mail.sending import retry

    def locked(message: Any) -> None:
        raise OperationalError("database is locked")

    monkeypatch.setattr(outbox, "sent", locked)
    monkeypatch.setattr(retry.time, "sleep", lambda seconds: None)
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    run_tasks()
    assert len(smtp_server.messages) == 1
    row = OutboundMessage.objects.get()
    assert row.status == Status.SENDING  # unknown later; never failed, never resent


def test_resume_schedules_waiting_messages_that_have_no_task(
    alice_account: MailAccount, acting_user: Any, tasks: Any
) -> None:
    row = _queued_row()  # queued outside on_commit capture: no task was made
    assert tasks.results == []
    assert service.resume(grace=300) == 0  # not overdue yet
    OutboundMessage.objects.update(
        updated_at=timezone.now() - datetime.timedelta(minutes=10)
    )
    assert service.resume(grace=300) == 1
    assert [r.args for r in tasks.results] == [[row.pk]]


def test_headers_reach_the_server_exactly_as_rendered(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    unsubscribe = "<https://example.org/unsubscribe/" + "a1b2c3d4" * 12 + ">"
    email = message()
    email.extra_headers["List-Unsubscribe"] = unsubscribe
    with django_capture_on_commit_callbacks(execute=True):
        queue(email)
    run_tasks()
    (received,) = smtp_server.messages
    stored = OutboundMessage.objects.get().read_message()

    def lines(data: bytes) -> list[bytes]:
        return data.replace(b"\r\n", b"\n").rstrip(b"\n").split(b"\n")

    # What Django rendered in the request, byte for byte (smtplib only ends
    # the data with a line break).
    assert lines(received.data) == lines(stored)
    assert b"List-Unsubscribe" in received.data


def test_an_identity_platform_outage_defers_instead_of_failing(
    identity_platform: Any,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    identity_platform.expire_access_tokens(ALICE)
    identity_platform.fail_next_token_requests(3, status=503)
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    run_tasks()
    row = OutboundMessage.objects.get()
    assert row.status == Status.DEFERRED
    assert row.last_error.startswith("Temporary failure (attempt 1 of 10)")
    assert smtp_server.messages == []


def test_a_backlog_is_spread_over_the_coming_windows_in_order(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    live_settings["SEND_RATE"] = "2/minute"
    with django_capture_on_commit_callbacks(execute=True):
        queue(*(message(str(n)) for n in range(6)))
    run_tasks()
    after = dict(OutboundMessage.objects.values_list("subject", "send_after"))
    assert after["0"] is None and after["1"] is None
    assert after["2"] == after["3"]
    assert after["4"] == after["5"]
    assert after["4"] - after["2"] == datetime.timedelta(seconds=60.25)


def test_the_task_goes_to_the_configured_backend_queue(
    settings: Any,
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django_live_oauth_mail.exceptions import ConfigurationError

    settings.TASKS = {
        "default": {
            "BACKEND": f"{settings.TASKS_MODULE}.backends.dummy.DummyBackend",
            "QUEUES": ["mail"],
        }
    }
    with pytest.raises(ConfigurationError, match="TASK_QUEUE"):
        QueuedEmailBackend()
    live_settings["TASK_QUEUE"] = "mail"
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    from django_live_oauth_mail.queue.tasks import sending_task

    (result,) = sending_task().get_backend().results
    assert result.task.queue_name == "mail"


def test_a_worker_waits_while_others_hold_every_session_slot(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from django_live_oauth_mail.queue import session_leases

    live_settings["SESSIONS_PER_MAILBOX"] = 2
    soon = (timezone.now() + datetime.timedelta(minutes=1)).isoformat()
    MailAccount.objects.filter(pk=alice_account.pk).update(
        session_leases={"other-host:1": soon, "other-host:2": soon}
    )
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    run_tasks()
    row = OutboundMessage.objects.get()
    assert row.status == Status.DEFERRED
    assert "hold SMTP sessions to alice@outlook.com" in row.last_error
    assert smtp_server.auth_attempts == []  # it did not even connect
    # One of them is gone (its lease ran out): this worker takes the slot.
    past = (timezone.now() - datetime.timedelta(seconds=1)).isoformat()
    MailAccount.objects.filter(pk=alice_account.pk).update(
        session_leases={"other-host:1": soon, "other-host:2": past}
    )
    run_tasks(due_by=timezone.now() + datetime.timedelta(minutes=5))
    row.refresh_from_db()
    assert row.status == Status.SENT
    leases = MailAccount.objects.get(pk=alice_account.pk).session_leases
    assert set(leases) == {"other-host:1", session_leases.holder()}


def test_the_worker_never_sends_for_a_stored_user_who_does_not_own_the_mailbox(
    alice_account: MailAccount,
    acting_user: Any,
    other_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    OutboundMessage.objects.update(acting_user=other_user)
    run_tasks()  # (the test itself acts as the owner: the worker must not)
    row = OutboundMessage.objects.get()
    assert (row.status, row.attempts) == (Status.FAILED, 0)
    assert "not the acting user's" in row.last_error
    assert smtp_server.auth_attempts == []


def test_a_queued_message_that_cannot_be_decrypted_fails_naming_the_key(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    row = OutboundMessage.objects.get()
    # Written with a key the site no longer has.
    OutboundMessage.objects.filter(pk=row.pk).update(
        encrypted_message=Fernet(Fernet.generate_key()).encrypt(b"x").decode()
    )
    run_tasks()
    row.refresh_from_db()
    assert row.status == Status.FAILED
    assert "cannot be decrypted" in row.last_error
    assert "ENCRYPTION_KEYS" in row.last_error
    assert smtp_server.messages == []
