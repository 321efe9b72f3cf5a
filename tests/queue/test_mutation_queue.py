"""The pacing decisions and queue transitions that mutation testing found unasserted.

Each test pins down a value the worker acts on (when a message may go, what
was stored, what was announced), so that changing the code's arithmetic or a
comparison fails a test; see docs/development.md, "Mutation testing".
"""

from __future__ import annotations

import datetime
import smtplib
import time
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from django_live_oauth_mail import signals
from django_live_oauth_mail.exceptions import (
    GraphError,
    LiveOAuthMailError,
    MessageMayHaveBeenSent,
    ReconnectRequired,
    Throttled,
)
from django_live_oauth_mail.models import MailAccount, OutboundMessage, SendAsAddress
from django_live_oauth_mail.queue import outbox, pacing, service, session_leases, worker
from django_live_oauth_mail.sending import retry
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .test_outbox import message, queue, run_tasks, send_queued_message
from .test_outbox import tasks as tasks  # autouse: clears the recorded tasks

Status = OutboundMessage.Status
ALICE = "alice@outlook.com"
DAY = datetime.timedelta(days=1)
HOUR = datetime.timedelta(hours=1)

pytestmark = pytest.mark.django_db


def _row(
    account: MailAccount,
    recipients: int,
    started: datetime.datetime | None = None,
    status: str = Status.SENT,
    **fields: Any,
) -> OutboundMessage:
    return OutboundMessage.objects.create(
        account=account,
        mailbox=account.email,
        from_email=account.email,
        recipients=[f"r{n}@example.org" for n in range(recipients)],
        recipient_count=recipients,
        message_id=f"<{OutboundMessage.objects.count()}@example.org>",
        status=status,
        started_at=started,
        **fields,
    )


@pytest.fixture
def budget_of_3(alice_account: MailAccount) -> MailAccount:
    alice_account.daily_recipients = 3
    alice_account.save(update_fields=["daily_recipients"])
    return alice_account


# -- the daily budget: when a message over it may go ------------------------------


@pytest.mark.parametrize(
    ("earlier", "size", "freed_by"),
    [
        # 1 + 1 + 1 sent; 2 more fit once the two oldest have aged out.
        pytest.param([20, 10, 5], 2, 1, id="second-oldest-frees-enough"),
        # 2 + 1 sent; 1 more fits once the oldest has aged out, below the budget.
        pytest.param([20, 10], 1, 0, id="oldest-frees-more-than-enough"),
    ],
)
def test_an_over_budget_message_waits_until_just_enough_recipients_age_out(
    budget_of_3: MailAccount, earlier: list[int], size: int, freed_by: int
) -> None:
    now = timezone.now()
    sizes = {20: 1, 10: 1, 5: 1} if len(earlier) == 3 else {20: 2, 10: 1}
    started = {hours: now - hours * HOUR for hours in earlier}
    for hours in earlier:
        _row(budget_of_3, sizes[hours], started[hours])
    message = _row(budget_of_3, size, status=Status.QUEUED)

    wait = pacing.wait_for(budget_of_3, message, now)

    assert wait is not None
    assert wait.until == started[earlier[freed_by]] + DAY
    assert "has sent to 3 of its 3 recipients" in wait.reason


def test_a_message_larger_than_the_budget_waits_a_whole_day(
    budget_of_3: MailAccount,
) -> None:
    now = timezone.now()
    _row(budget_of_3, 1, now - HOUR)
    message = _row(budget_of_3, 4, status=Status.QUEUED)
    wait = pacing.wait_for(budget_of_3, message, now)
    assert wait is not None
    assert wait.until == now + DAY
    assert "has sent to 1 of its 3 recipients" in wait.reason


