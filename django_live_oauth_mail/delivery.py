"""The bookkeeping of one ``send_messages()`` call: what went out, and how to say so.

Kept apart from the backend so that its send loop reads like Django's.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence

from django.core.mail.message import EmailMessage, make_msgid
from django.core.mail.utils import DNS_NAME
from django.db import DatabaseError
from django.utils import timezone

from .exceptions import PartialDelivery
from .models import MailAccount

logger = logging.getLogger(__name__)


class Delivery:
    """The messages of one call, and which of them each mailbox has sent."""

    def __init__(self, messages: Sequence[EmailMessage]) -> None:
        self.messages = messages
        self.sent: list[EmailMessage] = []
        self.used: set[int] = set()  # pks of the mailboxes that sent something

    def accepted(self, account: MailAccount, message: EmailMessage) -> None:
        self.sent.append(message)
        self.used.add(account.pk)

    def record_use(self) -> None:
        """Set ``last_used_at`` on the mailboxes that sent, in one query."""
        if not self.used:
            return
        try:
            MailAccount.objects.filter(pk__in=self.used).update(
                last_used_at=timezone.now()
            )
        except DatabaseError as error:
            # The mail went out; failing now would only make callers resend it.
            logger.warning("Could not record when mailboxes were last used: %s", error)

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


@contextlib.contextmanager
def stable_message_id(message: EmailMessage) -> Iterator[None]:
    """Give every attempt at one message the same Message-ID.

    Django makes a new one each time it renders a message; a retry would then
    look like a different message, and the Message-ID a lost answer's error
    names (look for it in Sent Items) would not be the one that went out. The
    caller's message is left as it was.
    """
    if any(name.lower() == "message-id" for name in message.extra_headers):
        yield
        return
    original = message.extra_headers  # possibly shared with other messages
    message.extra_headers = {
        **original,
        "Message-ID": make_msgid(domain=DNS_NAME.get_fqdn()),
    }
    try:
        yield
    finally:
        message.extra_headers = original
