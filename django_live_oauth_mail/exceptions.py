"""The errors this app raises.

Every message names the mailbox it is about and says what to do next. None of
them ever contains a token: they are built from error codes and descriptions,
never from request or response bodies that could carry one.

``fail_silently`` swallows :class:`LiveOAuthMailError` and its subclasses,
never a plain :class:`ConfigurationError`: a broken setup must not lose mail
quietly. :class:`TokenCacheUnreadable` is both: one mailbox's tokens cannot be
read, and the others may still send.

Every error survives ``pickle`` (task queues and result backends pickle what a
task raised) with its type, message and fields. Like any Python exception's,
its ``__cause__``, ``__context__`` and traceback stay behind.
"""

from __future__ import annotations

import copy
import smtplib
from collections.abc import Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured


class ConfigurationError(ImproperlyConfigured):
    """The ``LIVE_OAUTH_MAIL`` settings are missing or wrong."""


class LiveOAuthMailError(Exception):
    """Base class for every runtime error of this app."""

    def __init__(self, message: str, *, mailbox: str | None = None) -> None:
        # Exception's own __init__, not super(): subclasses that also inherit
        # an smtplib exception must not have it called with our arguments.
        Exception.__init__(self, message)
        self.mailbox = mailbox

    def __reduce__(self) -> tuple[Any, ...]:
        # BaseException.__reduce__ rebuilds with cls(*self.args), which cannot
        # pass our keyword-only arguments: a required one fails to unpickle,
        # an optional one is silently reset. Rebuild without __init__ and put
        # every field back instead; subclasses need nothing of their own.
        return (_rebuild, (type(self), self.args), self.__getstate__())

    def __getstate__(self) -> dict[str, Any]:
        """The fields to pickle: every instance attribute."""
        return dict(vars(self))


def _rebuild(cls: type[LiveOAuthMailError], args: tuple[Any, ...]) -> Any:
    """Unpickle an error: create it, bypassing ``__init__``, with its ``args``.

    Pickle then restores the fields with ``__setstate__``.
    """
    error = cls.__new__(cls)
    error.args = args
    return error


class PartialDelivery(LiveOAuthMailError, smtplib.SMTPException):
    """A batch stopped part-way: some messages were accepted, then one failed.

    It is an ``smtplib.SMTPException`` too, so existing SMTP error handling
    still catches it.

    ``sent`` are the messages the server accepted (never to be sent again),
    ``failed`` the one that failed, ``unsent`` those not attempted; the
    original error is ``error`` (and ``__cause__``).
    """

    def __init__(
        self,
        message: str,
        *,
        mailbox: str | None,
        error: BaseException,
        sent: Sequence[Any],
        failed: Any,
        unsent: Sequence[Any],
    ) -> None:
        super().__init__(message, mailbox=mailbox)
        self.error = error
        self.sent = list(sent)
        self.failed = failed
        self.unsent = list(unsent)

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        state["sent"] = [_detached(message) for message in self.sent]
        state["failed"] = _detached(self.failed)
        state["unsent"] = [_detached(message) for message in self.unsent]
        return state


# Where Django's EmailMessage keeps the backend it is sent with: "connection"
# up to 6.0, "_connection" from 6.1 (which deprecates the attribute).
_MESSAGE_CONNECTION_ATTRIBUTES = ("connection", "_connection")


def _detached(message: Any) -> Any:
    """``message`` without the backend that was sending it, for pickling.

    send_mail() and send_mass_mail() leave that backend on every message. It
    holds a lock and a socket, which cannot be pickled and would mean nothing
    in another process; the message itself is left as it is.
    """
    held = getattr(message, "__dict__", {})
    names = [n for n in _MESSAGE_CONNECTION_ATTRIBUTES if held.get(n) is not None]
    if not names:
        return message
    detached = copy.copy(message)
    for name in names:
        vars(detached)[name] = None
    return detached


class AccountNotFound(LiveOAuthMailError, LookupError):
    """No linked, active mailbox can send for the requested address."""


class SenderNotAllowed(AccountNotFound):
    """A mailbox is linked for the From address, but the acting user may not use it.

    With ``ROUTING = "owner"`` a mailbox sends only for its owner, unless it
    (or the Send As address) is shared. Nothing was sent.
    """


class AddressTaken(LiveOAuthMailError, ValueError):
    """The address is another kind of mailbox's: an app mailbox's or a person's.

    Nothing was linked or registered; see :mod:`.claims`.
    """