def test_with_nothing_sent_today_only_a_message_over_the_budget_waits(
    budget_of_3: MailAccount,
) -> None:
    now = timezone.now()
    fits = _row(budget_of_3, 3, status=Status.QUEUED)
    assert pacing.wait_for(budget_of_3, fits, now) is None
    too_big = _row(budget_of_3, 4, status=Status.QUEUED)
    wait = pacing.wait_for(budget_of_3, too_big, now)
    assert wait is not None
    assert wait.until == now + DAY
    assert "has sent to 0 of its 3 recipients" in wait.reason


def test_a_message_that_exactly_fills_the_budget_goes(
    budget_of_3: MailAccount,
) -> None:
    now = timezone.now()
    _row(budget_of_3, 1, now - HOUR)
    _row(budget_of_3, 1, now - 2 * HOUR)
    assert pacing.wait_for(budget_of_3, _row(budget_of_3, 1), now) is None
    assert pacing.wait_for(budget_of_3, _row(budget_of_3, 2), now) is not None


# -- the send rate's window ---------------------------------------------------------


def test_a_short_period_gets_a_tenth_of_itself_as_margin(
    alice_account: MailAccount,
) -> None:
    alice_account.send_rate = "1/second"
    alice_account.save(update_fields=["send_rate"])
    now = timezone.now()
    started = now - datetime.timedelta(milliseconds=500)
    _row(alice_account, 1, started)
    wait = pacing.wait_for(alice_account, _row(alice_account, 1), now)
    assert wait is not None
    assert wait.until == started + datetime.timedelta(microseconds=1_100_000)


@pytest.mark.parametrize(
    ("rate", "said"),
    [
        ("1/second", "1 message(s) per second."),
        ("1/minute", "1 message(s) per minute."),
        ("1/hour", "1 message(s) per hour."),
        ("1/day", "1 message(s) per day."),
    ],
)
def test_the_pacing_reason_names_the_period(
    alice_account: MailAccount, rate: str, said: str
) -> None:
    alice_account.send_rate = rate
    alice_account.save(update_fields=["send_rate"])
    now = timezone.now()
    _row(alice_account, 1, now - datetime.timedelta(milliseconds=10))
    wait = pacing.wait_for(alice_account, _row(alice_account, 1), now)
    assert wait is not None
    assert wait.reason.endswith(f"sends at most {said}")


def test_an_unnamed_period_is_said_in_seconds() -> None:
    assert pacing._period(90.0) == "90 seconds"


# -- the outbox's rows ------------------------------------------------------------


def test_a_message_with_no_recipients_is_skipped_and_the_next_one_queued(
    alice_account: MailAccount, django_capture_on_commit_callbacks: Any
) -> None:
    nobody = EmailMessage("nobody", "Body", alice_account.email, [])
    somebody = EmailMessage("somebody", "Body", alice_account.email, ["to@example.org"])
    with django_capture_on_commit_callbacks():
        queued = service.queue(
            [(alice_account, [nobody, somebody])], acting_user=None, explicit=True
        )
    assert queued == 1
    assert list(OutboundMessage.objects.values_list("subject", flat=True)) == [
        "somebody"
    ]


def test_queued_messages_are_stored_in_one_insert(
    alice_account: MailAccount, django_capture_on_commit_callbacks: Any
) -> None:
    if not connection.features.can_return_rows_from_bulk_insert:
        pytest.skip("this database inserts the rows one by one")
    messages = [
        EmailMessage(f"m{n}", "Body", alice_account.email, ["to@example.org"])
        for n in range(3)
    ]
    with django_capture_on_commit_callbacks(), CaptureQueriesContext(connection) as q:
        service.queue([(alice_account, messages)], acting_user=None, explicit=True)
    inserts = [s for s in q.captured_queries if s["sql"].startswith("INSERT")]
    assert len(inserts) == 1
    assert OutboundMessage.objects.count() == 3


