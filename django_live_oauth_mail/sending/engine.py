"""The sending engine: take a signed-in session for a mailbox, send, retry.

The inline backend and the queue's worker both send through a
:class:`Sender`: the backend keeps one for as long as it is open, the worker
makes one per message. Routing happens before (the backend routes each call,
the worker checks the stored route once); the decision about
``fail_silently``, or about deferring, after. What is shared is here:

- sessions come from the pool (:mod:`.sessions`) when ``SESSION_REUSE`` is
  on, and go back to it when released;
- a temporary failure is tried again on a new connection, as
  :mod:`.retry` decides; a throttled server is waited out up to
  ``max_throttle_wait`` seconds in all (the worker waits none: it defers);
- with ``TRANSPORT = "auto"``, a mailbox whose SMTP AUTH is switched off
  moves to Microsoft Graph, once, and the message goes through Graph.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

from ..conf import conf
from ..exceptions import SMTPAuthDisabled, Throttled
from ..identity import accounts
from ..models import MailAccount
from ..transports import registry
from ..transports.base import Session, SMTPOptions, Transport
from ..transports.rendering import stable_message_id
from ..transports.smtp_replies import describe
from . import retry
from .options import smtp_options
from .sessions import POOL

logger = logging.getLogger(__name__)

T = TypeVar("T")


def transports_from_settings() -> Callable[[MailAccount], Transport]:
    """Each mailbox's transport as the settings configure them (for the worker)."""
    return TransportsFor(smtp_options())


class TransportsFor:
    """A mailbox's transport by its ``protocol``, one of each made per options."""

    def __init__(self, options: SMTPOptions) -> None:
        self.options = options
        self.made: dict[str, Transport] = {}

    def __call__(self, account: MailAccount) -> Transport:
        return self.transport(account.protocol)

    def transport(self, name: str) -> Transport:
        if name not in self.made:
            self.made[name] = registry.transport(name, self.options)
        return self.made[name]


class Sender:
    """Signed-in sessions held for one caller, and one message sent with retries.

    Not shared between threads: the backend that owns one holds its lock.
    """

    def __init__(
        self,
        transport_for: Callable[[MailAccount], Transport],
        *,
        max_throttle_wait: float,
    ) -> None:
        self.transport_for = transport_for
        self.max_throttle_wait = max_throttle_wait
        self.sessions: dict[int, Session] = {}

    def sign_in(self, account: MailAccount) -> None:
        """Have a signed-in session for ``account``, retrying temporary failures."""
        self._retrying(account, self.session, account)

    def send(self, account: MailAccount, message: Any) -> bool:
        """Send ``message`` as ``account``; True when accepted.

        Every attempt sends the same Message-ID. An error that
        :mod:`.retry` calls lasting, or the last temporary one, is raised.
        """
        with stable_message_id(message):
            return self._retrying(account, self._send_once, account, message)

    def release(self, account: MailAccount) -> None:
        """Give the mailbox's session back to the pool to stay warm, or close it."""
        session = self.sessions.pop(account.pk, None)
        if session is not None and conf.SESSION_REUSE:
            POOL.give_back(session.transport, session)
        elif session is not None:
            session.close()

    def release_all(self) -> None:
        for account in [s.account for s in self.sessions.values()]:
            self.release(account)

    def _send_once(self, account: MailAccount, message: Any) -> bool:
        try:
            return self.session(account).send(message)
        except SMTPAuthDisabled:  # a rested session, signing in again
            if not self._moved_to_graph(account):
                raise
        return self.session(account).send(message)

    def _retrying(
        self, account: MailAccount, attempt: Callable[..., T], *args: Any
    ) -> T:
        """``attempt(*args)``, again after a temporary failure (:mod:`.retry`)."""
        pauses, waited = retry.delays(), 0.0
        while True:
            try:
                return attempt(*args)
            except BaseException as error:
                if retry.is_transient(error) or not retry.leaves_session_usable(error):
                    self._discard(account)  # retried on a new connection
                if isinstance(error, Throttled):
                    POOL.drop(account)  # too many connections: free ours
                pause = retry.next_pause(error, pauses, waited, self.max_throttle_wait)
                if pause is None:
                    raise
                waited += pause
                logger.warning(
                    "Retrying %s in %.1fs: %s", account, pause, describe(error)
                )
                time.sleep(pause)

    def session(self, account: MailAccount) -> Session:
        """The mailbox's session: held, else from the pool, else signed in now."""
        session = self.sessions.get(account.pk)
        if session is None or session.pid != os.getpid():  # forked: not ours
            transport = self.transport_for(account)
            try:
                session = (conf.SESSION_REUSE and POOL.take(transport, account)) or (
                    transport.open(account)
                )
            except SMTPAuthDisabled:
                if not self._moved_to_graph(account):
                    raise
                return self.session(account)
            self.sessions[account.pk] = session
        return session

    def _moved_to_graph(self, account: MailAccount) -> bool:
        """With ``TRANSPORT = "auto"``, send through Graph from now on.

        SMTP AUTH refused the sign-in, so nothing was sent through SMTP; the
        message goes through Graph once. Not for a mailbox set to SMTP.
        """
        if conf.TRANSPORT != "auto" or account.transport:
            return False
        self._discard(account)
        POOL.drop(account)
        accounts.remember_transport(account, "graph")
        logger.warning(
            "SMTP AUTH is switched off for %s, so it sends through Microsoft Graph "
            "from now on (clear its transport in the admin to try SMTP again).",
            account.email,
        )
        return True

    def _discard(self, account: MailAccount) -> None:
        """Close a session that failed; it never goes back to the pool."""
        session = self.sessions.pop(account.pk, None)
        if session is not None:
            session.close()
