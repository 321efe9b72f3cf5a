"""A message whose answer was lost after the end of DATA is never sent again.

Exchange may have taken it: the connection broke (or timed out) only before
its ``250`` came back. Inline that is ``MessageMayHaveBeenSent``; queued, the
message becomes ``unknown``. A drop before the end of DATA is still retried.
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core.mail import EmailMessage

from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.exceptions import MessageMayHaveBeenSent
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.queue.tasks import send_queued_message
from django_live_oauth_mail.sending import engine

from ..mailers import make_backend
from ..standins import SMTPStandIn

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acting_user")]

ALICE = "alice@outlook.com"
Status = OutboundMessage.Status


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record the backoff pauses instead of sleeping through them."""
    slept: list[float] = []
    monkeypatch.setattr(engine.time, "sleep", slept.append)
    return slept


def batch(n: int) -> list[EmailMessage]:
    return [
        EmailMessage(f"m{i}", "body", ALICE, ["r@example.org"]) for i in range(1, n + 1)
    ]


def subjects(server: SMTPStandIn) -> list[str]:
    return [m.subject for m in server.messages]


@pytest.mark.parametrize("silent", [False, True], ids=["dropped", "timed-out"])
def test_a_lost_answer_after_data_is_not_resent_and_says_to_check_sent_items(
    alice_account: MailAccount,
    smtp_server: SMTPStandIn,
    pauses: list[float],
    live_settings: dict[str, Any],
    silent: bool,
) -> None:
    live_settings["SMTP_TIMEOUT"] = 1  # the silent server waits for it
    smtp_server.lose_next_answer(silent=silent)

    with pytest.raises(MessageMayHaveBeenSent) as caught:
        make_backend().send_messages(batch(1))

    [received] = smtp_server.messages  # taken once, never sent again
    error = caught.value
    assert error.mailbox == ALICE
    assert received.message["Message-ID"] in str(error)
    assert f"{ALICE}'s Sent Items" in str(error)
    assert "timed out" in str(error) if silent else "closed" in str(error)
    assert pauses == []
    assert smtp_server.sessions == 1


def test_a_lost_answer_mid_batch_leaves_the_rest_to_go_out_once(
    alice_account: MailAccount, smtp_server: SMTPStandIn, pauses: list[float]
) -> None:
    smtp_server.lose_next_answer()  # m1's

    assert make_backend(fail_silently=True).send_messages(batch(3)) == 2

    # m1 once; m2 and m3 on a new session.
    assert subjects(smtp_server) == ["m1", "m2", "m3"]
    assert smtp_server.sessions == 2
    assert pauses == []


def test_a_rested_session_never_resends_a_message_whose_answer_was_lost(
    alice_account: MailAccount, smtp_server: SMTPStandIn, pauses: list[float]
) -> None:
    assert make_backend().send_messages(batch(1)) == 1  # the session goes warm
    smtp_server.lose_next_answer()

    with pytest.raises(MessageMayHaveBeenSent):
        make_backend().send_messages(batch(1))

    assert subjects(smtp_server) == ["m1", "m1"]  # the first send, and one more
    assert smtp_server.sessions == 1
    assert pauses == []


@pytest.mark.parametrize("stage", ["mail", "rcpt"])
def test_a_drop_before_the_end_of_data_is_retried_and_delivered_once(
    alice_account: MailAccount,
    smtp_server: SMTPStandIn,
    pauses: list[float],
    stage: Any,
) -> None:
    smtp_server.fail_next(stage=stage, disconnect=True)

    assert make_backend().send_messages(batch(1)) == 1

    assert subjects(smtp_server) == ["m1"]
    assert smtp_server.sessions == 2
    assert len(pauses) == 1


def queue_one(capture: Any) -> OutboundMessage:
    with capture(execute=True):
        assert QueuedEmailBackend().send_messages(batch(1)) == 1
    return OutboundMessage.objects.get()


def test_a_queued_message_whose_answer_was_lost_is_unknown_and_sent_once(
    alice_account: MailAccount,
    smtp_server: SMTPStandIn,
    django_capture_on_commit_callbacks: Any,
) -> None:
    row = queue_one(django_capture_on_commit_callbacks)
    smtp_server.lose_next_answer()

    send_queued_message(row.pk)
    send_queued_message(row.pk)  # a task delivered twice, or a stale one, sends nothing

    row.refresh_from_db()
    assert row.status == Status.UNKNOWN
    assert row.message_id in row.last_error
    assert "Sent Items" in row.last_error
    [received] = smtp_server.messages
    assert received.message["Message-ID"] == row.message_id


def test_a_queued_message_dropped_before_the_end_of_data_is_sent_once(
    alice_account: MailAccount,
    smtp_server: SMTPStandIn,
    django_capture_on_commit_callbacks: Any,
) -> None:
    row = queue_one(django_capture_on_commit_callbacks)
    smtp_server.fail_next(stage="mail", disconnect=True)

    send_queued_message(row.pk)

    row.refresh_from_db()
    assert (row.status, row.last_error) == (Status.SENT, "")
    assert subjects(smtp_server) == ["m1"]
