"""Warm sessions: one send_mail() after another reuses the signed-in session.

Each test counts what the SMTP stand-in saw: connections (``sessions``), AUTH
exchanges and messages. Django's own per-call cost is a new connection, TLS
and AUTH every time; a warm one pays for MAIL, RCPT and DATA only.
"""

from __future__ import annotations

import datetime
import smtplib
import threading
import time
from typing import Any

import pytest
from django.core.mail import EmailMessage, send_mail

from django_live_oauth_mail.exceptions import AccountNotFound, SMTPAuthDisabled
from django_live_oauth_mail.identity.accounts import unlink_mailbox
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.sending import engine, sessions
from django_live_oauth_mail.sending.sessions import POOL
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from ..conftest import Linker
from ..mailers import make_backend

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


def test_after_fork_the_child_never_uses_or_quits_the_parents_sessions(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    held = make_backend(account=ALICE)
    held.open()  # a session in use when the process forks
    assert send("parent") == 1  # and one idle in the pool
    parents = held.connection
    assert parents is not None and smtp_server.sessions == 2
    # As seen from a forked child: another pid.
    monkeypatch.setattr(sessions.os, "getpid", lambda: -1)
    monkeypatch.setattr(engine.os, "getpid", lambda: -1)

    assert POOL.take(held.transport, alice_account) is None
    assert held.send_messages([EmailMessage("child", "b", ALICE, ["r@x.org"])]) == 1
    held.close()

    assert smtp_server.sessions == 3  # the child signed in for itself
    assert subjects(smtp_server) == ["parent", "child"]
    assert parents.sock is not None  # never QUIT: the parent still owns it


def test_a_session_that_failed_to_sign_in_again_is_never_lent_out(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["SMTP_RETRIES"] = 0
    assert send("first") == 1
    smtp_server.hang_up_all()
    smtp_server.smtp_auth_disabled.add(ALICE)  # the re-sign-in is refused
    with pytest.raises(SMTPAuthDisabled):
        send("refused")
    smtp_server.smtp_auth_disabled.clear()

    assert send("after") == 1  # on a new session, not the half-open one
    assert subjects(smtp_server) == ["first", "after"]
    assert smtp_server.sessions == 3


def test_throttling_on_a_rested_sessions_reconnect_is_waited_out(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    slept: list[float] = []
    monkeypatch.setattr(engine.time, "sleep", slept.append)
    live_settings["SMTP_RETRY_BACKOFF"] = 2
    assert send("first") == 1
    smtp_server.hang_up_all()
    smtp_server.fail_next(stage="connect", reply="432 4.3.2 STOREDRV.ClientSubmit")

    assert send("second") == 1
    assert subjects(smtp_server) == ["first", "second"]
    assert slept == [2]  # handled as Throttled, not as a plain 4xx


def test_a_failing_recipients_refused_receiver_does_not_resend_the_message(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    from django_live_oauth_mail import signals

    def broken(**kwargs: Any) -> None:
        raise ConnectionResetError("the receiver's own network call failed")

    signals.recipients_refused.connect(broken)
    smtp_server.fail_next(stage="rcpt", reply="550 5.1.1 User unknown")
    try:
        email = EmailMessage("s", "b", ALICE, ["gone@x.org", "ok@x.org"])
        assert email.send() == 1
    finally:
        signals.recipients_refused.disconnect(broken)
    assert subjects(smtp_server) == ["s"]


def test_a_fixed_mailbox_that_is_not_linked_fails_silently_when_asked(
    smtp_server: XOAuth2SMTPServer,
) -> None:
    email = EmailMessage("s", "b", ALICE, ["r@x.org"])
    assert make_backend(account=ALICE, fail_silently=True).send_messages([email]) == 0
    with pytest.raises(AccountNotFound):
        make_backend(account=ALICE).send_messages([email])
    assert smtp_server.sessions == 0


def test_idle_sessions_are_closed_on_time_even_when_nothing_else_is_sent(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
) -> None:
    live_settings["SESSION_IDLE_TIMEOUT"] = 0
    assert send("first") == 1
    assert smtp_server.open_connections == 1  # kept warm
    for _ in range(50):  # the pool's timer runs a second later
        if smtp_server.open_connections == 0:
            break
        time.sleep(0.1)
    assert smtp_server.open_connections == 0


def test_a_warm_session_never_serves_a_sender_who_does_not_own_it(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer, other_user: Any
) -> None:
    from django_live_oauth_mail import sending_as
    from django_live_oauth_mail.exceptions import SenderNotAllowed

    assert send("owner") == 1  # Alice's session is now warm in the pool
    with sending_as(other_user), pytest.raises(SenderNotAllowed):
        send("not the owner")
    assert subjects(smtp_server) == ["owner"]
    assert len(smtp_server.auth_attempts) == 1


def test_open_never_signs_in_as_a_mailbox_the_acting_user_does_not_own(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    other_user: Any,
    settings: Any,
) -> None:
    from django_live_oauth_mail import sending_as
    from django_live_oauth_mail.exceptions import SenderNotAllowed

    settings.DEFAULT_FROM_EMAIL = ALICE  # a person's mailbox, not shared
    with sending_as(other_user), pytest.raises(SenderNotAllowed):
        make_backend().open()
    assert smtp_server.sessions == 0
