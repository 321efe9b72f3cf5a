"""No frame an AUTH failure passes through holds the token or the SASL string.

Django's debug page (``DEBUG=True`` ignores ``sensitive_variables``) and
error reporters such as Sentry show every local of every frame in the
traceback, smtplib's included.
"""

from __future__ import annotations

import base64
import html
import json
import re
import smtplib
import socket
import sys
import threading
from collections.abc import Iterator
from types import FrameType, TracebackType
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import RequestFactory
from django.views.debug import technical_500_response

from django_live_oauth_mail.exceptions import TokenRejected
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import XOAuth2SMTPServer
from django_live_oauth_mail.transports.xoauth2 import sign_in, xoauth2_response

from ..mailers import make_backend
from ..standins import IdentityPlatform

# Sends run as the owner of the linked mailbox, as a view behind the middleware.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acting_user")]

ALICE = "alice@outlook.com"

ExcInfo = tuple[type[BaseException], BaseException, TracebackType]


@pytest.fixture
def no_retries(live_settings: dict[str, Any]) -> None:
    """The first dropped connection is the error the caller sees."""
    live_settings["SMTP_RETRIES"] = 0


def _send_while_the_server_hangs_up_on_auth(server: XOAuth2SMTPServer) -> ExcInfo:
    """The error as Django's handler would get it (this frame holds no secret)."""
    server.fail_next(stage="auth", disconnect=True)
    backend = make_backend(account=ALICE)
    try:
        backend.send_messages([EmailMessage("s", "b", ALICE, ["r@example.org"])])
    except Exception:
        kind, error, traceback = sys.exc_info()
        assert kind is not None and error is not None and traceback is not None
        return kind, error, traceback
    raise AssertionError("the dropped connection was not reported")


def _secrets_sent_for(account: MailAccount) -> list[str]:
    """Each access token of the account, and its SASL string raw and in base64."""
    cache = json.loads(MailAccount.objects.get(pk=account.pk).read_token_cache())
    tokens = [entry["secret"] for entry in cache["AccessToken"].values()]
    assert tokens
    found = []
    for token in tokens:
        sasl = xoauth2_response(account.email, token)
        found += [token, sasl, base64.b64encode(sasl.encode()).decode()]
    return found


def _as_shown(page: str) -> str:
    """The page's text, with the long values pprint split into pieces joined."""
    # pprint shows a long bytes or str as ('...'\n '...'), one piece a line.
    return re.sub(r"'\n\s*b?'", "", html.unescape(page))


def _frames(error: BaseException) -> Iterator[FrameType]:
    """Every frame in the tracebacks of ``error`` and the errors chained to it."""
    pending: list[BaseException | None] = [error]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        traceback = current.__traceback__
        while traceback is not None:
            yield traceback.tb_frame
            traceback = traceback.tb_next
        pending += [current.__cause__, current.__context__]


def test_a_connection_dropped_mid_auth_is_reported_naming_the_mailbox(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, no_retries: None
) -> None:
    kind, error, _ = _send_while_the_server_hangs_up_on_auth(smtp_server)

    assert kind is smtplib.SMTPServerDisconnected
    assert "lost during AUTH for alice@outlook.com" in str(error)
    assert smtp_server.messages == []


def test_the_debug_page_for_a_connection_dropped_mid_auth_shows_no_token(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    no_retries: None,
    settings: Any,
) -> None:
    exc_info = _send_while_the_server_hangs_up_on_auth(smtp_server)
    settings.DEBUG = True

    response = technical_500_response(RequestFactory().get("/"), *exc_info)
    page = _as_shown(response.content.decode())

    assert "SMTPServerDisconnected" in page
    assert "Local vars" in page  # the page does show frame locals
    for secret in _secrets_sent_for(alice_account):
        assert secret not in page


def test_no_frame_of_a_connection_dropped_mid_auth_holds_the_token(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, no_retries: None
) -> None:
    _, error, _ = _send_while_the_server_hangs_up_on_auth(smtp_server)
    secrets = _secrets_sent_for(alice_account)

    frames = list(_frames(error))
    # The walk reaches the frames that sent AUTH.
    assert any(frame.f_code.co_filename.endswith("xoauth2.py") for frame in frames)
    for frame in frames:
        for name, value in frame.f_locals.items():
            shown = repr(value) + str(value)
            where = f"{frame.f_code.co_name}() local {name!r}"
            assert all(secret not in shown for secret in secrets), where


def test_a_token_refused_again_after_its_refresh_raises_token_rejected(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    identity_platform: IdentityPlatform,
) -> None:
    identity_platform.expire_access_tokens(ALICE)
    # Tokens the platform issues from now on are dead on arrival, as a token
    # without the SMTP.Send scope is to Exchange.
    identity_platform.access_token_lifetime = 0

    with pytest.raises(TokenRejected) as caught:
        make_backend(account=ALICE).send_messages(
            [EmailMessage("s", "b", ALICE, ["r@example.org"])]
        )

    assert "alice@outlook.com" in str(caught.value)
    assert "SMTP.Send" in str(caught.value)
    assert [a.success for a in smtp_server.auth_attempts] == [False, False]
    assert smtp_server.sessions == 1  # the retry used the same connection
    assert smtp_server.messages == []


