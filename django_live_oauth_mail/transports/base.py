"""What the backend needs from a way of sending mail: one session per mailbox.

The backend routes messages to mailboxes, opens a session for each mailbox
through a :class:`Transport`, sends through it, and decides about retries and
``fail_silently``. A transport owns everything about its protocol: connecting,
signing in, and turning the server's refusals into our exceptions: SMTP
(:mod:`.transports.smtp`) and Microsoft Graph (:mod:`.transports.graph`).
"""

from __future__ import annotations

import dataclasses
import datetime
from collections.abc import Callable, Hashable
from typing import Protocol

from django.core.mail import EmailMessage

from ..models import MailAccount


@dataclasses.dataclass(frozen=True)
class SMTPOptions:
    """Django's SMTP backend options in force (see :mod:`..sending.options`).

    Every transport factory takes them; only SMTP's uses them.
    """

    host: str
    port: int
    timeout: float | None
    use_tls: bool
    use_ssl: bool
    ssl_certfile: str | None
    ssl_keyfile: str | None


class Session(Protocol):
    """A signed-in session that sends one mailbox's messages."""

    account: MailAccount

    #: Set when lent out again after waiting idle (see :mod:`.sessions`): the
    #: server may have closed it meanwhile, so a first send that finds it
    #: gone reconnects once instead of failing.
    rested: bool
    #: The process that opened it: a forked child must never use it.
    pid: int
    #: When the token it signed in with expires; None if it holds none.
    expires_at: datetime.datetime | None

    @property
    def transport(self) -> Hashable:
        """What opened it; the pool lends it only to a backend with the same."""
        ...

    def send(self, message: EmailMessage) -> bool:
        """Send; True when accepted, False when there was nothing to send.

        A refusal raises: :mod:`.retry` tells a temporary one from a lasting one.
        """
        ...

    def close(self) -> None:
        """End the session; never raises."""
        ...


class Transport(Protocol):
    def __hash__(self) -> int:
        """The pool lends a session only to a backend with an equal transport."""
        ...

    def open(self, account: MailAccount) -> Session:
        """A signed-in session for ``account``; raises if there can be none."""
        ...


#: Makes a transport from the options a backend was given (:mod:`.registry`).
TransportFactory = Callable[[SMTPOptions], Transport]
