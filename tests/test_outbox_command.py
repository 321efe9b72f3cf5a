"""manage.py live_oauth_mail outbox (status, retry, purge), and rotate-keys on it."""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.core.mail import EmailMessage
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.tasks import send_queued_message

Status = OutboundMessage.Status
ALICE, BOB = "alice@outlook.com", "bob@contoso.com"
LOST_KEY, OLD_KEY, NEW_KEY = (Fernet.generate_key().decode() for _ in range(3))

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def tasks() -> Iterator[Any]:
    backend = send_queued_message.get_backend()
    backend.clear()
    yield backend
    backend.clear()


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("live_oauth_mail", *args, stdout=out, stderr=out)
    return out.getvalue()


def queue(*subjects: str, sender: str = ALICE) -> list[int]:
    """Queue one message per subject from ``sender``; their primary keys."""
    QueuedEmailBackend().send_messages(
        [EmailMessage(s, "Body", sender, ["to@example.org"]) for s in subjects]
    )
    return list(
        OutboundMessage.objects.filter(subject__in=subjects)
        .order_by("pk")
        .values_list("pk", flat=True)
    )


def set_status(pks: list[int], status: str, **fields: Any) -> None:
    OutboundMessage.objects.filter(pk__in=pks).update(status=status, **fields)


def status_of(pk: int) -> str:
    return OutboundMessage.objects.get(pk=pk).status


def scheduled(tasks: Any) -> list[int]:
    return sorted(result.args[0] for result in tasks.results)


def counts_printed(output: str) -> list[tuple[str, int]]:
    lines = output.splitlines()
    table = lines[lines.index(next(line for line in lines if "MESSAGES" in line)) :]
    return [(line.split()[0], int(line.split()[1])) for line in table[1:]]


# -- outbox status ---------------------------------------------------------------


def test_status_prints_every_status_in_order_zeros_included(
    alice_account: MailAccount, acting_user: Any
) -> None:
    _, *failed = queue("queued", "failed 1", "failed 2")
    set_status(failed, Status.FAILED)

    output = run("outbox", "status")

    assert counts_printed(output) == [
        ("queued", 1),
        ("deferred", 0),
        ("sending", 0),
        ("sent", 0),
        ("failed", 2),
        ("cancelled", 0),
        ("unknown", 0),
    ]
    assert "now unknown" not in output


def test_status_turns_a_message_stuck_in_sending_into_unknown(
    alice_account: MailAccount, acting_user: Any
) -> None:
    stuck, busy = queue("stuck", "busy")
    now = timezone.now()
    set_status(
        [stuck], Status.SENDING, started_at=now - datetime.timedelta(seconds=660)
    )
    set_status([busy], Status.SENDING, started_at=now - datetime.timedelta(seconds=60))

    output = run("outbox", "status")

    assert "1 message(s) whose worker stopped mid-send are now unknown" in output
    assert ("sending", 1) in counts_printed(output)
    assert ("unknown", 1) in counts_printed(output)
    assert (status_of(stuck), status_of(busy)) == (Status.UNKNOWN, Status.SENDING)


# -- outbox retry ----------------------------------------------------------------