@pytest.mark.parametrize("status", [Status.UNKNOWN, Status.SENT])
def test_a_message_read_as_unknown_or_sent_is_never_started_again(
    alice_account: MailAccount, status: str
) -> None:
    row = _row(alice_account, 1, timezone.now() - HOUR, status=status, attempts=1)
    row.refresh_from_db()  # as the admin or a stale task reads it
    assert outbox.start(row, timezone.now()) is False
    assert _stored(row) == (status, 1, "")


@pytest.mark.parametrize(
    ("status", "level"),
    [(Status.FAILED, "ERROR"), (Status.UNKNOWN, "WARNING")],
)
def test_a_failed_message_is_logged_as_an_error_an_unknown_one_as_a_warning(
    alice_account: MailAccount,
    caplog: pytest.LogCaptureFixture,
    status: str,
    level: str,
) -> None:
    row = _row(alice_account, 1, status=Status.QUEUED)
    with caplog.at_level("WARNING", logger="django_live_oauth_mail.queue.outbox"):
        outbox.failed(row, RuntimeError("it broke"), status=status)
    row.refresh_from_db()
    assert (row.status, row.last_error) == (status, "it broke")
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        (level, f"Queued message {row.pk} from {row.mailbox} {status}: it broke")
    ]


def test_a_receiver_that_succeeds_is_not_logged(
    alice_account: MailAccount,
    caplog: pytest.LogCaptureFixture,
    django_capture_on_commit_callbacks: Any,
) -> None:
    received: list[int] = []

    def receiver(sender: Any, message: OutboundMessage, **kwargs: Any) -> None:
        received.append(message.pk)

    row = _row(alice_account, 1, status=Status.QUEUED)
    signals.message_sent.connect(receiver, dispatch_uid="mutation-queue")
    try:
        with (
            caplog.at_level("INFO", logger="django_live_oauth_mail.queue.outbox"),
            django_capture_on_commit_callbacks(execute=True),
        ):
            outbox.sent(row)
    finally:
        signals.message_sent.disconnect(dispatch_uid="mutation-queue")
    assert received == [row.pk]
    assert caplog.records == []


def test_failing_a_mailbox_with_nothing_waiting_logs_nothing(
    alice_account: MailAccount, caplog: pytest.LogCaptureFixture
) -> None:
    _row(alice_account, 1, timezone.now(), status=Status.SENT)
    with caplog.at_level("INFO", logger="django_live_oauth_mail.queue.outbox"):
        assert outbox.fail_waiting(alice_account, RuntimeError("gone")) == 0
    assert caplog.records == []
    waiting = _row(alice_account, 1, status=Status.QUEUED)
    with caplog.at_level("INFO", logger="django_live_oauth_mail.queue.outbox"):
        assert outbox.fail_waiting(alice_account, RuntimeError("gone")) == 1
    waiting.refresh_from_db()
    assert (waiting.status, waiting.last_error) == (Status.FAILED, "gone")
    assert [r.getMessage() for r in caplog.records][-1] == (
        f"1 queued message(s) from {alice_account} failed: gone"
    )


@pytest.mark.parametrize(
    ("seconds_ago", "resumed"), [(300.5, 1), (299.5, 0)], ids=["overdue", "not-yet"]
)
def test_resume_by_default_takes_messages_waiting_five_minutes(
    alice_account: MailAccount, seconds_ago: float, resumed: int
) -> None:
    row = _row(alice_account, 1, status=Status.QUEUED)
    OutboundMessage.objects.filter(pk=row.pk).update(
        updated_at=timezone.now() - datetime.timedelta(seconds=seconds_ago)
    )
    assert service.resume() == resumed


def test_a_message_deferred_long_ago_is_resumed(
    alice_account: MailAccount, tasks: Any
) -> None:
    row = _row(alice_account, 1, status=Status.DEFERRED)
    OutboundMessage.objects.filter(pk=row.pk).update(
        send_after=timezone.now() - 10 * datetime.timedelta(minutes=1)
    )
    assert service.resume() == 1
    assert [r.args for r in tasks.results] == [[row.pk]]


