"""A local SMTP submission server that behaves like smtp.office365.com:587.

It requires STARTTLS, offers XOAUTH2 (and optionally LOGIN/PLAIN), checks
bearer tokens against a :class:`~.identity.FakeIdentityPlatform` (or any
callable), answers with Exchange Online's reply codes and texts, records what
it received, and can fail on demand. Needs the ``aiosmtpd`` extra.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from . import _redaction
from ._exchange_smtp import ExchangeController
from ._local_server import LocalServer
from ._mailroom import Fault, Mailroom, Stage
from .certs import TestCertificate
from .identity import FakeIdentityPlatform
from .ports import listen
from .records import AuthAttempt, ReceivedMessage

__all__ = ["AuthAttempt", "ReceivedMessage", "XOAuth2SMTPServer"]

TokenValidator = Callable[[str], str | None]

_DEFAULT_FAULT_REPLY = "421 4.3.2 Service not available, closing transmission channel"
# Exchange Online advertises "SIZE 157286400".
_MAX_MESSAGE_SIZE = 157_286_400


class XOAuth2SMTPServer(LocalServer):
    """Exchange-like SMTP server on a background thread.

    ``token_validator`` maps an access token to the mailbox it was issued for
    (``None`` if invalid); pass a :class:`FakeIdentityPlatform` to check its
    tokens, app-only ones included (see :attr:`app_access`), or ``None`` to
    accept any bearer token. ``passwords`` enables LOGIN/PLAIN for those mailboxes.
    Credentials are never recorded, and a logging filter keeps them out of
    aiosmtpd's ``mail.log`` records.
    """

    def __init__(
        self,
        token_validator: TokenValidator | FakeIdentityPlatform | None = None,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        certificate: TestCertificate | None = None,
        passwords: Mapping[str, str] | None = None,
        smtp_auth_disabled: Iterable[str] = (),
        submission_quota_exceeded: Iterable[str] = (),
        enforce_send_as: bool = True,
    ) -> None:
        introspect = None
        if isinstance(token_validator, FakeIdentityPlatform):
            introspect = token_validator.introspect
            token_validator = token_validator.validate_access_token
        self._mailroom = Mailroom(
            validator=token_validator,
            introspect=introspect,
            passwords=passwords,
            smtp_auth_disabled=smtp_auth_disabled,
            submission_quota_exceeded=submission_quota_exceeded,
            enforce_send_as=enforce_send_as,
        )
        self._bind_address(host, port, certificate)
        self._controller: ExchangeController | None = None

    # -- lifecycle ---------------------------------------------------------

    def start(self) -> XOAuth2SMTPServer:
        """Start serving on a background thread (returns ``self``)."""
        if self._controller is not None:
            raise RuntimeError("XOAuth2SMTPServer is already running")
        _redaction.install()
        sock = listen(self._host, self._port, may_move=self._auto_port)
        self._port = sock.getsockname()[1]
        controller = ExchangeController(
            self._mailroom,
            sock,
            server_hostname="smtp.office365.test",
            ident="Microsoft ESMTP MAIL Service ready (fake, for tests)",
            tls_context=self._certificate.server_context(),
            require_starttls=True,
            auth_require_tls=True,
            auth_exclude_mechanism=(
                None if self._mailroom.password_auth else ["LOGIN", "PLAIN"]
            ),
            data_size_limit=_MAX_MESSAGE_SIZE,
            enable_SMTPUTF8=True,
        )
        try:
            controller.start()
        except BaseException:
            sock.close()
            raise
        self._controller = controller
        return self

    def hang_up_all(self) -> int:
        """Close every open client connection, as Exchange does with idle ones.

        Returns how many were open.
        """
        if self._controller is None:
            return 0
        return self._controller.open_clients(hang_up=True)

    @property
    def open_connections(self) -> int:
        """How many client connections are open now."""
        if self._controller is None:
            return 0
        return self._controller.open_clients(hang_up=False)

    def stop(self) -> None:
        """Stop serving (recorded messages are kept)."""
        if self._controller is not None:
            self._controller.stop()
            self._controller = None

    # -- addresses ---------------------------------------------------------

    # -- live Exchange rules ---------------------------------------------------

    @property
    def smtp_auth_disabled(self) -> set[str]:
        """Mailboxes answered with ``535 5.7.139`` (mutable, case-insensitive)."""
        return self._mailroom.smtp_auth_disabled

    @property
    def submission_quota_exceeded(self) -> set[str]:
        """Mailboxes whose messages get ``554 5.2.0`` (mutable)."""
        return self._mailroom.submission_quota_exceeded

    @property
    def passwords(self) -> dict[str, str]:
        """Mailbox passwords for LOGIN/PLAIN (mutable; offered only if given)."""
        return self._mailroom.passwords

    @property
    def enforce_send_as(self) -> bool:
        """Whether senders other than the authenticated mailbox get SendAsDenied."""
        return self._mailroom.enforce_send_as

    @enforce_send_as.setter
    def enforce_send_as(self, value: bool) -> None:
        self._mailroom.enforce_send_as = value

    @property
    def send_as(self) -> dict[str, set[str]]:
        """Send As grants: mailbox -> addresses it may send as (mutable)."""
        return self._mailroom.send_as

    @property
    def app_access(self) -> dict[str, set[str]]:
        """App client id -> mailboxes it may sign in to with app-only tokens.

        Exchange's FullAccess (``Add-MailboxPermission`` for the app's service
        principal); the token must also hold ``SMTP.SendAsApp`` (mutable,
        case-insensitive).
        """
        return self._mailroom.app_access

    # -- recorded state and faults -------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Messages accepted so far (a snapshot)."""
        return self._mailroom.messages

    @property
    def auth_attempts(self) -> list[AuthAttempt]:
        """Every AUTH exchange so far (a snapshot; no credentials)."""
        return self._mailroom.auth_attempts

    @property
    def sessions(self) -> int:
        """TCP connections accepted since start or :meth:`reset`."""
        return self._mailroom.sessions

    def reset(self) -> None:
        """Forget messages, AUTH attempts, the session count and queued faults."""
        self._mailroom.reset()

    def wait_for_messages(
        self, count: int, timeout: float = 5.0
    ) -> list[ReceivedMessage]:
        """Block until ``count`` messages arrived (``TimeoutError`` otherwise)."""
        return self._mailroom.wait_for_messages(count, timeout)

    def fail_next(
        self,
        count: int = 1,
        *,
        stage: Stage,
        reply: str = _DEFAULT_FAULT_REPLY,
        disconnect: bool = False,
    ) -> None:
        """Answer the next ``count`` times ``stage`` is reached with ``reply``.

        Stages: ``connect`` (instead of the greeting), ``auth``, ``mail``,
        ``rcpt`` and ``data`` (after the message was transmitted, where
        Exchange reports most transient failures). A ``421`` reply closes the
        connection afterwards; ``disconnect=True`` drops it without a reply.
        """
        self._mailroom.queue_faults(stage, Fault(reply, disconnect), count)
