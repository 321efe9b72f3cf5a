"""Mail tests without sockets: :func:`link_mailbox` stores a link as the
connect flow does, and :class:`RecordingEmailBackend` is the real backend
(routing, owner checks, ``fail_silently``, counts) whose sessions record to
``django.core.mail.outbox`` instead of sending. Queued mail and Exchange's own
refusals (Send As, SMTP AUTH off) need the stand-ins."""

from __future__ import annotations

import copy
import dataclasses
import datetime
import os
import uuid
from typing import Any, Literal

from django.core import mail
from django.core.mail import EmailMessage
from django.core.mail.backends.base import BaseEmailBackend

from ..backends import EmailBackend
from ..identity import accounts
from ..identity.authority import PERSONAL_TENANT_ID
from ..identity.linking import LinkedIdentity
from ..models import MailAccount, normalize_email

__all__ = ["RecordingEmailBackend", "link_mailbox"]

#: Ids derive from the address, so a test's mailbox is the same on every run.
_IDS = uuid.UUID("0f6b2d1e-31c4-4d0e-9a57-2f4c9e8b7a10")


def link_mailbox(
    user: Any,
    address: str,
    *,
    kind: Literal["personal", "work"] = "work",
    shared: bool = False,
    transport: Literal["", "smtp", "graph"] = "",
) -> MailAccount:
    """``user``'s link to ``address``, stored as the connect flow stores one
    (its encrypted token cache holds no token: the real backend would ask for
    a new link). Send As: ``account.send_as_addresses.create(address=...)``."""
    email = normalize_email(address)
    personal = kind == "personal"
    domain = email.rpartition("@")[2]
    tenant = PERSONAL_TENANT_ID if personal else str(uuid.uuid5(_IDS, domain))
    identity = LinkedIdentity(
        email=email,
        display_name="",
        tenant_id=tenant,
        home_account_id=f"{uuid.uuid5(_IDS, email)}.{tenant}",
        is_personal=personal,
        expires_at=None,
        serialized_cache="{}",  # an msal cache with no token in it
    )
    account, _ = accounts.link_mailbox(user, identity)
    if shared or transport:
        account.shared, account.transport = shared, transport
        account.save(update_fields=["shared", "transport", "updated_at"])
    return account


@dataclasses.dataclass(frozen=True)
class RecordingTransport:
    """Opens recording sessions; equal per alias, as the session pool expects."""

    alias: str | None

    def open(self, account: MailAccount) -> RecordingSession:
        return RecordingSession(account, self)


class RecordingSession:
    """A session that appends what it sends to ``django.core.mail.outbox``."""

    def __init__(self, account: MailAccount, transport: RecordingTransport) -> None:
        self.account, self.transport, self.rested = account, transport, False
        self.pid = os.getpid()
        self.expires_at: datetime.datetime | None = None  # it holds no token

    def send(self, message: EmailMessage) -> bool:
        if not message.recipients():
            return False  # as the real sessions: nothing to send
        message.message()  # rendering checks the headers, as a real send does
        # A copy, with the Message-ID the backend set. Its connection (a
        # backend, with a lock) is shared, not copied; Django 6.1 deprecates
        # reading the attribute, hence vars().
        keep = {
            id(v): v for v in vars(message).values() if isinstance(v, BaseEmailBackend)
        }
        recorded = copy.deepcopy(message, keep)
        recorded.mail_account = self.account  # type: ignore[attr-defined]
        # The MAILERS alias, as Django 6.1's locmem backend records it.
        recorded.sent_using = self.transport.alias  # type: ignore[attr-defined]
        mail.outbox.append(recorded)
        return True

    def close(self) -> None:
        pass


class RecordingEmailBackend(EmailBackend):
    """The real backend, whose sessions record instead of connecting: use it
    as ``EMAIL_BACKEND`` (or in ``MAILERS``) in tests. A message no mailbox may
    send raises as in production and is not recorded."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if not hasattr(mail, "outbox"):
            mail.outbox = []  # as Django's locmem backend: test runners reset it

    def transport_for(self, account: MailAccount) -> RecordingTransport:
        return RecordingTransport(getattr(self, "alias", None))