def test_retry_with_no_arguments_requeues_only_failed_messages(
    alice_account: MailAccount,
    acting_user: Any,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    failed_1, failed_2, unknown, cancelled, sent = queue(
        "failed 1", "failed 2", "unknown", "cancelled", "sent"
    )
    set_status([failed_1, failed_2], Status.FAILED, attempts=3, last_error="550")
    set_status([unknown], Status.UNKNOWN)
    set_status([cancelled], Status.CANCELLED)
    set_status([sent], Status.SENT, sent_at=timezone.now())
    tasks.clear()

    with django_capture_on_commit_callbacks(execute=True):
        output = run("outbox", "retry")

    assert "Queued 2 message(s) again." in output
    assert scheduled(tasks) == [failed_1, failed_2]
    retried = OutboundMessage.objects.get(pk=failed_1)
    assert (retried.status, retried.attempts, retried.last_error) == (
        Status.QUEUED,
        0,
        "",
    )
    assert [status_of(pk) for pk in (unknown, cancelled, sent)] == [
        Status.UNKNOWN,
        Status.CANCELLED,
        Status.SENT,
    ]


def test_retry_with_status_requeues_the_messages_in_that_status(
    alice_account: MailAccount,
    acting_user: Any,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    failed, unknown, cancelled = queue("failed", "unknown", "cancelled")
    set_status([failed], Status.FAILED)
    set_status([unknown], Status.UNKNOWN)
    set_status([cancelled], Status.CANCELLED)
    tasks.clear()

    with django_capture_on_commit_callbacks(execute=True):
        output = run("outbox", "retry", "--status", "unknown")

    assert "Queued 1 message(s) again." in output
    assert scheduled(tasks) == [unknown]
    assert [status_of(pk) for pk in (failed, unknown, cancelled)] == [
        Status.FAILED,
        Status.QUEUED,
        Status.CANCELLED,
    ]

    with django_capture_on_commit_callbacks(execute=True):
        output = run("outbox", "retry", "--status", "failed", "--status", "cancelled")

    assert "Queued 2 message(s) again." in output
    assert scheduled(tasks) == [failed, unknown, cancelled]


def test_retry_refuses_a_status_that_cannot_be_retried(
    alice_account: MailAccount, acting_user: Any
) -> None:
    (sent,) = queue("sent")
    set_status([sent], Status.SENT)
    with pytest.raises(CommandError, match="invalid choice: 'sent'"):
        run("outbox", "retry", "--status", "sent")
    assert status_of(sent) == Status.SENT


def test_retry_by_pk_requeues_those_retriable_and_names_the_others(
    alice_account: MailAccount,
    acting_user: Any,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    unknown, failed, sent = queue("unknown", "failed", "sent")
    set_status([unknown], Status.UNKNOWN)
    set_status([failed], Status.FAILED)
    set_status([sent], Status.SENT)
    tasks.clear()

    with django_capture_on_commit_callbacks(execute=True):
        output = run("outbox", "retry", str(unknown), str(sent), "999999")

    assert "Queued 1 message(s) again." in output
    assert f"Not retried: {sent}, 999999" in output
    assert scheduled(tasks) == [unknown]
    assert [status_of(pk) for pk in (unknown, failed, sent)] == [
        Status.QUEUED,
        Status.FAILED,
        Status.SENT,
    ]


def test_retry_with_mailbox_requeues_only_that_mailboxs_messages(
    alice_account: MailAccount,
    bob_account: MailAccount,
    acting_user: Any,
    tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    alices = queue("from alice 1", "from alice 2")
    bobs = queue("from bob", sender=BOB)
    set_status([*alices, *bobs], Status.FAILED)
    tasks.clear()

    with django_capture_on_commit_callbacks(execute=True):
        output = run("outbox", "retry", "--mailbox", "Alice@Outlook.com")

    assert "Queued 2 message(s) again." in output
    assert scheduled(tasks) == alices
    assert status_of(bobs[0]) == Status.FAILED


# -- outbox purge ----------------------------------------------------------------


def test_purge_deletes_only_sent_messages_older_than_the_days_given(
    alice_account: MailAccount, acting_user: Any
) -> None:
    old_sent, new_sent, old_failed, waiting = queue(
        "old sent", "new sent", "old failed", "waiting"
    )
    now = timezone.now()
    set_status([old_sent], Status.SENT, sent_at=now - datetime.timedelta(days=8))
    set_status([new_sent], Status.SENT, sent_at=now - datetime.timedelta(days=6))
    set_status([old_failed], Status.FAILED, sent_at=now - datetime.timedelta(days=30))

    output = run("outbox", "purge", "--days", "7")

    assert "Deleted 1 sent message(s) sent more than 7 day(s) ago." in output
    remaining = set(OutboundMessage.objects.values_list("pk", flat=True))
    assert remaining == {new_sent, old_failed, waiting}


def test_purge_accepts_fractions_of_a_day(
    alice_account: MailAccount, acting_user: Any
) -> None:
    (sent,) = queue("sent")
    set_status(
        [sent], Status.SENT, sent_at=timezone.now() - datetime.timedelta(hours=13)
    )
    assert "Deleted 1 sent message(s)" in run("outbox", "purge", "--days", "0.5")
    assert not OutboundMessage.objects.exists()


@pytest.mark.offline
@pytest.mark.parametrize("days", ["-1", "nan", "inf", "week"])
def test_purge_refuses_days_that_are_not_a_number_of_days(days: str) -> None:
    with pytest.raises(CommandError, match="expected a number >= 0"):
        run("outbox", "purge", "--days", days)


@pytest.mark.offline
def test_purge_requires_days() -> None:
    with pytest.raises(CommandError, match="--days"):
        run("outbox", "purge")


# -- rotate-keys -----------------------------------------------------------------


def test_rotate_keys_re_encrypts_queued_messages_with_the_newest_key(
    link: Any, acting_user: Any, live_settings: dict[str, Any]
) -> None:
    live_settings["ENCRYPTION_KEYS"] = [OLD_KEY]
    link(acting_user, ALICE)
    (pk,) = queue("written with the old key")
    body = OutboundMessage.objects.get(pk=pk).read_message()
    live_settings["ENCRYPTION_KEYS"] = [NEW_KEY, OLD_KEY]

    output = run("rotate-keys")

    assert "Re-encrypted 1 token cache(s) with the newest key." in output
    assert "Re-encrypted 1 queued message(s) with the newest key." in output
    stored = OutboundMessage.objects.get(pk=pk).encrypted_message
    assert Fernet(NEW_KEY).decrypt(stored) == body
    live_settings["ENCRYPTION_KEYS"] = [NEW_KEY]
    assert OutboundMessage.objects.get(pk=pk).read_message() == body
    assert "Re-encrypted 0 queued message(s)" in run("rotate-keys")


def test_rotate_keys_names_a_queued_message_no_key_can_read(
    alice_account: MailAccount, acting_user: Any
) -> None:
    readable, lost = queue("readable", "lost")
    unreadable = Fernet(LOST_KEY).encrypt(b"MIME").decode()
    OutboundMessage.objects.filter(pk=lost).update(encrypted_message=unreadable)
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("live_oauth_mail", "rotate-keys", stdout=out)

    assert caught.value.returncode == 1
    output = out.getvalue()
    assert f"Queued message {lost} from {ALICE}: it cannot be decrypted" in output
    assert f"Queued message {readable} " not in output
    assert "Re-encrypted 0 queued message(s)" in output
    message = str(caught.value)
    assert f"1 queued message(s): {lost}" in message
    assert "ENCRYPTION_KEYS" in message and "SECRET_KEY_FALLBACKS" in message
    assert "token cache" not in message
    assert OutboundMessage.objects.get(pk=lost).encrypted_message == unreadable


def test_outbox_resume_schedules_overdue_waiting_messages(
    alice_account: Any, acting_user: Any
) -> None:
    backend = send_queued_message.get_backend()
    backend.clear()
    QueuedEmailBackend().send_messages(
        [EmailMessage("S", "Body", "alice@outlook.com", ["to@example.org"])]
    )  # no on_commit here: its task was never made
    row = OutboundMessage.objects.get()
    OutboundMessage.objects.update(
        updated_at=timezone.now() - datetime.timedelta(minutes=10)
    )
    out = io.StringIO()
    call_command("live_oauth_mail", "outbox", "resume", stdout=out)
    assert "Scheduled 1 waiting message(s) again." in out.getvalue()
    assert [r.args for r in backend.results] == [[row.pk]]
    backend.clear()
