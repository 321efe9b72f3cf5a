"""What code above the queue calls: queue, retry or resume messages, then schedule them.

The backend (:class:`.QueuedEmailBackend`), the admin's actions and the
``outbox`` command ask here. The rows change in the caller's transaction
(:mod:`.outbox`); their tasks are scheduled once it commits (:mod:`.tasks`),
so a rolled-back request schedules nothing. Below this module the queue
never schedules: the sending task schedules what the worker says to run
again, so every import in the queue points downwards.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.core.mail import EmailMessage
from django.db import router, transaction

from ..models import MailAccount, OutboundMessage
from . import outbox
from .tasks import can_defer, require_engine, schedule

__all__ = ["can_defer", "queue", "require_engine", "resume", "retry"]


def _schedule_on_commit(pks: Sequence[int]) -> None:
    if pks:
        transaction.on_commit(
            lambda: schedule(pks), using=router.db_for_write(OutboundMessage)
        )


def queue(
    batches: Sequence[tuple[MailAccount, list[EmailMessage]]],
    *,
    acting_user: Any,
    explicit: bool,
) -> int:
    """Store the messages and have them sent once the caller's transaction commits.

    Returns how many were queued (see :func:`.outbox.queue`).
    """
    using = router.db_for_write(OutboundMessage)
    with transaction.atomic(using=using):
        pks = outbox.queue(batches, acting_user=acting_user, explicit=explicit)
        _schedule_on_commit(pks)
    return len(pks)


def retry(pks: Sequence[int]) -> int:
    """Queue failed, unknown or cancelled messages again and schedule them; how many."""
    moved, retried = outbox.retry(pks)
    _schedule_on_commit(retried)
    return moved


def resume(grace: float = 300.0) -> int:
    """Schedule again every waiting message overdue by ``grace`` seconds; how many.

    See :func:`.outbox.overdue`. Messages stuck in ``sending`` become
    ``unknown`` first (:func:`.outbox.mark_stuck`): the workers check only
    now and then, and none may be running.
    """
    outbox.mark_stuck()
    overdue = outbox.overdue(grace)
    schedule(overdue)
    return len(overdue)
