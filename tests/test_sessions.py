"""Warm sessions: one send_mail() after another reuses the signed-in session.

Each test counts what the SMTP stand-in saw: connections (``sessions``), AUTH
exchanges and messages. Django's own per-call cost is a new connection, TLS
and AUTH every time; a warm one pays for MAIL, RCPT and DATA only.
"""

from __future__ import annotations

import datetime
import smtplib
import threading
from typing import Any

import pytest
from django.core.mail import EmailMessage, send_mail

from django_live_oauth_mail import sessions
from django_live_oauth_mail.accounts import unlink_mailbox
from django_live_oauth_mail.exceptions import AccountNotFound
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.sessions import POOL
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .conftest import Linker
from .mailers import make_backend

pytestmark = [
    pytest.mark.django_db(transaction=True),  # threads see the mailbox rows
    pytest.mark.usefixtures("acting_user"),
]

ALICE = "alice@outlook.com"


def send(subject: str = "s") -> int:
    return send_mail(subject, "b", ALICE, ["r@example.org"])


def subjects(server: XOAuth2SMTPServer) -> list[str]:
    return [m.subject or "" for m in server.messages]


def test_consecutive_sends_share_one_signed_in_session(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    assert [send(f"m{i}") for i in range(4)] == [1] * 4

    assert subjects(smtp_server) == ["m0", "m1", "m2", "m3"]
    assert smtp_server.sessions == 1
    assert len(smtp_server.auth_attempts) == 1


def test_with_reuse_off_every_send_signs_in(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["SESSION_REUSE"] = False
    assert [send(f"m{i}") for i in range(3)] == [1] * 3
    assert smtp_server.sessions == 3
    assert len(smtp_server.auth_attempts) == 3


@pytest.mark.parametrize("how", ["hang up", "disconnect at MAIL", "421 at MAIL"])
def test_a_session_the_server_closed_while_idle_is_replaced_without_duplicates(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
    how: str,
) -> None:
    live_settings["SMTP_RETRIES"] = 0  # the reconnect is not a retry
    assert send("first") == 1
    if how == "hang up":
        assert smtp_server.hang_up_all() == 1
    elif how == "disconnect at MAIL":
        smtp_server.fail_next(stage="mail", disconnect=True)
    else:
        smtp_server.fail_next(stage="mail", reply="421 4.4.2 idle too long")

    assert send("second") == 1

    assert subjects(smtp_server) == ["first", "second"]
    assert smtp_server.sessions == 2


def test_a_session_dropped_twice_in_a_row_fails_as_any_dropped_connection(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["SMTP_RETRIES"] = 0
    assert send("first") == 1
    smtp_server.fail_next(2, stage="mail", disconnect=True)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        send("second")
    assert subjects(smtp_server) == ["first"]


def test_threads_sharing_a_mailbox_never_share_a_session(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, user: Any
) -> None:
    from django_live_oauth_mail import sending_as

    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker(n: int) -> None:
        try:
            with sending_as(user):
                start.wait(10)
                for i in range(5):
                    send(f"t{n}-{i}")
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert errors == []
    assert sorted(subjects(smtp_server)) == sorted(
        f"t{n}-{i}" for n in range(4) for i in range(5)
    )
    # Each session served one thread at a time (two at once would have broken
    # the SMTP dialogue above), and was kept for later sends: far fewer
    # sessions than messages, though the pool keeps only two idle ones.
    assert smtp_server.sessions < 20
    assert len(smtp_server.auth_attempts) == smtp_server.sessions


def test_a_relinked_mailbox_signs_in_again(
    alice_account: MailAccount,
    link: Linker,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    assert send("before") == 1
    link(user, ALICE)  # the same mailbox, linked again: new tokens
    assert send("after") == 1
    assert smtp_server.sessions == 2
    assert len(smtp_server.auth_attempts) == 2


def test_a_disconnected_mailbox_does_not_send_through_its_old_session(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    assert send("before") == 1
    unlink_mailbox(alice_account)
    with pytest.raises(AccountNotFound):
        send("after")
    assert subjects(smtp_server) == ["before"]


def test_a_session_whose_token_is_about_to_expire_is_not_reused(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert send("first") == 1
    # The token has an hour left; make "about to expire" mean "within 2 hours".
    monkeypatch.setattr(sessions, "TOKEN_MARGIN", datetime.timedelta(hours=2))
    assert send("second") == 1
    assert smtp_server.sessions == 2


def test_an_idle_session_past_the_timeout_is_closed_not_reused(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    assert send("first") == 1
    live_settings["SESSION_IDLE_TIMEOUT"] = 0
    assert send("second") == 1
    assert smtp_server.sessions == 2


def test_at_most_two_idle_sessions_per_mailbox(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    backends = [make_backend(account=ALICE) for _ in range(4)]
    for backend in backends:
        backend.open()  # four sessions in use at once
    for backend in backends:
        backend.close()  # two are kept, two closed
    assert smtp_server.sessions == 4

    for backend in backends[:3]:
        backend.open()  # two come from the pool, one is new
    assert smtp_server.sessions == 5
    for backend in backends[:3]:
        backend.close()


def test_too_many_connections_drops_the_spare_sessions(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["SMTP_RETRY_BACKOFF"] = 0
    held, spare = make_backend(account=ALICE), make_backend(account=ALICE)
    held.open()
    spare.open()
    spare.close()  # idle in the pool
    smtp_server.fail_next(
        stage="mail", reply="432 4.3.2 STOREDRV.ClientSubmit; sender thread limit"
    )

    held.send_messages([EmailMessage("s", "b", ALICE, ["r@example.org"])])
    held.close()

    # The refused session and the spare were closed; the retry opened a third.
    assert smtp_server.sessions == 3
    assert subjects(smtp_server) == ["s"]
    assert make_backend(account=ALICE).open() is True
    assert smtp_server.sessions == 3  # the retry's session, kept warm


def test_after_fork_the_child_forgets_the_parents_sessions_unclosed(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert send("parent") == 1
    backend = make_backend()
    [(key, idle)] = list(POOL._idle.items())  # the parent's warm session
    [(_, parents)] = idle
    # As seen from a forked child: another pid.
    monkeypatch.setattr(sessions.os, "getpid", lambda: -1)

    assert POOL.take(key[0], alice_account) is None
    assert parents.connection is not None  # not QUIT: the parent still owns it
    assert backend.send_messages([EmailMessage("child", "b", ALICE, ["r@x.org"])])
    assert smtp_server.sessions == 2