@pytest.mark.parametrize(
    ("seconds_ago", "stuck"), [(610, 1), (590, 0)], ids=["past", "within"]
)
def test_only_a_message_sending_longer_than_the_timeout_is_stuck(
    alice_account: MailAccount, seconds_ago: int, stuck: int
) -> None:
    started = timezone.now() - datetime.timedelta(seconds=seconds_ago)
    row = _row(alice_account, 1, started, status=Status.SENDING, attempts=1)
    assert outbox.mark_stuck() == stuck
    assert _stored(row)[0] == (Status.UNKNOWN if stuck else Status.SENDING)


def test_an_error_with_no_text_is_stored_by_its_name(
    alice_account: MailAccount,
) -> None:
    one = _row(alice_account, 1, status=Status.QUEUED)
    outbox.failed(one, TimeoutError())
    assert _stored(one) == (Status.FAILED, 0, "TimeoutError")
    two = _row(alice_account, 1, status=Status.QUEUED)
    assert outbox.fail_waiting(alice_account, ConnectionResetError()) == 1
    assert _stored(two) == (Status.FAILED, 0, "ConnectionResetError")


def test_a_retried_message_starts_over(alice_account: MailAccount) -> None:
    row = _row(
        alice_account,
        1,
        timezone.now(),
        status=Status.FAILED,
        attempts=3,
        last_error="Gave up",
        send_after=timezone.now(),
    )
    assert service.retry([row.pk]) == 1
    assert _stored(row) == (Status.QUEUED, 0, "")
    assert row.send_after is None


def test_counts_name_every_status(alice_account: MailAccount) -> None:
    _row(alice_account, 1, status=Status.QUEUED)
    _row(alice_account, 1, status=Status.QUEUED)
    expected = dict.fromkeys(Status.values, 0) | {Status.QUEUED: 2}
    assert outbox.counts() == expected


def _stuck(account: MailAccount) -> OutboundMessage:
    started = timezone.now() - datetime.timedelta(seconds=700)
    return _row(account, 1, started, status=Status.SENDING, attempts=1)


def test_a_worker_looks_for_stuck_messages_at_most_once_a_minute(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    tasks: Any,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    monkeypatch.setattr(worker, "_next_stuck_check", 0.0)  # none lately
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("one"), message("two"), message("three"))
    one, two, three = tasks.results
    first = _stuck(alice_account)
    send_queued_message(*one.args)
    assert _stored(first)[0] == Status.UNKNOWN
    second = _stuck(alice_account)
    send_queued_message(*two.args)  # within the minute: not looked for
    assert _stored(second)[0] == Status.SENDING
    monkeypatch.setattr(worker, "_next_stuck_check", time.monotonic())  # a minute on
    send_queued_message(*three.args)
    assert _stored(second)[0] == Status.UNKNOWN
    assert len(smtp_server.messages) == 3


def test_resume_turns_stuck_messages_unknown_before_it_schedules(
    alice_account: MailAccount, tasks: Any
) -> None:
    stuck = _stuck(alice_account)
    assert service.resume() == 0
    assert _stored(stuck)[0] == Status.UNKNOWN
    assert tasks.results == []


# -- the worker: what a failure leaves behind ---------------------------------------


def _sending(account: MailAccount, attempts: int = 1) -> OutboundMessage:
    """A row as start() leaves it: being sent, this attempt counted."""
    row = _row(account, 1, timezone.now(), status=Status.SENDING, attempts=attempts)
    row.refresh_from_db()
    return row


def _stored(row: OutboundMessage) -> tuple[str, int, str]:
    row.refresh_from_db()
    return row.status, row.attempts, row.last_error


@pytest.mark.parametrize("before", [0, 1])
def test_a_database_error_before_the_attempt_defers_it_as_an_attempt(
    alice_account: MailAccount, before: int
) -> None:
    row = _row(alice_account, 1, status=Status.DEFERRED, attempts=before)
    worker._record_failure(row, alice_account, DatabaseError("locked"), paced=True)
    assert _stored(row) == (
        Status.DEFERRED,
        before + 1,
        f"Temporary failure (attempt {before + 1} of 10): locked",
    )


