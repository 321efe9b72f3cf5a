"""``message_failed``: once for every message that ends failed or unknown, after commit.

Whatever moved it: the worker, a disconnected or revoked mailbox failing its
waiting mail in bulk, or a stuck ``sending`` message becoming ``unknown``.
"""

from __future__ import annotations

import datetime
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, connections, transaction
from django.utils import timezone

from django_live_oauth_mail import signals
from django_live_oauth_mail.exceptions import AccountNotFound
from django_live_oauth_mail.identity.accounts import unlink_mailbox
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.queue import outbox
from django_live_oauth_mail.queue.tasks import send_queued_message
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from ..identity.test_concurrency import require_vendor
from .test_outbox import message, queue, run_tasks
from .test_outbox import tasks as tasks  # autouse: clears the recorded tasks

Status = OutboundMessage.Status
ALICE = "alice@outlook.com"


class Rollback(Exception):
    """An unrelated error later in the caller's transaction."""


class Announced(list[tuple[int, str, str, bool]]):
    """Each message_failed: (pk, status, error, sent inside a transaction?)."""

    def __call__(
        self, sender: Any, message: OutboundMessage, error: Any, **kwargs: Any
    ) -> None:
        in_transaction = connections["default"].in_atomic_block
        self.append((message.pk, message.status, str(error), in_transaction))

    def pks(self) -> list[int]:
        return sorted(pk for pk, *_ in self)


@pytest.fixture
def announced() -> Iterator[Announced]:
    received = Announced()
    signals.message_failed.connect(received, dispatch_uid="announced")
    yield received
    signals.message_failed.disconnect(dispatch_uid="announced")


def _stuck(row: OutboundMessage) -> None:
    """As a worker that died mid-send leaves it."""
    long_ago = timezone.now() - datetime.timedelta(hours=1)
    OutboundMessage.objects.filter(pk=row.pk).update(
        status=Status.SENDING, started_at=long_ago, attempts=1
    )


@pytest.mark.django_db
def test_a_revoked_link_announces_every_message_it_fails_once(
    identity_platform: Any,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    announced: Announced,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("1"), message("2"), message("3"))
    identity_platform.expire_access_tokens(ALICE)
    identity_platform.revoke(ALICE)
    rows = list(OutboundMessage.objects.order_by("pk"))
    run_tasks()
    assert announced.pks() == [r.pk for r in rows]
    assert {status for _, status, _, _ in announced} == {Status.FAILED}
    assert all("Link the mailbox again" in error for _, _, error, _ in announced)
    assert smtp_server.messages == []


@pytest.mark.django_db
def test_a_stuck_message_is_announced_once_as_unknown(
    alice_account: MailAccount,
    acting_user: Any,
    announced: Announced,
    django_capture_on_commit_callbacks: Any,
) -> None:
    queue(message("stuck"), message("waiting"))
    stuck = OutboundMessage.objects.get(subject="stuck")
    _stuck(stuck)
    with django_capture_on_commit_callbacks(execute=True):
        assert outbox.mark_stuck() == 1
        assert outbox.mark_stuck() == 0
    assert [(pk, status) for pk, status, _, _ in announced] == [
        (stuck.pk, Status.UNKNOWN)
    ]
    assert "may or may not have accepted it" in announced[0][2]


