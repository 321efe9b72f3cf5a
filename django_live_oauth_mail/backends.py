"""Django's SMTP email backend, authenticating as the sender's linked mailbox.

What differs from ``django.core.mail.backends.smtp.EmailBackend``: which
mailbox logs in (chosen per message by :mod:`.routing`), how it logs in
(XOAUTH2 with a token from :mod:`.tokens`), that one ``send_messages()`` call
opens one SMTP session per mailbox, that temporary failures are retried
(:mod:`.retry`), and that ``open()`` with no fixed mailbox signs in as the one
that sends ``DEFAULT_FROM_EMAIL``. Return values and ``fail_silently`` are
Django's; passwords and plaintext connections are refused.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import smtplib
import ssl
import time
from collections.abc import Iterator, Sequence
from typing import Any

from django.core.mail.backends import smtp
from django.core.mail.message import EmailMessage, make_msgid
from django.core.mail.utils import DNS_NAME
from django.db import DatabaseError
from django.db.models import Model
from django.utils import timezone
from django.utils.functional import cached_property

from . import retry, routing
from .conf import conf
from .exceptions import (
    AccountNotFound,
    ConfigurationError,
    LiveOAuthMailError,
    PartialDelivery,
    SendAsDenied,
    SubmissionQuotaExceeded,
)
from .models import MailAccount
from .tokens import AccountCredentials
from .xoauth2 import XOAuth2SMTP, XOAuth2SMTP_SSL, reply_bytes, reply_text

logger = logging.getLogger(__name__)


class EmailBackend(smtp.EmailBackend):
    """Send through Microsoft's SMTP as the linked mailbox of each sender.

    The mailbox for a message is the ``account`` given to the backend (a
    ``MailAccount``, its pk, or its address), else the one :mod:`.routing`
    picks from ``from_email`` for the acting user, or for ``user`` when given.
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
        _refuse_unknown_options(kwargs)
        if password:
            raise ConfigurationError(
                "django_live_oauth_mail.backends.EmailBackend signs in with OAuth; "
                "do not give it a password (auth_password, EMAIL_HOST_PASSWORD "
                "is ignored). Link the mailbox instead."
            )
        use_ssl = conf.SMTP_USE_SSL if use_ssl is None else bool(use_ssl)
        use_tls = not use_ssl if use_tls is None else bool(use_tls)
        if not (use_tls or use_ssl):
            raise ConfigurationError(
                "Refusing to send OAuth tokens over an unencrypted SMTP connection: "
                "use_tls must stay True (Microsoft requires STARTTLS on port 587)."
            )
        super().__init__(
            host=host or conf.SMTP_HOST,
            port=port or conf.SMTP_PORT,
            username=None,
            password=None,
            use_tls=use_tls,
            use_ssl=use_ssl,
            ssl_keyfile=ssl_keyfile or conf.SMTP_SSL_KEYFILE,
            ssl_certfile=ssl_certfile or conf.SMTP_SSL_CERTFILE,
            fail_silently=fail_silently,
            **kwargs,
        )
        # Set here: Django reads EMAIL_TIMEOUT for a None, which here may mean
        # "no timeout" (SMTP_TIMEOUT = None).
        self.timeout = conf.SMTP_TIMEOUT if timeout is None else timeout
        # `username` (what send_mail's auth_user sets) names a mailbox, too;
        # "" is Django's "no login", so it names none.
        self.account_selector = account if account is not None else (username or None)
        self.user_selector = user
        self.username, self.password = None, None  # type: ignore[assignment]
        self._current: MailAccount | None = None
        self._held_open = False

    # -- Django's hooks ------------------------------------------------------------

    @property
    def connection_class(self) -> type[smtplib.SMTP]:
        return XOAuth2SMTP_SSL if self.use_ssl else XOAuth2SMTP

    @cached_property
    def ssl_context(self) -> ssl.SSLContext:
        if self.ssl_certfile or self.ssl_keyfile:
            context: ssl.SSLContext = super().ssl_context
            return context
        return _verifying_context(conf.CA_BUNDLE)

    def open(self) -> bool | None:
        """Open an SMTP session, as Django's ``open()``, and keep it until ``close()``.

        Returns True if it opened one, False if one was already open, None if
        it failed silently. The session is the fixed mailbox's, else that of
        the mailbox routing picks for ``DEFAULT_FROM_EMAIL``: so ``open()``
        checks the connection, sign-in included, as Django's does. Sessions
        that ``send_messages()`` opens for other mailboxes are kept too.
        """
        if self.connection:
            return False
        try:
            if self._current is None:
                self._current = self._fixed_account() or self._site_account()
        except LiveOAuthMailError:
            if self.fail_silently:
                return None
            raise
        self._held_open = True
        return self._open_current()

    def _open_current(self) -> bool | None:
        """Django's ``open()``, signing in as ``self._current``."""
        account = self._current
        assert account is not None
        # Django's open() calls connection.login(username, password); our
        # connection class reads "password" as where to get a token from.
        self.username = account.email
        self.password = AccountCredentials(account)  # type: ignore[assignment]
        try:
            opened = super().open()
        except BaseException as error:
            self._drop_connection()
            if self.fail_silently and isinstance(error, (LiveOAuthMailError, OSError)):
                return None
            raise
        finally:
            self.password = None  # type: ignore[assignment]
        if opened is None:
            self._drop_connection()
        return opened

    def close(self) -> None:
        self._held_open = False
        try:
            super().close()
        finally:
            if self.connection is None:
                self._reset_mailbox()

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send in one SMTP session per mailbox; return how many were accepted.

        A temporary failure (4xx, a dropped connection, a timeout) is retried
        on a new connection, up to ``SMTP_RETRIES`` times with backoff; a 5xx
        never is, and an accepted message is never sent again. Without
        ``fail_silently`` the first lasting failure is raised: as it is when
        nothing was sent yet, else as :class:`PartialDelivery`, which lists
        what was and was not sent.
        """
        email_messages = list(email_messages)  # an iterator must be read once
        if not email_messages:
            return 0
        with self._lock:
            try:
                batches = self._route(email_messages)
            except LiveOAuthMailError:
                if self.fail_silently:
                    return 0
                raise
            sent: list[EmailMessage] = []
            sent_by: dict[int, int] = {}
            pauses = retry.delays()
            try:
                for account, messages in batches:
                    if self.connection and self._current != account:
                        self._drop_connection()
                    self._current = account
                    # A session the caller opened stays open, as in Django.
                    keep_open = self._held_open or self.connection is not None
                    try:
                        for message in messages:
                            accepted = self._deliver(message, pauses)
                            if accepted is None:
                                break  # this mailbox cannot sign in; skip its rest
                            if accepted:
                                sent.append(message)
                                sent_by[account.pk] = sent_by.get(account.pk, 0) + 1
                    except Exception as error:
                        if not sent or isinstance(error, ConfigurationError):
                            raise
                        raise self._partial(
                            error, email_messages, sent, message
                        ) from error
                    finally:
                        if not keep_open:
                            self._drop_connection()
            finally:
                if self.connection is None:
                    self._reset_mailbox()
                self._mark_used(sent_by)
        return len(sent)

    def _deliver(self, message: EmailMessage, pauses: list[float]) -> bool | None:
        """Send one message, retrying temporary failures on a new connection.

        Returns True or False as Django's ``_send()``, or None when the mailbox
        could not sign in at all and that failed silently. Lasting failures
        raise unless ``fail_silently``.
        """
        with _stable_message_id(message):
            for attempt in range(len(pauses) + 1):
                signing_in = False
                try:
                    with self._raising():
                        if not self.connection:
                            signing_in = True
                            self._open_current()
                            signing_in = False
                        return bool(self._send(message))
                except Exception as error:
                    if not isinstance(error, (OSError, LiveOAuthMailError)):
                        raise
                    transient = retry.is_transient(error)
                    if transient or self.connection is None:
                        self._drop_connection()
                    if transient and attempt < len(pauses):
                        logger.warning(
                            "Temporary SMTP failure for %s (%s); retrying in %.1f s.",
                            self._current.email if self._current else "?",
                            _describe(error),
                            pauses[attempt],
                        )
                        time.sleep(pauses[attempt])
                        continue
                    if not self.fail_silently:
                        raise
                    logger.warning("Sending failed silently: %s", _describe(error))
                    return None if signing_in else False
        raise AssertionError("unreachable")  # pragma: no cover

    @contextlib.contextmanager
    def _raising(self) -> Iterator[None]:
        """Let Django's open()/_send() raise, so retries can see the error.

        ``fail_silently`` is applied by :meth:`_deliver` once retries are spent.
        """
        saved, self.fail_silently = self.fail_silently, False
        try:
            yield
        finally:
            self.fail_silently = saved

    def _partial(
        self,
        error: Exception,
        batch: Sequence[EmailMessage],
        sent: list[EmailMessage],
        failed: EmailMessage,
    ) -> PartialDelivery:
        position = {id(m): number for number, m in enumerate(batch, start=1)}
        done = {id(m) for m in sent}
        unsent = [m for m in batch if id(m) not in done and m is not failed]
        numbers = ", ".join(f"#{position[id(m)]}" for m in sent)
        return PartialDelivery(
            f"{len(sent)} of {len(batch)} messages were sent ({numbers}) before "
            f"#{position[id(failed)]} failed: {error} The {len(unsent)} message(s) "
            "after it were not attempted; the sent ones must not be sent again.",
            mailbox=self._current.email if self._current else None,
            error=error,
            sent=sent,
            failed=failed,
            unsent=unsent,
        )

    def _send(self, email_message: EmailMessage) -> bool:
        try:
            return bool(super()._send(email_message))  # type: ignore[misc]
        except smtplib.SMTPResponseException as error:
            mailbox = self._current.email if self._current else "the mailbox"
            explained = explain_rejection(error, mailbox, email_message.from_email)
            if explained is None:
                raise
            raise explained from None

    # -- choosing the mailbox -------------------------------------------------------

    def _reset_mailbox(self) -> None:
        """With no session open, the next open() starts from the fixed mailbox."""
        self._current = getattr(self, "_fixed", None)

    def _fixed_account(self) -> MailAccount | None:
        """The mailbox given to the backend itself, if any (looked up once)."""
        if not hasattr(self, "_fixed"):
            if self.account_selector is None:
                self._fixed: MailAccount | None = None
            else:
                self._fixed = routing.explicit_account(self.account_selector)
        return self._fixed

    def _site_account(self) -> MailAccount:
        """The mailbox that would send a message from ``DEFAULT_FROM_EMAIL``."""
        try:
            [(account, _)] = routing.route([EmailMessage()], user=self.user_selector)
        except AccountNotFound as error:
            raise type(error)(
                "open() signs in as the mailbox that sends DEFAULT_FROM_EMAIL, "
                f"and there is none: {error} Or give the backend account=, or "
                "leave open() out: send_messages() opens the sessions it needs.",
                mailbox=error.mailbox,
            ) from None
        return account

    def _route(
        self, messages: Sequence[EmailMessage]
    ) -> list[tuple[MailAccount, list[EmailMessage]]]:
        """Group messages by the mailbox that sends them (see :mod:`.routing`)."""
        fixed = self._fixed_account()
        if fixed is not None:
            return [(fixed, list(messages))]
        return routing.route(
            messages, user=self.user_selector, fail_silently=self.fail_silently
        )

    # -- bookkeeping ---------------------------------------------------------------

    def _mark_used(self, sent_by: dict[int, int]) -> None:
        if not sent_by:
            return
        try:
            MailAccount.objects.filter(pk__in=sent_by).update(
                last_used_at=timezone.now()
            )
        except DatabaseError as error:
            # The mail went out; failing now would only make callers resend it.
            logger.warning("Could not record when mailboxes were last used: %s", error)

    def _drop_connection(self) -> None:
        """Close the SMTP connection, ignoring errors, keeping the mailbox choice.

        Also covers Django 4.2, which leaves a half-open connection in
        ``connection`` after a failed login (5.0+ uses ``_partial_connection``).
        """
        saved, self.fail_silently = self.fail_silently, True
        try:
            with contextlib.suppress(Exception):
                smtp.EmailBackend.close(self)
        finally:
            self.fail_silently = saved
            self.connection = None


#: Options Django itself passes to backends (6.1's MAILERS), not ours to judge.
_DJANGOS_OWN_OPTIONS = frozenset({"alias", "_ignore_unknown_kwargs"})


def _refuse_unknown_options(options: dict[str, Any]) -> None:
    """Refuse a misspelt option on every Django version, as 6.1's MAILERS does.

    With an ``alias`` (a MAILERS entry) Django raises ``InvalidMailer`` itself,
    naming the alias; before 6.1, or when built directly, Django would ignore it.
    """
    ignored = set(options.get("_ignore_unknown_kwargs") or ())
    unknown = sorted(set(options) - _DJANGOS_OWN_OPTIONS - ignored)
    if unknown and options.get("alias") is None:
        raise ConfigurationError(
            f"Unknown option(s) for django_live_oauth_mail.backends.EmailBackend: "
            f"{', '.join(map(repr, unknown))}. It takes account, user, host, port, "
            "timeout, use_tls, use_ssl, ssl_certfile, ssl_keyfile and "
            "fail_silently."
        )


@functools.lru_cache(maxsize=4)
def _verifying_context(cafile: str | None) -> ssl.SSLContext:
    """One TLS client context per process and CA file.

    Loading the system certificates costs about 30 ms; Django's backend pays
    it on every ``send_mail()``. Contexts are safe to share between threads.
    A changed CA file is read again only after a restart.
    """
    return ssl.create_default_context(cafile=cafile)


def explain_rejection(
    error: smtplib.SMTPResponseException, mailbox: str, from_email: str
) -> Exception | None:
    """Our explanation of Exchange's refusal of a message, if we have one."""
    reply = reply_bytes(error.smtp_error)
    if error.smtp_code == 554 and b"5.2.252" in reply:
        return SendAsDenied(
            _send_as_advice(mailbox, routing.sender_address(str(from_email or ""))),
            mailbox=mailbox,
            smtp_code=error.smtp_code,
            smtp_error=reply,
        )
    if error.smtp_code == 554 and b"SubmissionQuotaExceeded" in reply:
        return SubmissionQuotaExceeded(
            f"{mailbox} has reached Microsoft's daily sending limit (554 5.2.0 "
            "SubmissionQuotaExceeded). Sending works again once the 24-hour window "
            "has passed; spread bulk mail over several mailboxes or use a bulk "
            "mail service.",
            mailbox=mailbox,
            smtp_code=error.smtp_code,
            smtp_error=reply,
        )
    return None