def test_a_database_error_during_the_attempt_fails_it_and_is_raised(
    alice_account: MailAccount,
) -> None:
    row = _sending(alice_account)
    with pytest.raises(DatabaseError):
        worker._record_failure(row, alice_account, DatabaseError("gone"), paced=True)
    assert _stored(row) == (Status.FAILED, 1, "gone")


@pytest.mark.parametrize(
    ("status", "expected", "attempts", "error"),
    [
        (500, Status.DEFERRED, 1, "Temporary failure (attempt 1 of 10): busy"),
        (499, Status.FAILED, 1, "busy"),
    ],
)
def test_a_graph_server_error_is_tried_again_a_refusal_is_not(
    alice_account: MailAccount, status: int, expected: str, attempts: int, error: str
) -> None:
    row = _sending(alice_account)
    refused = GraphError("busy", mailbox=ALICE, status=status, code="X")
    worker._record_failure(row, alice_account, refused, paced=True)
    assert _stored(row) == (expected, attempts, error)


def test_without_a_task_engine_that_can_wait_a_temporary_failure_is_final(
    alice_account: MailAccount,
) -> None:
    row = _sending(alice_account)
    refused = GraphError("busy", mailbox=ALICE, status=503, code="X")
    worker._record_failure(row, alice_account, refused, paced=False)
    assert _stored(row) == (Status.FAILED, 1, "busy")


def test_a_lost_answer_makes_it_unknown(alice_account: MailAccount) -> None:
    row = _sending(alice_account)
    lost = MessageMayHaveBeenSent("lost", mailbox=ALICE)
    worker._record_failure(row, alice_account, lost, paced=True)
    assert _stored(row) == (Status.UNKNOWN, 1, "lost")


def test_a_revoked_link_fails_the_message_and_everything_waiting(
    alice_account: MailAccount,
) -> None:
    row = _sending(alice_account)
    waiting = _row(alice_account, 1, status=Status.QUEUED)
    revoked = ReconnectRequired("link again", mailbox=ALICE)
    worker._record_failure(row, alice_account, revoked, paced=True)
    assert _stored(row) == (Status.FAILED, 1, "link again")
    assert _stored(waiting) == (Status.FAILED, 0, "link again")


@pytest.mark.parametrize(
    ("error", "raised"),
    [
        (smtplib.SMTPDataError(550, b"5.7.1 refused"), False),
        (LiveOAuthMailError("refused"), False),
        (ValueError("a bug"), True),
    ],
    ids=["smtp-refusal", "ours", "bug"],
)
def test_a_lasting_failure_fails_it_and_only_a_bug_is_raised(
    alice_account: MailAccount, error: Exception, raised: bool
) -> None:
    row = _sending(alice_account)
    if raised:
        with pytest.raises(type(error)):
            worker._record_failure(row, alice_account, error, paced=True)
    else:
        worker._record_failure(row, alice_account, error, paced=True)
    assert _stored(row) == (Status.FAILED, 1, str(error))


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(9, Status.DEFERRED), (10, Status.FAILED)],
    ids=["last-but-one", "last"],
)
def test_the_last_attempt_gives_up(
    alice_account: MailAccount, attempt: int, expected: str
) -> None:
    row = _sending(alice_account, attempts=attempt)
    worker._retry_later(row, DatabaseError("locked"), attempt=attempt)
    status, _, error = _stored(row)
    assert status == expected
    if expected == Status.FAILED:
        assert error == "Gave up after 10 attempts: locked"


