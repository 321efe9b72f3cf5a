"""The outbox's named selections: which messages a retry queues again."""

from __future__ import annotations

import pytest
from django.db.models import QuerySet

from django_live_oauth_mail.models import OutboundMessage
from django_live_oauth_mail.queue import service

pytestmark = [pytest.mark.offline, pytest.mark.django_db]

Status = OutboundMessage.Status
ALICE, BOB = "alice@outlook.com", "bob@contoso.com"


def message(status: str, mailbox: str = ALICE) -> int:
    row = OutboundMessage.objects.create(
        mailbox=mailbox,
        from_email=mailbox,
        message_id="<m@x>",
        encrypted_message="-",
        status=status,
    )
    return int(row.pk)


def pks(rows: QuerySet[OutboundMessage]) -> list[int]:
    return list(rows.order_by("pk").values_list("pk", flat=True))


@pytest.fixture
def one_of_each() -> dict[str, int]:
    return {status: message(status) for status in Status.values}


def test_retriable_are_the_failed_unknown_and_cancelled(
    one_of_each: dict[str, int],
) -> None:
    assert pks(OutboundMessage.objects.retriable()) == sorted(
        one_of_each[s] for s in (Status.FAILED, Status.CANCELLED, Status.UNKNOWN)
    )


def test_with_nothing_named_only_failed_messages_are_chosen(
    one_of_each: dict[str, int],
) -> None:
    chosen = OutboundMessage.objects.chosen_for_retry()
    assert pks(chosen) == [one_of_each[Status.FAILED]]


def test_named_messages_are_chosen_in_any_retriable_status(
    one_of_each: dict[str, int],
) -> None:
    named = [one_of_each[Status.UNKNOWN], one_of_each[Status.SENT], 999_999]
    chosen = OutboundMessage.objects.chosen_for_retry(pks=named)
    assert pks(chosen) == [one_of_each[Status.UNKNOWN]]


def test_statuses_and_mailbox_narrow_the_choice(one_of_each: dict[str, int]) -> None:
    bobs_unknown = message(Status.UNKNOWN, mailbox=BOB)
    bobs_failed = message(Status.FAILED, mailbox=BOB)

    by_status = OutboundMessage.objects.chosen_for_retry(
        statuses=[Status.UNKNOWN, Status.CANCELLED]
    )
    assert pks(by_status) == sorted(
        [one_of_each[Status.CANCELLED], one_of_each[Status.UNKNOWN], bobs_unknown]
    )
    by_mailbox = OutboundMessage.objects.chosen_for_retry(mailbox="Bob@Contoso.com")
    assert pks(by_mailbox) == [bobs_failed]
    both = OutboundMessage.objects.chosen_for_retry(
        pks=[bobs_unknown, bobs_failed], statuses=[Status.UNKNOWN], mailbox=BOB
    )
    assert pks(both) == [bobs_unknown]


def test_retrying_the_choice_queues_exactly_those_rows_again(
    one_of_each: dict[str, int],
) -> None:
    OutboundMessage.objects.update(attempts=3, last_error="550")
    chosen = pks(OutboundMessage.objects.chosen_for_retry())

    assert service.retry(chosen) == 1

    stored = {
        row.pk: (row.status, row.attempts, row.last_error)
        for row in OutboundMessage.objects.all()
    }
    assert stored[one_of_each[Status.FAILED]] == (Status.QUEUED, 0, "")
    for status in (Status.UNKNOWN, Status.CANCELLED, Status.SENT):
        assert stored[one_of_each[status]] == (status, 3, "550")
