"""aiosmtpd glue that makes an SMTP session look like smtp.office365.com:587.

The decisions live in :class:`~._mailroom.Mailroom`; this module adapts
aiosmtpd to them: larger line limits (XOAUTH2 responses are several KB),
the XOAUTH2 mechanism, Exchange's reply texts, and fault injection points.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import socket
import weakref
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session, syntax

from ._mailroom import NOT_AUTHENTICATED, UNKNOWN_MECHANISM, Login, Mailroom, Stage

__all__ = ["LINE_LIMIT", "ExchangeController", "ExchangeHandler", "ExchangeSMTP"]

#: Generous limit for command lines; a real XOAUTH2 initial response is 3-4 KB.
LINE_LIMIT = 64 * 1024


class ExchangeSMTP(SMTP):
    line_length_limit = LINE_LIMIT
    command_size_limit = LINE_LIMIT
    # aiosmtpd keeps this dict on the class and clears it per connection, so
    # the subclass needs its own instead of sharing SMTP's.
    command_size_limits: dict[str, int] = collections.defaultdict(lambda: LINE_LIMIT)

    def __init__(self, handler: Any, *, mailroom: Mailroom, probe: bool, **kwargs: Any):
        self.mailroom = mailroom
        self.probe = probe
        self.session_id = 0
        super().__init__(handler, authenticator=self._check_password, **kwargs)

    def connection_made(self, transport: Any) -> None:
        # Multi-line replies (EHLO) otherwise wait out Nagle's delay (~40 ms).
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(transport)

    async def _handle_client(self) -> None:
        # The controller's start-up probe is not a client: don't count it.
        if not self.probe:
            self.session_id = self.mailroom.open_session()
            fault = self.mailroom.take_fault("connect")
            if fault is not None:
                if not fault.disconnect:
                    await self.push(fault.reply)
                self.hang_up()
                return
        await super()._handle_client()

    def hang_up(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def fault_reply(self, stage: Stage) -> str | None:
        """The injected reply for ``stage``, if any (may drop the connection)."""
        fault = self.mailroom.take_fault(stage)
        if fault is None:
            return None
        if fault.disconnect:
            self.hang_up()
            # Unwinds aiosmtpd's command loop the same way a lost peer does.
            raise asyncio.CancelledError
        if fault.reply.startswith("421"):
            # 421 means "closing channel": close once the reply is written.
            self.loop.call_soon(self.hang_up)
        return fault.reply

    @syntax("AUTH <mechanism>")
    async def smtp_AUTH(self, arg: str) -> None:
        session = self.session
        if (
            arg
            and session is not None
            and session.ssl is not None
            and session.host_name
        ):
            reply = self.fault_reply("auth")
            if reply is not None:
                await self.push(reply)
                return
            mechanism, _, rest = arg.partition(" ")
            if mechanism.upper() not in self.mailroom.mechanisms:
                await self.push(UNKNOWN_MECHANISM)
                return
            arg = f"{mechanism.upper()} {rest}".strip()
        await super().smtp_AUTH(arg)

    async def auth_XOAUTH2(self, _: SMTP, args: list[str]) -> AuthResult:
        if len(args) > 1:
            blob = args[1]
        else:
            await self.push("334 ")
            blob = (await self._reader.readline()).strip().decode("ascii", "replace")
            if blob == "*":
                await self.push("501 5.7.0 Auth aborted")
                return AuthResult(success=False, handled=True)
        user, token = _parse_xoauth2(blob)
        success, reply = self.mailroom.authenticate_xoauth2(
            user, token, self.session_id
        )
        if success and user is not None:
            login = Login(user, "XOAUTH2")
            return AuthResult(success=True, auth_data=login, message=reply)
        return AuthResult(success=False, handled=False, message=reply)

    def _check_password(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: Any,
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)
        user = auth_data.login.decode("utf-8", "replace")
        password = auth_data.password.decode("utf-8", "replace")
        success, reply = self.mailroom.authenticate_password(
            mechanism, user, password, self.session_id
        )
        if success:
            return AuthResult(
                success=True, auth_data=Login(user, mechanism), message=reply
            )
        return AuthResult(success=False, handled=False, message=reply)


class ExchangeHandler:
    """aiosmtpd handler hooks for MAIL, RCPT and end of DATA."""

    def __init__(self, mailroom: Mailroom):
        self.mailroom = mailroom

    async def handle_MAIL(
        self,
        server: ExchangeSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        mail_options: list[str],
    ) -> str:
        reply = server.fault_reply("mail")
        if reply is not None:
            return reply
        if not session.authenticated:
            return NOT_AUTHENTICATED
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 2.1.0 Sender OK"

    async def handle_RCPT(
        self,
        server: ExchangeSMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        reply = server.fault_reply("rcpt")
        if reply is not None:
            return reply
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(rcpt_options)
        return "250 2.1.5 Recipient OK"

    async def handle_DATA(
        self, server: ExchangeSMTP, session: Session, envelope: Envelope
    ) -> str:
        reply = server.fault_reply("data")
        if reply is not None:
            return reply
        login = session.auth_data if isinstance(session.auth_data, Login) else None
        return self.mailroom.submit(
            mail_from=envelope.mail_from or "",
            rcpt_tos=envelope.rcpt_tos,
            login=login,
            data=envelope.original_content or b"",
            session_id=server.session_id,
        )


class ExchangeController(Controller):
    """A threaded controller serving :class:`ExchangeSMTP` on a bound socket.

    Handing aiosmtpd an already-bound socket lets the caller choose the port
    (aiosmtpd cannot bind port 0 and report the port it got).
    """

    def __init__(
        self, mailroom: Mailroom, sock: socket.socket, **smtp_kwargs: Any
    ) -> None:
        host, port = sock.getsockname()[:2]
        super().__init__(
            ExchangeHandler(mailroom), hostname=host, port=port, **smtp_kwargs
        )
        self._mailroom = mailroom
        self._sock = sock
        self._probe_pending = True
        self._clients: weakref.WeakSet[ExchangeSMTP] = weakref.WeakSet()

    def factory(self) -> ExchangeSMTP:
        # Controller.start() opens one connection to check the server is up.
        probe, self._probe_pending = self._probe_pending, False
        client = ExchangeSMTP(
            self.handler, mailroom=self._mailroom, probe=probe, **self.SMTP_kwargs
        )
        self._clients.add(client)
        return client

    def open_clients(self, *, hang_up: bool) -> int:
        """How many client connections are open; ``hang_up`` closes them too."""

        async def on_the_loop() -> int:
            open_ = [
                c
                for c in self._clients
                if c.transport is not None and not c.transport.is_closing()
            ]
            for client in open_ if hang_up else ():
                client.hang_up()
            return len(open_)

        return asyncio.run_coroutine_threadsafe(on_the_loop(), self.loop).result(10)

    def _create_server(self) -> Any:
        return self.loop.create_server(self._factory_invoker, sock=self._sock)


def _parse_xoauth2(blob: str) -> tuple[str | None, str | None]:
    """``(user, token)`` from ``base64("user=..^Aauth=Bearer ..^A^A")``."""
    try:
        fields = base64.b64decode(blob, validate=True).decode("utf-8").split("\x01")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None, None
    if len(fields) < 4 or fields[-2:] != ["", ""] or not fields[0].startswith("user="):
        return None, None
    user = fields[0][len("user=") :]
    auth = next((f for f in fields[1:] if f.startswith("auth=")), "")
    scheme, _, token = auth[len("auth=") :].partition(" ")
    if not user or scheme.lower() != "bearer" or not token.strip():
        return None, None
    return user, token.strip()