@pytest.mark.parametrize(
    ("attempt", "retry_after", "backoff"),
    [
        (1, None, 10),
        (3, None, 40),
        (1, 100.0, 100),
        (10, None, 3600),  # an hour at most
    ],
    ids=["first", "doubling", "server-asked", "capped"],
)
def test_a_retry_waits_the_backoff_plus_at_most_a_tenth(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    attempt: int,
    retry_after: float | None,
    backoff: float,
) -> None:
    live_settings["QUEUE_BACKOFF"] = 10
    live_settings["QUEUE_ATTEMPTS"] = 20
    row = _sending(alice_account, attempts=attempt)
    throttled = Throttled("slow down", mailbox=ALICE, retry_after=retry_after)
    before = timezone.now()
    worker._retry_later(row, throttled, attempt=attempt)
    after = timezone.now()
    assert _stored(row) == (
        Status.DEFERRED,
        attempt,
        f"Throttled (attempt {attempt} of 20): slow down",
    )
    assert row.send_after is not None
    wait = datetime.timedelta(seconds=backoff)
    assert before + wait <= row.send_after <= after + wait * 1.1


def test_jitter_never_moves_a_due_time_that_is_now() -> None:
    now = timezone.now()
    assert retry.jittered(now, now) == now
    assert retry.jittered(now - HOUR, now) == now - HOUR


def test_recording_a_sent_message_is_tried_again_after_a_database_error(
    alice_account: MailAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = _sending(alice_account)
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)
    record = outbox.sent
    failures = [DatabaseError("restarting")]

    def flaky(message: OutboundMessage) -> None:
        if failures:
            raise failures.pop()
        record(message)

    monkeypatch.setattr(outbox, "sent", flaky)
    with caplog.at_level("WARNING"):
        worker._record_sent(row)
    assert _stored(row)[0] == Status.SENT
    assert len(pauses) == 1
    assert all(pause > 0 for pause in pauses)
    assert [(r.levelname, r.getMessage()) for r in caplog.records] == [
        ("WARNING", f"Could not record message {row.pk} as sent: restarting")
    ]


