"""The email backends: each message goes out through its sender's linked mailbox.

:class:`EmailBackend` keeps Django's four verbs (``open``, ``close``,
``send_messages``, ``with``): it routes each call's messages to mailboxes
(:mod:`.ownership.routing`), sends each group through the sending engine
(:class:`.sending.engine.Sender`: warm sessions, retries), and decides about
``fail_silently`` in one place, :meth:`EmailBackend._give_up`. ``open()``
signs in as the fixed mailbox, else the one that sends ``DEFAULT_FROM_EMAIL``.

:class:`QueuedEmailBackend` routes in the caller's request too, and leaves
the sending to the queue's worker (:mod:`.queue`).
"""

from __future__ import annotations

import logging
import smtplib
import threading
from collections.abc import Iterable
from typing import Any, cast

from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import EmailMessage
from django.db.models import Model
from django.utils.functional import cached_property

from .conf import conf
from .exceptions import LiveOAuthMailError
from .models import MailAccount
from .ownership import routing
from .ownership.acting import acting_user_pk, user_pk
from .queue import service
from .sending.delivery import Delivery
from .sending.engine import Sender, TransportsFor
from .sending.options import smtp_options
from .transports.base import Transport
from .transports.graph import GraphTransport
from .transports.smtp import SMTPTransport
from .transports.smtp_replies import describe

logger = logging.getLogger(__name__)


class EmailBackend(BaseEmailBackend):
    """Send each message through its sender's linked mailbox, by SMTP or Graph.

    The mailbox is ``account`` (a ``MailAccount``, its pk or its address) when
    given, else the one :mod:`.ownership.routing` picks for the acting user
    (or ``user``).
    """

    def __init__(
        self,
        host: str | None = None,
        port: int | None = None,
        timeout: float | None = None,
        *,
        account: MailAccount | int | str | None = None,
        user: Model | int | None = None,
        username: str | None = None,
        password: str | None = None,
        use_tls: bool | None = None,
        use_ssl: bool | None = None,
        ssl_keyfile: str | None = None,
        ssl_certfile: str | None = None,
        fail_silently: bool = False,
        **kwargs: Any,
    ) -> None:
        options = smtp_options(
            host=host,
            port=port,
            timeout=timeout,
            password=password,
            use_tls=use_tls,
            use_ssl=use_ssl,
            ssl_certfile=ssl_certfile,
            ssl_keyfile=ssl_keyfile,
            others=kwargs,
        )
        super().__init__(**kwargs)  # Django 6.1's alias
        self.fail_silently = fail_silently
        self.options = options
        # Django's attribute names, which code (and Django's tests) read.
        self.host, self.port, self.timeout = options.host, options.port, options.timeout
        self.use_tls, self.use_ssl = options.use_tls, options.use_ssl
        self.ssl_certfile, self.ssl_keyfile = options.ssl_certfile, options.ssl_keyfile
        # `username` (send_mail's auth_user) names a mailbox too; "" is
        # Django's "no login", so it names none.
        self.account_selector = account if account is not None else (username or None)
        self.user_selector = user
        self._lock = threading.RLock()
        self._sender = Sender(
            self.transport_for, max_throttle_wait=conf.MAX_INLINE_WAIT
        )
        self._held_open = False  # open() was called: keep sessions until close()

    @cached_property
    def _transports(self) -> TransportsFor:
        return TransportsFor(self.options)

    @property
    def transport(self) -> SMTPTransport:
        """The SMTP transport (host, port, TLS), as Django's backend has one."""
        return cast(SMTPTransport, self._transports.transport("smtp"))

    @property
    def graph(self) -> GraphTransport:
        return cast(GraphTransport, self._transports.transport("graph"))

    def transport_for(self, account: MailAccount) -> Transport:
        """How ``account``'s sessions are opened; a test backend records instead."""
        return self._transports(account)

    @property
    def connection(self) -> smtplib.SMTP | None:
        """The SMTP connection of an open session, as on Django's backend."""
        with self._lock:
            sessions = list(self._sender.sessions.values())
        return next(
            (c for s in sessions if (c := getattr(s, "connection", None))), None
        )

    def open(self) -> bool | None:
        """Sign in as the fixed mailbox, else the one for ``DEFAULT_FROM_EMAIL``.

        True if a session was opened, False if one was open already, None if
        it failed silently. Sessions stay open until :meth:`close`.
        """
        with self._lock:
            if self._sender.sessions:
                return False
            selector = self.account_selector
            try:
                self._sender.session(
                    routing.explicit_account(selector)
                    if selector is not None
                    else routing.site_account(self.user_selector)
                )
            except (OSError, LiveOAuthMailError):
                if self.fail_silently:
                    return None
                raise
            self._held_open = True
            return True

    def close(self) -> None:
        """End the sessions: back to the pool to stay warm, or closed."""
        with self._lock:
            self._held_open = False
            self._sender.release_all()

    def send_messages(self, email_messages: Iterable[EmailMessage]) -> int:
        """Send in one session per mailbox; return how many were accepted.

        A temporary failure (4xx, a dropped connection, a timeout) is retried
        on a new connection, up to ``SMTP_RETRIES`` times with backoff; a 5xx
        never is, and an accepted message is never sent again. The first
        lasting failure raises, as :class:`PartialDelivery` once some went out.
        """
        messages = list(email_messages)  # an iterator must be read once
        if not messages:
            return 0
        with self._lock:
            delivery = Delivery(messages)
            try:
                batches, refused = routing.route(
                    messages, user=self.user_selector, account=self.account_selector
                )
                for message, error in refused:
                    self._give_up(error, delivery, message, None)
                for account, group in batches:
                    self._send_group(account, group, delivery)
            finally:
                if not self._held_open:
                    self.close()
                delivery.record_use()
        return len(delivery.sent)

    def _send_group(
        self, account: MailAccount, group: list[EmailMessage], delivery: Delivery
    ) -> None:
        try:
            self._sender.sign_in(account)
        except Exception as error:
            # The mailbox cannot sign in: none of its messages is tried.
            self._give_up(error, delivery, group[0], account)
            return
        for message in group:
            try:
                sent = self._sender.send(account, message)
            except Exception as error:
                self._give_up(error, delivery, message, account)
                continue
            if sent:
                delivery.accepted(account, message)
        if not self._held_open:
            self._sender.release(account)

    def _give_up(
        self,
        error: Exception,
        delivery: Delivery,
        message: EmailMessage,
        account: MailAccount | None,
    ) -> None:
        """Apply ``fail_silently``, here only: sending failures pass when asked.

        Anything else is a bug or a broken setup and raises; once some messages
        went out, as :class:`PartialDelivery`.
        """
        silenceable = isinstance(error, (OSError, LiveOAuthMailError))
        if silenceable and self.fail_silently:
            logger.warning("Sending failed silently: %s", describe(error))
            return
        if not delivery.sent:
            raise error
        mailbox = account.email if account else None
        raise delivery.partial(error, message, mailbox) from error


