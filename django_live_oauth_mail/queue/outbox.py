"""The outbox's rows: queueing messages, and every change of their status.

Every status change is one conditional ``UPDATE``, so two workers (or a
worker and the admin) can never both move the same message on: whoever
changes it first wins, the other sees nothing to do. Nothing here schedules
a task: :mod:`.service` does, for code above the queue, and the sending task
(:mod:`.tasks`) for what the worker deferred.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.db import connections, router, transaction
from django.db.models import Count, F, Q, QuerySet
from django.db.models.signals import pre_delete
from django.dispatch import receiver
from django.utils import timezone

from .. import crypto, signals
from ..conf import conf
from ..exceptions import AccountNotFound, LiveOAuthMailError
from ..models import MailAccount, OutboundMessage
from ..transports.rendering import render

logger = logging.getLogger(__name__)

Status = OutboundMessage.Status

#: Rows per ``UPDATE ... WHERE pk IN (...)``, well inside every database's limit.
BATCH = 500


def queue(
    batches: Sequence[tuple[MailAccount, list[EmailMessage]]],
    *,
    acting_user: Any,
    explicit: bool,
) -> list[int]:
    """Store the messages; the new rows' primary keys, for scheduling.

    A message with no recipients is skipped, as Django's backends skip it.
    """
    rows = []
    for account, messages in batches:
        for message in messages:
            rendered = render(message)
            if not rendered.recipients:
                continue
            rows.append(
                OutboundMessage(
                    account=account,
                    mailbox=account.email,
                    explicit=explicit,
                    acting_user_id=acting_user,
                    from_email=rendered.from_email,
                    subject=rendered.subject,
                    recipients=rendered.recipients,
                    recipient_count=len(rendered.recipients),
                    message_id=rendered.message_id,
                    encrypted_message=crypto.encrypt_bytes(rendered.mime),
                )
            )
    if not rows:
        return []
    using = router.db_for_write(OutboundMessage)
    with transaction.atomic(using=using):
        if connections[using].features.can_return_rows_from_bulk_insert:
            OutboundMessage.objects.using(using).bulk_create(rows)
        else:  # MySQL: no keys back from a bulk insert
            for row in rows:
                row.save(using=using)
    return [row.pk for row in rows]


def _move(message: OutboundMessage, **fields: Any) -> bool:
    """Change the row if it is still where ``message`` says it is.

    A message this worker started (:func:`start`) moves only while that
    attempt is still the row's own: ``sending``, or ``unknown`` if it took
    longer than ``SENDING_TIMEOUT``, with the same ``started_at``. A stale
    task, or the attempt a person started by retrying, is left alone. Any
    other message moves only while it is waiting.
    """
    rows = OutboundMessage.objects.filter(pk=message.pk)
    if message.status == Status.SENDING:  # ours: start() said so
        rows = rows.filter(
            status__in=(Status.SENDING, Status.UNKNOWN), started_at=message.started_at
        )
    else:
        rows = rows.filter(status__in=OutboundMessage.WAITING)
    fields.setdefault("updated_at", timezone.now())
    return bool(rows.update(**fields))


def start(message: OutboundMessage, now: datetime.datetime) -> bool:
    """Mark a waiting message as being sent now; False if someone else did."""
    moved = _move(
        message,
        status=Status.SENDING,
        started_at=now,
        attempts=F("attempts") + 1,
        last_error="",
    )
    if moved:
        message.status, message.started_at = Status.SENDING, now
        message.attempts += 1
    return moved


def defer(
    message: OutboundMessage,
    until: datetime.datetime,
    reason: str,
    *,
    attempts: int | None = None,
) -> bool:
    """Put a message back to wait until ``until``; False if it was not ours to move.

    ``attempts``: the attempts made so far, when this deferral ends one. The
    caller has it run again then (the worker returns ``until`` to its task).
    """
    fields: dict[str, Any] = {"send_after": until, "last_error": reason}
    if attempts is not None:
        fields["attempts"] = attempts
    moved = _move(message, status=Status.DEFERRED, **fields)
    if moved:
        message.status, message.send_after = Status.DEFERRED, until
    return moved


def sent(message: OutboundMessage) -> None:
    """Microsoft accepted it. Also after ``unknown``: the worker knows better."""
    now = timezone.now()
    if _move(message, status=Status.SENT, sent_at=now, last_error=""):
        message.status, message.sent_at = Status.SENT, now
        _announce(signals.message_sent, message=message)


def failed(
    message: OutboundMessage, error: BaseException, *, status: str = Status.FAILED
) -> None:
    """It will not go out (``failed``), or may have (``unknown``): say why."""
    reason = str(error) or type(error).__name__
    if _move(message, status=status, last_error=reason):
        message.status, message.last_error = status, reason
        log = logger.error if status == Status.FAILED else logger.warning
        log(
            "Queued message %s from %s %s: %s",
            message.pk,
            message.mailbox,
            status,
            reason,
        )
        _announce(signals.message_failed, message=message, error=error)


def _announce(signal: Any, **kwargs: Any) -> None:
    """Send ``signal`` once the transaction commits; never if it rolls back.

    A receiver's error is logged, never the message's fate.
    """

    def send() -> None:
        for handler, result in signal.send_robust(sender=OutboundMessage, **kwargs):
            if isinstance(result, Exception):
                logger.error("Outbox signal receiver %r failed: %r", handler, result)

    transaction.on_commit(send, using=router.db_for_write(OutboundMessage))


def _fail_all(
    rows: QuerySet[OutboundMessage],
    status: str,
    error: BaseException,
    now: datetime.datetime,
) -> int:
    """Move ``rows`` to ``status``, saying ``error``, and announce each; how many.

    Each message is announced once, by whoever moved it, so this must know
    which rows its own ``UPDATE`` moved, and the ORM's ``update()`` returns a
    count, not the rows (no ``UPDATE ... RETURNING``). So the rows are locked
    as they are read (``SELECT ... FOR UPDATE``): a row another worker moved
    meanwhile no longer matches once its lock is granted (PostgreSQL and MySQL
    read it again), and the rows read are exactly the rows moved. SQLite has
    no row locks: there each row moves by its own conditional ``UPDATE``.
    When nothing matches, as on nearly every call, this costs one query.
    """
    if not rows.exists():
        return 0
    reason = str(error) or type(error).__name__
    fields = {"status": status, "last_error": reason, "updated_at": now}
    using = router.db_for_write(OutboundMessage)
    # Without the body: receivers rarely need it (read_message() loads it).
    rows = rows.using(using).defer("encrypted_message").order_by("pk")
    if connections[using].features.has_select_for_update:
        with transaction.atomic(using=using):
            moved = list(rows.select_for_update())
            for start in range(0, len(moved), BATCH):
                batch = [m.pk for m in moved[start : start + BATCH]]
                OutboundMessage.objects.using(using).filter(pk__in=batch).update(
                    **fields
                )
    else:
        moved = [m for m in rows if rows.filter(pk=m.pk).update(**fields)]
    for message in moved:
        message.status, message.last_error, message.updated_at = status, reason, now
        _announce(signals.message_failed, message=message, error=error)
    return len(moved)


def fail_waiting(account: MailAccount, error: BaseException) -> int:
    """Fail every message still waiting for ``account``; how many there were.

    The mailbox's row is locked before its messages, the order a worker takes
    them in (pace under the mailbox's lock, then mark the message sending):
    a disconnect that locked the messages first and then deleted the mailbox
    could deadlock with a worker between those two steps.
    """
    using = router.db_for_write(OutboundMessage)
    with transaction.atomic(using=using):
        MailAccount.objects.using(using).lock_for_sending(account.pk)
        moved = _fail_all(
            OutboundMessage.objects.filter(
                account=account, status__in=OutboundMessage.WAITING
            ),
            Status.FAILED,
            error,
            timezone.now(),
        )
    if moved:
        logger.error("%d queued message(s) from %s failed: %s", moved, account, error)
    return moved


def mark_stuck(now: datetime.datetime | None = None) -> int:
    """Messages whose worker stopped mid-send become ``unknown``; how many.

    The worker began sending and never said how it ended (it was killed, or
    lost its database): Microsoft may have accepted the message. A person
    decides; sending it again could send it twice. Workers call it now and
    then, not per message (:func:`.worker.mark_stuck_now_and_then`);
    ``outbox status`` and ``outbox resume`` call it each time.
    """
    now = now or timezone.now()
    cutoff = now - datetime.timedelta(seconds=conf.SENDING_TIMEOUT)
    return _fail_all(
        OutboundMessage.objects.filter(status=Status.SENDING, started_at__lt=cutoff),
        Status.UNKNOWN,
        LiveOAuthMailError(
            "The worker sending it stopped before it could record the outcome "
            f"(nothing was heard for {conf.SENDING_TIMEOUT:g} seconds), so "
            "Microsoft may or may not have accepted it. Look for its Message-ID "
            "in the mailbox's Sent Items, then retry or cancel it."
        ),
        now,
    )


def retry(pks: Sequence[int]) -> tuple[int, list[int]]:
    """Queue failed, unknown or cancelled messages again.

    Returns how many moved, and the primary keys to schedule.
    """
    retriable = OutboundMessage.objects.retriable()
    retried = list(retriable.filter(pk__in=pks).values_list("pk", flat=True))
    moved = retriable.filter(pk__in=retried).update(
        status=Status.QUEUED,
        attempts=0,
        send_after=None,
        last_error="",
        updated_at=timezone.now(),
    )
    return moved, retried


def overdue(grace: float = 300.0) -> list[int]:
    """Every waiting message overdue by ``grace`` seconds, to schedule again.

    For after the task engine lost tasks or could not take them (a broker
    that was down, a flushed queue): such rows wait with no task. A message
    that still has one gets a second, which finds it handled and does nothing.
    """
    cutoff = timezone.now() - datetime.timedelta(seconds=grace)
    return list(
        OutboundMessage.objects.filter(status__in=OutboundMessage.WAITING)
        .filter(
            Q(send_after__lt=cutoff) | Q(send_after__isnull=True, updated_at__lt=cutoff)
        )
        .values_list("pk", flat=True)
    )


def cancel(pks: Sequence[int]) -> int:
    """Cancel messages not yet handed to Microsoft; how many."""
    return OutboundMessage.objects.filter(
        pk__in=pks, status__in=OutboundMessage.WAITING
    ).update(
        status=Status.CANCELLED,
        last_error="Cancelled before it was sent.",
        updated_at=timezone.now(),
    )


def purge_sent(days: float) -> int:
    """Delete sent messages older than ``days``; how many."""
    cutoff = timezone.now() - datetime.timedelta(days=days)
    deleted, _ = OutboundMessage.objects.filter(
        status=Status.SENT, sent_at__lt=cutoff
    ).delete()
    return deleted


def counts() -> dict[str, int]:
    """How many messages are in each status (every status, zeros included)."""
    found = dict(
        OutboundMessage.objects.values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    return {status: int(found.get(status, 0)) for status in Status.values}


@receiver(pre_delete, sender=MailAccount, dispatch_uid="live_oauth_mail_outbox")
def _mailbox_deleted(sender: Any, instance: MailAccount, **kwargs: Any) -> None:
    """A disconnected mailbox sends nothing more: its waiting mail fails, saying so."""
    fail_waiting(
        instance,
        AccountNotFound(
            f"{instance.email} was disconnected (its link was deleted) before this "
            "message was sent. Link the mailbox again and retry it, or send it "
            "from another mailbox.",
            mailbox=instance.email,
        ),
    )
