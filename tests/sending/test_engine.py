"""The sending engine on its own: sessions, retries and the move to Graph.

Fast and offline: the transports here are scripted in memory, so each test
says exactly which failure the engine meets and asserts what it then did
(sessions opened, closed, lent back; pauses taken; what was stored). The
same engine against the real stand-ins is in test_smtp_retries.py,
test_sessions.py and test_graph_backend.py.
"""

from __future__ import annotations

import dataclasses
import os
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.mail import EmailMessage

from django_live_oauth_mail.exceptions import SMTPAuthDisabled, Throttled
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.sending import engine
from django_live_oauth_mail.sending.engine import Sender
from django_live_oauth_mail.sending.sessions import POOL

pytestmark = pytest.mark.django_db


@dataclasses.dataclass(eq=False)
class Script:
    """What the far end does: each list is consumed one entry per call."""

    opens: list[BaseException | None] = dataclasses.field(default_factory=list)
    sends: list[BaseException | None] = dataclasses.field(default_factory=list)
    opened: list[FakeSession] = dataclasses.field(default_factory=list)
    sent: list[tuple[int, str]] = dataclasses.field(default_factory=list)


class FakeSession:
    def __init__(self, account: MailAccount, transport: FakeTransport) -> None:
        self.account, self._transport = account, transport
        self.rested, self.pid, self.expires_at = False, os.getpid(), None
        self.closed = False

    @property
    def transport(self) -> FakeTransport:
        return self._transport

    def send(self, message: EmailMessage) -> bool:
        script = self._transport.script
        failure = script.sends.pop(0) if script.sends else None
        if failure is not None:
            raise failure
        script.sent.append((id(self), str(message.subject)))
        return True

    def close(self) -> None:
        self.closed = True


@dataclasses.dataclass(frozen=True)
class FakeTransport:
    name: str
    script: Script = dataclasses.field(compare=False, hash=False)

    def open(self, account: MailAccount) -> FakeSession:
        failure = self.script.opens.pop(0) if self.script.opens else None
        if failure is not None:
            raise failure
        session = FakeSession(account, self)
        self.script.opened.append(session)
        return session