@pytest.mark.django_db
def test_a_receivers_error_is_logged_and_changes_nothing(
    alice_account: MailAccount,
    acting_user: Any,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("receiver bug")

    queue(message())
    signals.message_failed.connect(broken, dispatch_uid="broken")
    try:
        with django_capture_on_commit_callbacks(execute=True):
            assert outbox.fail_waiting(alice_account, AccountNotFound("gone")) == 1
    finally:
        signals.message_failed.disconnect(dispatch_uid="broken")
    assert OutboundMessage.objects.get().status == Status.FAILED
    assert "receiver bug" in caplog.text


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_disconnect_announces_its_failed_messages_after_commit_not_on_rollback(
    alice_account: MailAccount,
    acting_user: Any,
    announced: Announced,
) -> None:
    require_vendor("postgresql")
    queue(message("1"), message("2"), message("sent"))
    OutboundMessage.objects.filter(subject="sent").update(status=Status.SENT)

    with pytest.raises(Rollback), transaction.atomic():
        unlink_mailbox(MailAccount.objects.get(pk=alice_account.pk))
        raise Rollback
    assert announced == []
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {
        Status.QUEUED,
        Status.SENT,
    }

    unlink_mailbox(MailAccount.objects.get(pk=alice_account.pk))
    waiting = OutboundMessage.objects.exclude(subject="sent").order_by("pk")
    assert announced.pks() == [r.pk for r in waiting]
    for _, status, error, in_transaction in announced:
        assert (status, in_transaction) == (Status.FAILED, False)
        assert "was disconnected" in error


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_two_workers_finding_the_same_stuck_message_announce_it_once(
    alice_account: MailAccount, acting_user: Any, announced: Announced
) -> None:
    """The second waits for the first's row lock, then finds nothing to move."""
    require_vendor("postgresql")
    queue(message())
    row = OutboundMessage.objects.get()
    _stuck(row)
    first_moved = threading.Event()
    first_may_commit = threading.Event()
    moved: dict[str, int] = {}

    def worker(name: str) -> None:
        try:
            with transaction.atomic():
                moved[name] = outbox.mark_stuck()
                if name == "first":
                    first_moved.set()
                    assert first_may_commit.wait(timeout=30)
        finally:
            connection.close()

    first = threading.Thread(target=worker, args=("first",))
    first.start()
    assert first_moved.wait(timeout=30)
    second = threading.Thread(target=worker, args=("second",))
    second.start()
    _wait_for_a_lock_wait()  # the second read the row as stuck, and waits
    first_may_commit.set()
    first.join(timeout=30)
    second.join(timeout=30)
    assert moved == {"first": 1, "second": 0}
    assert [(pk, status) for pk, status, _, _ in announced] == [
        (row.pk, Status.UNKNOWN)
    ]


def _wait_for_a_lock_wait() -> None:
    """Until a session of the test database waits for a row lock."""
    with connection.cursor() as cursor:
        for _ in range(600):
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = "
                "current_database() AND wait_event_type = 'Lock'"
            )
            (waiting,) = cursor.fetchone()
            if waiting:
                return
            threading.Event().wait(0.05)
    pytest.fail("The second worker never waited for the first's row lock.")


@pytest.mark.django_db
def test_the_worker_announces_a_failure_once(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    announced: Announced,
    django_capture_on_commit_callbacks: Any,
) -> None:
    smtp_server.fail_next(stage="data", reply="554 5.2.252 SendAsDenied; not allowed")
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    row = OutboundMessage.objects.get()
    run_tasks()
    send_queued_message(row.pk)  # the task delivered again: nothing more to say
    assert [(pk, status) for pk, status, _, _ in announced] == [(row.pk, Status.FAILED)]


@pytest.mark.postgres
@pytest.mark.django_db(transaction=True)
def test_a_disconnect_locks_the_mailbox_before_its_messages_as_a_worker_does(
    alice_account: MailAccount, acting_user: Any, announced: Announced
) -> None:
    """A worker pacing holds the mailbox's row, then marks a message sending.

    A disconnect that locked the messages first, then waited for the mailbox
    to delete it, would deadlock with it. So while the disconnect waits for
    the mailbox, none of its messages may be locked.
    """
    require_vendor("postgresql")
    queue(message())
    row = OutboundMessage.objects.get()
    pacing, release = threading.Event(), threading.Event()

    def worker() -> None:
        try:
            with transaction.atomic():
                MailAccount.objects.lock_for_sending(alice_account.pk)  # as a worker
                pacing.set()
                assert release.wait(timeout=30)
        finally:
            connection.close()

    def disconnect() -> None:
        try:
            unlink_mailbox(MailAccount.objects.get(pk=alice_account.pk))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker), threading.Thread(target=disconnect)]
    threads[0].start()
    assert pacing.wait(timeout=30)
    threads[1].start()
    _wait_for_a_lock_wait()  # the disconnect waits for the mailbox's row
    try:
        with transaction.atomic():
            # As the worker's next step does: the message's row is free.
            OutboundMessage.objects.select_for_update(nowait=True).get(pk=row.pk)
    finally:
        release.set()
        for thread in threads:
            thread.join(timeout=30)
    assert announced.pks() == [row.pk]
    assert OutboundMessage.objects.get(pk=row.pk).status == Status.FAILED