class TokenError(LiveOAuthMailError):
    """The identity platform did not give an access token.

    ``error`` and ``error_codes`` are the platform's own (``invalid_grant``,
    ``[70000]``); ``description`` is its text, which holds no secrets.
    """

    def __init__(
        self,
        message: str,
        *,
        mailbox: str | None = None,
        error: str | None = None,
        error_codes: Sequence[int] = (),
        description: str | None = None,
    ) -> None:
        super().__init__(message, mailbox=mailbox)
        self.error = error
        self.error_codes = list(error_codes)
        self.description = description


class ReconnectRequired(TokenError):
    """The grant is gone (revoked, expired, or new consent needed): link again."""


class ConsentRequired(TokenError):
    """The mailbox never consented to a permission one transport needs.

    Linked before Graph was configured, say. Its other transport still works,
    so its status stays active; linking it again asks for the consent.
    """


class IdentityPlatformUnavailable(TokenError):
    """The identity platform failed or throttled us; retrying later may work."""


class AppCredentialsError(TokenError):
    """The app registration's client id or secret was refused.

    This is the site operator's problem, not the user's: the account keeps its
    status and nobody is asked to link again.
    """


class AppConsentRequired(TokenError):
    """An app mailbox's tenant has not granted the app what it needs.

    The message gives the tenant's admin-consent URL.
    """


class Throttled(LiveOAuthMailError):
    """The server asked us to slow down; ``retry_after``: seconds, if it said.

    Sending inline waits it out up to ``MAX_INLINE_WAIT`` seconds in all,
    then raises this.
    """

    def __init__(
        self, message: str, *, mailbox: str | None = None, retry_after: float | None
    ) -> None:
        super().__init__(message, mailbox=mailbox)
        self.retry_after = retry_after


class TokenCacheUnreadable(LiveOAuthMailError, ConfigurationError):
    """One mailbox's stored tokens cannot be decrypted with the current keys."""


class GraphError(LiveOAuthMailError):
    """Microsoft Graph refused a request; ``status`` and ``code`` are Graph's."""

    def __init__(
        self, message: str, *, mailbox: str | None, status: int, code: str
    ) -> None:
        super().__init__(message, mailbox=mailbox)
        self.status = status
        self.code = code


class MessageMayHaveBeenSent(LiveOAuthMailError):
    """The server took the message, then its answer was lost: it may have gone out.

    Graph failed after ``sendMail`` was handed over, or the SMTP connection
    broke (or timed out) after the end of DATA. Neither has an idempotency
    key, so the message is never sent again automatically: inline this is
    raised, and a queued message becomes ``unknown``. ``status`` and ``code``
    are Graph's (0 and the error's name when the connection broke; the same
    for SMTP).
    """

    def __init__(
        self, message: str, *, mailbox: str | None, status: int = 0, code: str = ""
    ) -> None:
        super().__init__(message, mailbox=mailbox)
        self.status = status
        self.code = code


class AuthorizationFailed(LiveOAuthMailError):
    """A connect flow could not be completed; nothing was stored."""


class AuthorizationDeclined(AuthorizationFailed):
    """The user cancelled the sign-in or declined consent."""


class MailboxRejected(LiveOAuthMailError, smtplib.SMTPResponseException):
    """Exchange refused the mailbox or the message.

    It is also an :class:`smtplib.SMTPResponseException` (and so an
    ``OSError``), so code that already handles SMTP failures keeps working, and
    Django's SMTP backend treats it as any other SMTP error.
    """

    def __init__(
        self, message: str, *, mailbox: str | None, smtp_code: int, smtp_error: bytes
    ) -> None:
        LiveOAuthMailError.__init__(self, message, mailbox=mailbox)
        self.smtp_code = smtp_code
        self.smtp_error = smtp_error
        self.args = (message,)  # type: ignore[assignment]

    def __str__(self) -> str:
        return str(self.args[0])


class SMTPAuthDisabled(MailboxRejected, smtplib.SMTPAuthenticationError):
    """``535 5.7.139``: SMTP AUTH is switched off for the tenant or mailbox."""


class TokenRejected(MailboxRejected, smtplib.SMTPAuthenticationError):
    """``535 5.7.3`` even with a freshly refreshed token: scope or audience."""


class SendAsDenied(MailboxRejected, smtplib.SMTPDataError):
    """``554 5.2.252``: the From address is not the authenticated mailbox."""


class SubmissionQuotaExceeded(MailboxRejected, smtplib.SMTPDataError):
    """``554 5.2.0 ...SubmissionQuotaExceeded``: the mailbox hit its daily limit."""


class MailboxFull(MailboxRejected, smtplib.SMTPDataError):
    """``554 5.2.2``: the sending mailbox is over its storage quota."""