@pytest.fixture(autouse=True)
def no_sleeping(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    slept: list[float] = []
    monkeypatch.setattr(engine.time, "sleep", slept.append)
    return slept


@pytest.fixture(autouse=True)
def empty_pool() -> Iterator[None]:
    POOL.close_all()
    yield
    POOL.close_all()


@pytest.fixture
def mailbox(django_user_model: Any) -> MailAccount:
    owner = django_user_model.objects.create_user("dana", "dana@example.com", "pw")
    return MailAccount.objects.create(user=owner, email="dana@contoso.com")


def sender_for(*transports: FakeTransport, wait: float = 10.0) -> Sender:
    by_protocol = {t.name: t for t in transports}
    return Sender(lambda a: by_protocol[a.protocol], max_throttle_wait=wait)


def message(subject: str = "Hi") -> EmailMessage:
    return EmailMessage(subject, "Body", "dana@contoso.com", ["to@example.org"])


def test_a_dropped_connection_is_sent_again_on_a_new_session(
    mailbox: MailAccount, no_sleeping: list[float]
) -> None:
    script = Script(sends=[smtplib.SMTPServerDisconnected("gone")])
    sender = sender_for(FakeTransport("smtp", script))
    assert sender.send(mailbox, message()) is True
    first, second = script.opened
    assert first.closed and not second.closed  # the broken one never goes back
    assert script.sent == [(id(second), "Hi")]
    assert len(no_sleeping) == 1


def test_a_lasting_refusal_is_raised_at_once_and_the_session_kept(
    mailbox: MailAccount, no_sleeping: list[float]
) -> None:
    refusal = smtplib.SMTPDataError(550, b"5.7.1 no")
    script = Script(sends=[refusal])
    sender = sender_for(FakeTransport("smtp", script))
    with pytest.raises(smtplib.SMTPDataError):
        sender.send(mailbox, message())
    assert no_sleeping == []
    [session] = script.opened
    assert not session.closed  # RSET leaves it usable: the next message uses it
    assert sender.send(mailbox, message("Next")) is True
    assert script.sent == [(id(session), "Next")]


def test_temporary_failures_stop_after_the_configured_retries(
    mailbox: MailAccount, no_sleeping: list[float], settings: Any
) -> None:
    settings.LIVE_OAUTH_MAIL = {**settings.LIVE_OAUTH_MAIL, "SMTP_RETRIES": 2}
    script = Script(sends=[smtplib.SMTPServerDisconnected("gone")] * 3)
    with pytest.raises(smtplib.SMTPServerDisconnected):
        sender_for(FakeTransport("smtp", script)).send(mailbox, message())
    assert len(script.opened) == 3 and all(s.closed for s in script.opened)
    assert len(no_sleeping) == 2 and no_sleeping[1] == 2 * no_sleeping[0]


def test_a_throttle_beyond_the_wait_allowed_is_raised_not_slept_on(
    mailbox: MailAccount, no_sleeping: list[float]
) -> None:
    throttled = Throttled("slow down", mailbox=mailbox.email, retry_after=60.0)
    script = Script(sends=[throttled])
    # The worker's engine waits for no throttle: it defers instead.
    with pytest.raises(Throttled):
        sender_for(FakeTransport("smtp", script), wait=0.0).send(mailbox, message())
    assert no_sleeping == []


def test_a_short_throttle_is_waited_out_inline(
    mailbox: MailAccount, no_sleeping: list[float]
) -> None:
    throttled = Throttled("slow down", mailbox=mailbox.email, retry_after=3.0)
    script = Script(sends=[throttled])
    assert sender_for(FakeTransport("smtp", script), wait=10.0).send(mailbox, message())
    assert no_sleeping[0] >= 3.0
    assert len(script.sent) == 1


def test_released_sessions_go_back_to_the_pool_and_are_lent_again(
    mailbox: MailAccount,
) -> None:
    script = Script()
    transport = FakeTransport("smtp", script)
    first = sender_for(transport)
    first.send(mailbox, message())
    first.release_all()
    second = sender_for(transport)
    second.send(mailbox, message("Again"))
    assert len(script.opened) == 1  # lent out again, not signed in again
    assert [subject for _, subject in script.sent] == ["Hi", "Again"]


def test_without_session_reuse_a_released_session_is_closed(
    mailbox: MailAccount, settings: Any
) -> None:
    settings.LIVE_OAUTH_MAIL = {**settings.LIVE_OAUTH_MAIL, "SESSION_REUSE": False}
    script = Script()
    sender = sender_for(FakeTransport("smtp", script))
    sender.send(mailbox, message())
    sender.release_all()
    assert [s.closed for s in script.opened] == [True]


def test_a_session_from_before_a_fork_is_never_used(
    mailbox: MailAccount, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script()
    sender = sender_for(FakeTransport("smtp", script))
    sender.session(mailbox)
    monkeypatch.setattr(engine.os, "getpid", lambda: -1)
    sender.send(mailbox, message())
    assert len(script.opened) == 2
    assert script.sent == [(id(script.opened[1]), "Hi")]


def test_smtp_auth_switched_off_moves_an_auto_mailbox_to_graph(
    mailbox: MailAccount, settings: Any
) -> None:
    settings.LIVE_OAUTH_MAIL = {**settings.LIVE_OAUTH_MAIL, "TRANSPORT": "auto"}
    off = SMTPAuthDisabled(
        "off", mailbox=mailbox.email, smtp_code=535, smtp_error=b"5.7.139"
    )
    smtp, graph = Script(opens=[off]), Script()
    sender = sender_for(FakeTransport("smtp", smtp), FakeTransport("graph", graph))
    assert sender.send(mailbox, message()) is True
    assert smtp.sent == [] and len(graph.sent) == 1
    assert MailAccount.objects.get(pk=mailbox.pk).transport == "graph"


def test_a_mailbox_set_to_smtp_is_never_moved(
    mailbox: MailAccount, settings: Any
) -> None:
    settings.LIVE_OAUTH_MAIL = {**settings.LIVE_OAUTH_MAIL, "TRANSPORT": "auto"}
    MailAccount.objects.filter(pk=mailbox.pk).update(transport="smtp")
    mailbox.refresh_from_db()
    off = SMTPAuthDisabled(
        "off", mailbox=mailbox.email, smtp_code=535, smtp_error=b"5.7.139"
    )
    graph = Script()
    sender = sender_for(
        FakeTransport("smtp", Script(opens=[off])), FakeTransport("graph", graph)
    )
    with pytest.raises(SMTPAuthDisabled):
        sender.send(mailbox, message())
    assert graph.opened == []
    assert MailAccount.objects.get(pk=mailbox.pk).transport == "smtp"