def _send_as_advice(mailbox: str, sender: str | None) -> str:
    if not sender or sender == mailbox:
        return (
            f"Exchange refused to send as {mailbox} from {mailbox} itself (554 "
            "5.2.252 SendAsDenied): the From header names another address. Make "
            "the From header the mailbox's own address."
        )
    # A Send As address (an Exchange shared mailbox, say) or DEFAULT_ACCOUNT
    # sending for DEFAULT_FROM_EMAIL: Exchange needs the permission granted.
    return (
        f"Exchange refused to let {mailbox} send as {sender} (554 5.2.252 "
        f"SendAsDenied). An Exchange administrator must grant {mailbox} Send As "
        f"on {sender}: `Add-RecipientPermission -Identity {sender} -Trustee "
        f"{mailbox} -AccessRights SendAs` (or Exchange admin center > Recipients "
        f"> {sender} > Delegation > Send as). Until then, send from {mailbox} "
        "itself."
    )


@contextlib.contextmanager
def _stable_message_id(message: EmailMessage) -> Iterator[None]:
    """Give every attempt at one message the same Message-ID.

    Django makes a new one each time it renders a message; a retry after an
    ambiguous failure (the connection dropped after DATA) would then look like
    a different message. The caller's message is left as it was.
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


def _describe(error: BaseException) -> str:
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {reply_text(error.smtp_error)}"
    return str(error) or type(error).__name__
