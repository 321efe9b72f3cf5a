"""The recording backend refuses and records as the real one sends, with no sockets.

Each refusal is checked against the real backend's, which sends through the
stand-ins: same exception, same message, same count.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from django.core import mail
from django.core.mail import EmailMessage

from django_live_oauth_mail import crypto, sending_as
from django_live_oauth_mail.exceptions import (
    AccountNotFound,
    LiveOAuthMailError,
    ReconnectRequired,
    SenderNotAllowed,
)
from django_live_oauth_mail.identity.authority import PERSONAL_TENANT_ID
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import XOAuth2SMTPServer
from django_live_oauth_mail.testing.recording import RecordingEmailBackend, link_mailbox

from ..mailers import USES_MAILERS, make_backend
from ..standins import IdentityPlatform

RECORDING = "django_live_oauth_mail.testing.recording.RecordingEmailBackend"


@pytest.fixture
def no_network(
    monkeypatch: pytest.MonkeyPatch,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
) -> Iterator[None]:
    """Fail any outgoing connection; afterwards, the stand-ins saw nothing."""

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the recording backend opened a socket")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    yield
    monkeypatch.undo()
    assert identity_platform.requests == []
    assert smtp_server.sessions == 0


def send(backend: Any, *from_emails: str) -> int:
    messages = [EmailMessage("Hi", "Body", f, ["x@example.org"]) for f in from_emails]
    return int(backend.send_messages(messages))


@pytest.fixture
def ann(user: Any, db: None) -> MailAccount:
    return link_mailbox(user, "Ann@Contoso.com")


@pytest.fixture
def zed(other_user: Any, db: None) -> MailAccount:
    return link_mailbox(other_user, "zed@contoso.com")


def test_message_from_the_users_own_mailbox_is_recorded_with_it(
    no_network: None, user: Any, ann: MailAccount
) -> None:
    with sending_as(user):
        sent = send(RecordingEmailBackend(), "Ann <ann@contoso.com>")
    assert sent == 1
    [recorded] = mail.outbox
    assert recorded.mail_account == ann
    assert recorded.to == ["x@example.org"]
    # The Message-ID every attempt would have sent.
    assert recorded.extra_headers["Message-ID"].endswith(">")
    assert MailAccount.objects.get(pk=ann.pk).last_used_at is not None


def test_recorded_per_mailbox_in_one_call(
    no_network: None, user: Any, ann: MailAccount
) -> None:
    shared = link_mailbox(user, "noreply@contoso.com", shared=True)
    with sending_as(user):
        sent = send(
            RecordingEmailBackend(),
            "ann@contoso.com",
            "noreply@contoso.com",
            "ann@contoso.com",
        )
    assert sent == 3
    assert [m.mail_account for m in mail.outbox] == [ann, ann, shared]


@pytest.mark.parametrize(
    ("sender", "error"),
    [("zed@contoso.com", SenderNotAllowed), ("eve@contoso.com", AccountNotFound)],
)
def test_a_sender_the_user_may_not_use_is_refused_as_in_production(
    user: Any,
    ann: MailAccount,
    zed: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    sender: str,
    error: type[LiveOAuthMailError],
) -> None:
    with sending_as(user):
        with pytest.raises(error) as real:
            send(make_backend(), "ann@contoso.com", sender)
        with pytest.raises(error) as recorded:
            send(RecordingEmailBackend(), "ann@contoso.com", sender)
    assert str(recorded.value) == str(real.value)
    assert recorded.value.mailbox == real.value.mailbox == sender
    # Refused before any mailbox signs in: neither sent its own message either.
    assert mail.outbox == []
    assert smtp_server.messages == []


def test_fail_silently_skips_the_refused_message_as_in_production(
    user: Any,
    alice_account: MailAccount,
    zed: MailAccount,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    with sending_as(user):
        real = send(
            make_backend(fail_silently=True), "alice@outlook.com", "zed@contoso.com"
        )
        recorded = send(
            RecordingEmailBackend(fail_silently=True),
            "alice@outlook.com",
            "zed@contoso.com",
        )
    assert real == recorded == 1
    assert [m.mail_from for m in smtp_server.messages] == ["alice@outlook.com"]
    assert [m.from_email for m in mail.outbox] == ["alice@outlook.com"]


def test_no_acting_user_may_send_only_from_a_shared_mailbox(
    no_network: None, user: Any, ann: MailAccount
) -> None:
    noreply = link_mailbox(user, "noreply@contoso.com", shared=True)
    backend = RecordingEmailBackend()
    with pytest.raises(SenderNotAllowed):
        send(backend, "ann@contoso.com")
    assert send(backend, "noreply@contoso.com") == 1
    assert [m.mail_account for m in mail.outbox] == [noreply]


def test_a_message_without_recipients_is_not_recorded(
    no_network: None, user: Any, ann: MailAccount
) -> None:
    with sending_as(user):
        sent = RecordingEmailBackend().send_messages(
            [EmailMessage("Hi", "Body", "ann@contoso.com", [])]
        )
    assert sent == 0
    assert mail.outbox == []


def test_works_as_the_configured_backend_with_graph_mailboxes(
    no_network: None, settings: Any, user: Any, live_settings: dict[str, Any]
) -> None:
    if USES_MAILERS:
        settings.MAILERS = {"default": {"BACKEND": RECORDING}}
    else:
        settings.EMAIL_BACKEND = RECORDING
    settings.LIVE_OAUTH_MAIL = {**live_settings, "TRANSPORT": "auto"}
    account = link_mailbox(user, "ann@contoso.com", transport="graph")
    with sending_as(user):
        assert mail.send_mail("Hi", "Body", "ann@contoso.com", ["x@example.org"]) == 1
    assert account.protocol == "graph"
    [recorded] = mail.outbox
    assert recorded.mail_account == account
    # Django 6.1's locmem backend records the mailer's alias too.
    assert recorded.sent_using == ("default" if USES_MAILERS else None)


def test_the_factory_stores_a_link_as_the_connect_flow_does(
    link: Any, user: Any, other_user: Any
) -> None:
    real = link(user, "alice@outlook.com")
    made = link_mailbox(other_user, "ALICE@outlook.com", kind="personal")
    fields = ["email", "kind", "tenant_id", "status", "shared", "transport"]
    assert [getattr(made, f) for f in fields] == [getattr(real, f) for f in fields]
    assert made.tenant_id == PERSONAL_TENANT_ID
    assert made.home_account_id.endswith(f".{PERSONAL_TENANT_ID}")
    # Encrypted as a real cache is, and holding no token.
    assert "{}" not in made.encrypted_token_cache
    assert crypto.decrypt(made.encrypted_token_cache) == "{}"


def test_the_real_backend_asks_to_link_a_factory_mailbox_again(
    user: Any, smtp_server: XOAuth2SMTPServer
) -> None:
    link_mailbox(user, "ann@contoso.com")
    with sending_as(user), pytest.raises(ReconnectRequired) as error:
        send(make_backend(), "ann@contoso.com")
    assert error.value.mailbox == "ann@contoso.com"
    assert smtp_server.messages == []