def test_a_sent_message_that_cannot_be_recorded_is_left_sending_and_logged(
    alice_account: MailAccount,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    row = _sending(alice_account)
    pauses: list[float] = []
    monkeypatch.setattr(time, "sleep", pauses.append)

    def broken(message: OutboundMessage) -> None:
        raise DatabaseError("gone")

    monkeypatch.setattr(outbox, "sent", broken)
    with caplog.at_level("WARNING"):
        worker._record_sent(row)
    assert _stored(row)[0] == Status.SENDING
    assert len(pauses) == 2  # between the three attempts, none after the last
    assert all(pause > 0 for pause in pauses)
    assert [r.levelname for r in caplog.records] == ["WARNING"] * 3 + ["ERROR"]


# -- the worker: routing and pacing before the attempt ------------------------------


def test_a_deactivated_users_mail_fails_as_theirs_when_a_later_link_is_shared(
    alice_account: MailAccount,
    other_user: Any,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    # Routed as no one, the address now goes through this later, shared link.
    later = MailAccount.objects.create(
        user=other_user,
        email=ALICE,
        kind=MailAccount.Kind.PERSONAL,
        home_account_id="later-link",
        encrypted_token_cache=alice_account.encrypted_token_cache,
        shared=True,
    )
    assert later.pk > alice_account.pk
    acting_user.is_active = False
    acting_user.save(update_fields=["is_active"])
    run_tasks()
    row = OutboundMessage.objects.get()
    assert (row.status, row.attempts) == (Status.FAILED, 0)
    assert "has been deactivated" in row.last_error
    assert smtp_server.auth_attempts == []


def _mailbox_locks(queries: list[dict[str, Any]]) -> int:
    table = MailAccount._meta.db_table
    return sum(
        q["sql"].startswith(f'UPDATE "{table}" SET "send_rate"')  # SQLite's lock
        or (f'FROM "{table}"' in q["sql"] and "FOR UPDATE" in q["sql"])
        for q in queries
    )


def test_a_warm_worker_renews_its_session_slot_and_paces_under_one_lock(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("one"), message("two"))
    first, second = tasks.results
    tasks.clear()
    # No warm session: the slot is taken before connecting, then the pace.
    with CaptureQueriesContext(connection) as captured:
        send_queued_message(*first.args)
    assert _mailbox_locks(captured.captured_queries) == 2
    # Its session is warm: one transaction renews the slot and paces.
    with CaptureQueriesContext(connection) as captured:
        send_queued_message(*second.args)
    assert _mailbox_locks(captured.captured_queries) == 1
    assert set(OutboundMessage.objects.values_list("status", flat=True)) == {
        Status.SENT
    }
    assert len({m.session_id for m in smtp_server.messages}) == 1
    leases = MailAccount.objects.get(pk=alice_account.pk).session_leases
    assert list(leases) == [session_leases.holder()]


def test_a_warm_worker_defers_when_its_lease_was_lost_and_every_slot_is_taken(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    live_settings["SESSIONS_PER_MAILBOX"] = 1
    with django_capture_on_commit_callbacks(execute=True):
        queue(message("one"), message("two"))
    first, second = tasks.results
    tasks.clear()
    send_queued_message(*first.args)  # leaves its session warm
    held = (timezone.now() + HOUR).isoformat()
    MailAccount.objects.filter(pk=alice_account.pk).update(
        session_leases={"other-host:1": held}
    )
    send_queued_message(*second.args)
    row = OutboundMessage.objects.get(subject="two")
    assert (row.status, row.attempts) == (Status.DEFERRED, 0)
    assert "hold SMTP sessions" in row.last_error
    assert len(smtp_server.messages) == 1


def test_a_message_another_mailbox_would_now_send_names_that_mailbox(
    alice_account: MailAccount,
    bob_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    team = "team@outlook.com"
    SendAsAddress.objects.create(account=alice_account, address=team)
    with django_capture_on_commit_callbacks(execute=True):
        queue(EmailMessage("Hi", "Body", team, ["to@example.org"]))
    SendAsAddress.objects.filter(address=team).update(account=bob_account)
    run_tasks()
    row = OutboundMessage.objects.get()
    assert (row.status, row.account_id) == (Status.FAILED, alice_account.pk)
    assert f"but {bob_account.email} would send it now" in row.last_error
    assert smtp_server.auth_attempts == []


@pytest.mark.parametrize(("backoff", "wait"), [(0, 1), (5, 5)])
def test_with_every_session_slot_taken_it_waits_the_backoff_and_at_least_a_second(
    live_settings: dict[str, Any],
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
    backoff: int,
    wait: int,
) -> None:
    live_settings["SESSIONS_PER_MAILBOX"] = 1
    live_settings["QUEUE_BACKOFF"] = backoff
    held = (timezone.now() + HOUR).isoformat()
    MailAccount.objects.filter(pk=alice_account.pk).update(
        session_leases={"other-host:1": held}
    )
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    before = timezone.now()
    run_tasks()
    after = timezone.now()
    row = OutboundMessage.objects.get()
    assert (row.status, row.attempts) == (Status.DEFERRED, 0)
    assert row.send_after is not None
    seconds = datetime.timedelta(seconds=wait)
    assert before + seconds <= row.send_after <= after + seconds * 1.1
    assert smtp_server.auth_attempts == []


def test_a_database_error_taking_a_session_slot_defers_it_as_an_attempt(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
    django_capture_on_commit_callbacks: Any,
) -> None:
    def locked(account: MailAccount) -> None:
        raise DatabaseError("database is locked")

    monkeypatch.setattr(session_leases, "take", locked)
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    run_tasks()
    row = OutboundMessage.objects.get()
    assert (row.status, row.attempts, row.last_error) == (
        Status.DEFERRED,
        1,
        "Temporary failure (attempt 1 of 10): database is locked",
    )
    assert smtp_server.auth_attempts == []