class QueuedEmailBackend(BaseEmailBackend):
    """Queue each message in the outbox; a worker sends it (see :mod:`.worker`).

    The mailbox is decided now, with the same rules as :class:`EmailBackend`
    (``account``, ``user``, the acting user), and decided again at send time.
    Messages are stored in the caller's transaction and scheduled when it
    commits: a rolled-back request sends nothing. Returns how many were
    queued. A message no mailbox may send raises before anything is queued,
    unless ``fail_silently``.
    """

    def __init__(
        self,
        *,
        account: MailAccount | int | str | None = None,
        user: Model | int | None = None,
        username: str | None = None,
        password: str | None = None,
        fail_silently: bool = False,
        **kwargs: Any,
    ) -> None:
        # Django's SMTP options (host, port, ...) are the worker's to use,
        # from the settings; a password is refused as by the inline backend.
        smtp_options(password=password, others=kwargs)
        super().__init__(**kwargs)  # Django 6.1's alias
        self.fail_silently = fail_silently
        service.require_engine()
        self.account_selector = account if account is not None else (username or None)
        self.user_selector = user

    def send_messages(self, email_messages: Iterable[EmailMessage]) -> int:
        messages = list(email_messages)
        if not messages:
            return 0
        batches, refused = routing.route(
            messages, user=self.user_selector, account=self.account_selector
        )
        for _, error in refused:
            if not self.fail_silently:
                raise error
            logger.warning("Not queued: %s", describe(error))
        acting = (
            user_pk(self.user_selector)
            if self.user_selector is not None
            else acting_user_pk()
        )
        return service.queue(
            batches, acting_user=acting, explicit=self.account_selector is not None
        )
