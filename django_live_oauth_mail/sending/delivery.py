"""The bookkeeping of one ``send_messages()`` call: what went out, and how to say so.

Kept apart from the backend so that its send loop reads like Django's.
"""

from __future__ import annotations

import datetime
import logging
from collections.abc import Sequence

from django.core.mail.message import EmailMessage
from django.db import DatabaseError, router
from django.utils import timezone

from .. import durable
from ..exceptions import PartialDelivery
from ..models import MailAccount

logger = logging.getLogger(__name__)

#: ``last_used_at`` is written again only once it is older than this: the
#: admin and the accounts page show it to the minute.
USE_RECORDED_EVERY = datetime.timedelta(minutes=1)


class Delivery:
    """The messages of one call, and which of them each mailbox has sent."""

    def __init__(self, messages: Sequence[EmailMessage]) -> None:
        self.messages = messages
        self.sent: list[EmailMessage] = []
        self.used: dict[int, MailAccount] = {}  # the mailboxes that sent, by pk

    def accepted(self, account: MailAccount, message: EmailMessage) -> None:
        self.sent.append(message)
        self.used[account.pk] = account

    def record_use(self) -> None:
        """Set ``last_used_at`` on the mailboxes that sent, in one ``UPDATE``.

        Only where it is :data:`USE_RECORDED_EVERY` old or more, as routing
        read it: a mailbox that sends all day costs one write a minute, not
        one per call. Never in the caller's transaction: inside one (on
        PostgreSQL and other client-server databases) it is written and
        committed on a second connection, as token state is (:mod:`.durable`).
        An ``UPDATE`` in the caller's transaction would hold the mailbox's row
        lock until the caller commits, so a forced refresh of that mailbox
        later in the same transaction would wait for it, then fall back to
        the caller's connection, and a rollback would lose the rotated token.
        On SQLite, or when the caller's transaction created or wrote the row,
        it follows the caller's transaction.
        """
        now = timezone.now()
        stale = {
            pk: account
            for pk, account in self.used.items()
            if account.last_used_at is None
            or now - account.last_used_at >= USE_RECORDED_EVERY
        }
        if not stale:
            return
        try:
            alias = router.db_for_write(MailAccount)
            durable.update_rows(MailAccount, set(stale), alias, last_used_at=now)
        except DatabaseError as error:
            # The mail went out; failing now would only make callers resend it.
            logger.warning("Could not record when mailboxes were last used: %s", error)
            return
        for account in stale.values():
            account.last_used_at = now

    def partial(
        self, error: BaseException, failed: EmailMessage, mailbox: str | None
    ) -> PartialDelivery:
        """The error to raise when ``failed`` failed after others went out."""
        position = {id(m): number for number, m in enumerate(self.messages, start=1)}
        done = {id(m) for m in self.sent}
        unsent = [m for m in self.messages if id(m) not in done and m is not failed]
        numbers = ", ".join(f"#{position[id(m)]}" for m in self.sent)
        return PartialDelivery(
            f"{len(self.sent)} of {len(self.messages)} messages were sent "
            f"({numbers}) before #{position[id(failed)]} failed: {error} The "
            f"{len(unsent)} message(s) not yet tried were not sent; the sent ones "
            "must not be sent again.",
            mailbox=mailbox,
            error=error,
            sent=self.sent,
            failed=failed,
            unsent=unsent,
        )