class ChallengingSMTPServer:
    """One SMTP session that refuses XOAUTH2 with ``334 <base64 JSON>`` first.

    Exchange may answer a refused XOAUTH2 token with a 334 carrying a JSON
    error; only the client's empty reply to it brings the final answer. The
    server takes each AUTH's final reply from ``finals`` (a 235 comes without
    the 334) and records the tokens offered and the answers to each 334.
    """

    CHALLENGE = base64.b64encode(
        b'{"status":"401","schemes":"bearer","scope":"SMTP.Send"}'
    )

    def __init__(self, finals: list[str]) -> None:
        self.finals = list(finals)
        self.tokens: list[str] = []
        self.answers: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.host, self.port = self._listener.getsockname()[:2]
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def __enter__(self) -> ChallengingSMTPServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._thread.join(10)
        self._listener.close()

    def _serve(self) -> None:
        connection, _ = self._listener.accept()
        connection.settimeout(10)
        with connection, connection.makefile("rb") as lines:
            connection.sendall(b"220 fake Exchange ready\r\n")
            for line in lines:
                verb, _, argument = line.strip().partition(b" ")
                if verb.upper() == b"EHLO":
                    connection.sendall(b"250-fake\r\n250 AUTH XOAUTH2\r\n")
                elif verb.upper() == b"AUTH":
                    fields = base64.b64decode(argument.split()[1]).split(b"\x01")
                    self.tokens.append(fields[1].decode().removeprefix("auth=Bearer "))
                    final = self.finals.pop(0)
                    if not final.startswith("235"):
                        connection.sendall(b"334 " + self.CHALLENGE + b"\r\n")
                        self.answers.append(lines.readline())
                    connection.sendall(final.encode() + b"\r\n")
                elif verb.upper() == b"QUIT":
                    connection.sendall(b"221 2.0.0 Bye\r\n")
                    return
                else:
                    connection.sendall(b"502 5.5.2 Command not implemented\r\n")


class TokenSource:
    """Credentials handing out a new made-up token each time, as msal would."""

    mailbox = "bob@contoso.com"
    app_id = None

    def __init__(self) -> None:
        self.forced: list[bool] = []

    def token(self, *, force_refresh: bool = False) -> str:
        self.forced.append(force_refresh)
        return f"token-{len(self.forced)}"


REFUSED = "535 5.7.3 Authentication unsuccessful"
ACCEPTED = "235 2.7.0 Authentication successful"


def test_a_334_challenge_is_answered_with_an_empty_line_then_refreshed() -> None:
    credentials = TokenSource()
    with (
        ChallengingSMTPServer([REFUSED, ACCEPTED]) as server,
        smtplib.SMTP(server.host, server.port, timeout=10) as connection,
    ):
        reply = sign_in(connection, credentials)

    assert reply == (235, b"2.7.0 Authentication successful")
    assert credentials.forced == [False, True]
    assert server.tokens == ["token-1", "token-2"]
    assert server.answers == [b"\r\n"]


def test_a_334_challenge_then_535_after_the_refresh_raises_token_rejected() -> None:
    credentials = TokenSource()
    with (
        ChallengingSMTPServer([REFUSED, REFUSED]) as server,
        smtplib.SMTP(server.host, server.port, timeout=10) as connection,
        pytest.raises(TokenRejected, match=r"bob@contoso\.com"),
    ):
        sign_in(connection, credentials)

    assert credentials.forced == [False, True]
    assert server.answers == [b"\r\n", b"\r\n"]


def test_smtp_debug_output_does_not_show_the_auth_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    credentials = TokenSource()
    with (
        ChallengingSMTPServer([ACCEPTED]) as server,
        smtplib.SMTP(server.host, server.port, timeout=10) as connection,
    ):
        connection.set_debuglevel(1)
        sign_in(connection, credentials)

    shown = capsys.readouterr().err
    sasl = xoauth2_response(credentials.mailbox, "token-1")
    assert "AUTH XOAUTH2" in shown  # the exchange is still traced
    assert "token-1" not in shown
    assert base64.b64encode(sasl.encode()).decode() not in shown


class BrokenTokenSource(TokenSource):
    """Credentials whose token lookup fails with an OSError of its own."""

    def token(self, *, force_refresh: bool = False) -> str:
        raise ConnectionRefusedError("token cache on a network share is gone")


def test_a_failure_to_get_a_token_is_not_called_a_lost_smtp_connection() -> None:
    with (
        ChallengingSMTPServer([]) as server,
        smtplib.SMTP(server.host, server.port, timeout=10) as connection,
    ):
        with pytest.raises(ConnectionRefusedError, match="network share"):
            sign_in(connection, BrokenTokenSource())
        # The SMTP session is untouched: no AUTH went out, and it is still open.
        assert connection.sock is not None
        assert connection.noop()[0] == 502
    assert server.tokens == []
