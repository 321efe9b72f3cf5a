"""A provider that exists only here plugs in at the transport seam.

Its mailboxes name their transport ``"relay"``; the transport is registered in
:mod:`django_live_oauth_mail.transports.registry` and nowhere else. The inline
backend, the sending engine, routing and the queue then send its mail, warm
sessions, retries and ownership rules included, without knowing it exists.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.test import TestCase

from django_live_oauth_mail import sending_as
from django_live_oauth_mail.backends import EmailBackend, QueuedEmailBackend
from django_live_oauth_mail.exceptions import ConfigurationError, SenderNotAllowed
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.queue.tasks import sending_task
from django_live_oauth_mail.sending.sessions import POOL
from django_live_oauth_mail.transports import registry
from django_live_oauth_mail.transports.base import SMTPOptions

pytestmark = pytest.mark.django_db

MAILBOX = "carol@relay.test"


@dataclasses.dataclass
class Relay:
    """The provider's far end: what it was asked to deliver, and how."""

    delivered: list[tuple[str, list[str], bytes]] = dataclasses.field(
        default_factory=list
    )
    sign_ins: list[str] = dataclasses.field(default_factory=list)
    drops: int = 0  # the next N sends find the connection gone


RELAY = Relay()


class RelaySession:
    def __init__(self, account: MailAccount, transport: RelayTransport) -> None:
        self.account, self._transport = account, transport
        self.rested, self.pid, self.expires_at = False, os.getpid(), None
        RELAY.sign_ins.append(account.email)

    @property
    def transport(self) -> RelayTransport:
        return self._transport

    def send(self, message: EmailMessage) -> bool:
        if RELAY.drops:
            RELAY.drops -= 1
            raise ConnectionResetError("the relay hung up")
        recipients = message.recipients()
        if not recipients:
            return False
        RELAY.delivered.append(
            (self.account.email, recipients, message.message().as_bytes())
        )
        return True

    def close(self) -> None:
        pass


@dataclasses.dataclass(frozen=True)
class RelayTransport:
    def open(self, account: MailAccount) -> RelaySession:
        return RelaySession(account, self)


def relay_transport(options: SMTPOptions) -> RelayTransport:
    return RelayTransport()


@pytest.fixture(autouse=True)
def relay_provider() -> Iterator[Relay]:
    global RELAY
    RELAY = Relay()
    registry.register("relay", relay_transport)
    POOL.close_all()
    yield RELAY
    POOL.close_all()
    registry.unregister("relay")


@pytest.fixture
def carol(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("carol", "carol@example.com", "pw")


@pytest.fixture
def relay_mailbox(carol: Any) -> MailAccount:
    return MailAccount.objects.create(user=carol, email=MAILBOX, transport="relay")


def test_an_inline_send_goes_through_the_registered_transport(
    relay_mailbox: MailAccount, carol: Any
) -> None:
    message = EmailMessage("Hi", "Body", MAILBOX, ["to@example.org"], bcc=["b@x.org"])
    with sending_as(carol):
        assert EmailBackend().send_messages([message]) == 1
    [(mailbox, recipients, raw)] = RELAY.delivered
    assert (mailbox, recipients) == (MAILBOX, ["to@example.org", "b@x.org"])
    assert b"Subject: Hi" in raw
    assert relay_mailbox.protocol == "relay"


def test_its_sessions_stay_warm_between_sends(
    relay_mailbox: MailAccount, carol: Any
) -> None:
    with sending_as(carol):
        for n in range(3):
            # A new backend each time, as send_mail() makes one per call.
            EmailBackend().send_messages(
                [EmailMessage(f"#{n}", "Body", MAILBOX, ["to@example.org"])]
            )
    assert len(RELAY.delivered) == 3
    assert RELAY.sign_ins == [MAILBOX]  # one session, lent out again


def test_a_dropped_connection_is_retried_once_on_a_new_session(
    relay_mailbox: MailAccount, carol: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from django_live_oauth_mail.sending import engine

    monkeypatch.setattr(engine.time, "sleep", lambda seconds: None)
    RELAY.drops = 1
    with sending_as(carol):
        sent = EmailBackend().send_messages(
            [EmailMessage("Hi", "Body", MAILBOX, ["to@example.org"])]
        )
    assert sent == 1
    assert len(RELAY.delivered) == 1
    assert RELAY.sign_ins == [MAILBOX, MAILBOX]


def test_ownership_rules_hold_for_its_mailboxes(
    relay_mailbox: MailAccount, django_user_model: Any
) -> None:
    mallory = django_user_model.objects.create_user("mallory", "m@example.com", "pw")
    with sending_as(mallory), pytest.raises(SenderNotAllowed):
        EmailBackend().send_messages(
            [EmailMessage("Hi", "Body", MAILBOX, ["to@example.org"])]
        )
    assert RELAY.delivered == []
    assert RELAY.sign_ins == []


def _run_queued_tasks() -> int:
    backend = sending_task().get_backend()
    ran = 0
    while backend.results and ran < 10:
        result = backend.results.pop(0)
        with TestCase.captureOnCommitCallbacks(execute=True):
            result.task.call(*result.args)
        ran += 1
    return ran


def test_a_queued_send_is_delivered_by_the_worker_through_it(
    relay_mailbox: MailAccount, carol: Any
) -> None:
    sending_task().get_backend().clear()
    with TestCase.captureOnCommitCallbacks(execute=True), sending_as(carol):
        assert (
            QueuedEmailBackend().send_messages(
                [EmailMessage("Queued", "Body", MAILBOX, ["to@example.org"])]
            )
            == 1
        )
    assert RELAY.delivered == []  # nothing is sent in the request
    assert _run_queued_tasks() == 1
    [(mailbox, recipients, raw)] = RELAY.delivered
    assert (mailbox, recipients) == (MAILBOX, ["to@example.org"])
    assert b"Subject: Queued" in raw
    row = OutboundMessage.objects.get()
    assert row.status == OutboundMessage.Status.SENT
    assert row.account_id == relay_mailbox.pk


def test_an_unregistered_transport_is_a_configuration_error_naming_it(
    relay_mailbox: MailAccount, carol: Any
) -> None:
    registry.unregister("relay")
    with (
        sending_as(carol),
        pytest.raises(ConfigurationError, match=r"'relay'.*registered: graph, smtp"),
    ):
        EmailBackend().send_messages(
            [EmailMessage("Hi", "Body", MAILBOX, ["to@example.org"])]
        )
    assert RELAY.delivered == []


def test_the_engine_routing_and_queue_do_not_name_any_transport_for_it() -> None:
    # The seam: adding "relay" touched only the registry (at run time). The
    # modules above the transports choose by the mailbox's protocol.
    import django_live_oauth_mail as package

    root = os.path.dirname(package.__file__)
    for folder in ("sending", "ownership", "queue"):
        for name in os.listdir(os.path.join(root, folder)):
            if name.endswith(".py"):
                with open(os.path.join(root, folder, name)) as source:
                    text = source.read()
                assert "GraphTransport" not in text, f"{folder}/{name}"
                assert "SMTPTransport" not in text, f"{folder}/{name}"
