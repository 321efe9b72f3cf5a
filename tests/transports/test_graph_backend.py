"""Sending through Microsoft Graph: what the Graph stand-in received.

The stand-in checks each token's audience and permissions as Graph does,
parses the MIME, and records into the same inbox as the SMTP stand-in.
"""

from __future__ import annotations

import hashlib
import os
import threading
from typing import Any

import pytest
from django import db
from django.core import mail
from django.core.mail import EmailMultiAlternatives
from django.db import transaction

from django_live_oauth_mail import sending_as
from django_live_oauth_mail.exceptions import (
    ConsentRequired,
    GraphError,
    MessageMayHaveBeenSent,
    SendAsDenied,
    SenderNotAllowed,
    Throttled,
)
from django_live_oauth_mail.identity.tokens import get_access_token
from django_live_oauth_mail.models import MailAccount, SendAsAddress
from django_live_oauth_mail.testing import FakeGraphAPI, XOAuth2SMTPServer

from ..conftest import Linker
from ..identity.test_concurrency import require_vendor
from ..standins import IdentityPlatform

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("acting_user"),
]

ALICE, BOB = "alice@outlook.com", "bob@contoso.com"


@pytest.fixture
def graph(live_settings: dict[str, Any]) -> dict[str, Any]:
    live_settings["TRANSPORT"] = "graph"
    return live_settings


@pytest.fixture
def auto(live_settings: dict[str, Any]) -> dict[str, Any]:
    live_settings["TRANSPORT"] = "auto"
    return live_settings


def full_message(sender: str) -> EmailMultiAlternatives:
    message = EmailMultiAlternatives(
        "Quarterly report",
        "Plain text body.",
        sender,
        ["to@example.org"],
        cc=["cc@example.org"],
        bcc=["hidden@example.org"],
        headers={"X-Report": "Q3"},
    )
    message.attach_alternative("<p>HTML body.</p>", "text/html")
    message.attach("report.csv", "a,b\n1,2\n", "text/csv")
    return message


def sendmail_requests(server: FakeGraphAPI) -> list[tuple[str, str]]:
    return [r for r in server.requests if r[1].endswith("/sendMail")]


@pytest.mark.parametrize("mailbox", [ALICE, BOB], ids=["personal", "work"])
@pytest.mark.usefixtures("graph")
def test_a_full_message_arrives_through_graph(
    link: Linker,
    user: Any,
    graph_server: FakeGraphAPI,
    smtp_server: XOAuth2SMTPServer,
    mailbox: str,
) -> None:
    link(user, mailbox)
    message = full_message(mailbox)

    assert message.send() == 1

    (received,) = graph_server.messages
    assert received.authenticated_as == mailbox
    assert received.mechanism == "graph"
    assert sorted(received.rcpt_tos) == [
        "cc@example.org",
        "hidden@example.org",
        "to@example.org",
    ]
    parsed = received.message
    # The bcc recipient got it, and nobody can see that they did.
    assert "Bcc" not in parsed
    assert b"hidden@example.org" not in received.data
    assert parsed["Cc"] == "cc@example.org"
    assert parsed["X-Report"] == "Q3"
    assert parsed["Message-ID"]
    html = parsed.get_body(preferencelist=("html",))
    assert html is not None and "<p>HTML body.</p>" in html.get_content()
    assert received.text.strip() == "Plain text body."
    assert received.attachments == [("report.csv", b"a,b\n1,2\n")]
    # Through Graph only, and saved to Sent Items as SMTP submission would be.
    assert smtp_server.auth_attempts == []
    assert len(graph_server.sent_items[mailbox]) == 1
    # The dev inbox shows mail from both transports.
    assert [m.mechanism for m in smtp_server.messages] == ["graph"]


@pytest.mark.usefixtures("graph")
def test_a_message_is_sent_as_django_rendered_it(
    link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    link(user, BOB)
    message = mail.EmailMessage(
        "Hello", "Body", BOB, ["to@example.org"], headers={"Message-ID": "<fixed@x>"}
    )

    message.send()

    (received,) = graph_server.messages
    assert received.message["Message-ID"] == "<fixed@x>"
    assert received.subject == "Hello"


@pytest.mark.usefixtures("auto")
def test_auto_moves_a_mailbox_whose_smtp_auth_is_off_to_graph(
    link: Linker,
    user: Any,
    graph_server: FakeGraphAPI,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    account = link(user, BOB)
    smtp_server.smtp_auth_disabled.add(BOB)

    assert mail.send_mail("First", "Body", BOB, ["to@example.org"]) == 1

    # SMTP AUTH refused the sign-in; the message went through Graph, once.
    assert [a.reply[:9] for a in smtp_server.auth_attempts] == ["535 5.7.1"]
    assert [m.subject for m in graph_server.messages] == ["First"]
    assert len(sendmail_requests(graph_server)) == 1
    account.refresh_from_db()
    assert account.transport == "graph"

    smtp_server.reset()
    assert mail.send_mail("Second", "Body", BOB, ["to@example.org"]) == 1

    # The choice is remembered: no SMTP AUTH attempt, not even a connection.
    assert smtp_server.auth_attempts == []
    assert smtp_server.sessions == 0
    assert [m.subject for m in graph_server.messages] == ["First", "Second"]


@pytest.mark.usefixtures("auto")
def test_auto_leaves_a_mailbox_set_to_smtp_alone(
    link: Linker,
    user: Any,
    graph_server: FakeGraphAPI,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    account = link(user, BOB)
    MailAccount.objects.filter(pk=account.pk).update(transport="smtp")
    smtp_server.smtp_auth_disabled.add(BOB)

    with pytest.raises(Exception, match=r"5\.7\.139"):
        mail.send_mail("First", "Body", BOB, ["to@example.org"])

    assert graph_server.requests == []
    account.refresh_from_db()
    assert account.transport == "smtp"


@pytest.mark.usefixtures("graph")
def test_a_429_is_waited_out_and_the_message_delivered_once(
    link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    link(user, BOB)
    graph_server.fail_next(status=429, headers={"Retry-After": "1"})

    assert mail.send_mail("Once", "Body", BOB, ["to@example.org"]) == 1

    assert len(sendmail_requests(graph_server)) == 2
    assert [m.subject for m in graph_server.messages] == ["Once"]


@pytest.mark.usefixtures("graph")
def test_throttling_longer_than_the_inline_wait_raises_throttled(
    graph: dict[str, Any], link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    graph["MAX_INLINE_WAIT"] = 1
    link(user, BOB)
    graph_server.fail_next(status=429, headers={"Retry-After": "30"})

    with pytest.raises(Throttled) as caught:
        mail.send_mail("Later", "Body", BOB, ["to@example.org"])

    assert caught.value.retry_after == 30
    assert "4 requests at once" in str(caught.value)
    assert graph_server.messages == []


@pytest.mark.usefixtures("graph")
def test_a_server_error_after_the_request_is_not_repeated(
    link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    link(user, BOB)
    graph_server.fail_next(status=500, code="InternalServerError")

    with pytest.raises(MessageMayHaveBeenSent) as caught:
        mail.send_mail("Maybe", "Body", BOB, ["to@example.org"])

    assert len(sendmail_requests(graph_server)) == 1
    assert "may have been sent" in str(caught.value)
    assert "Sent Items" in str(caught.value)


@pytest.mark.usefixtures("graph")
def test_an_expired_token_is_refreshed_once_and_the_message_sent(
    link: Linker,
    user: Any,
    graph_server: FakeGraphAPI,
    identity_platform: IdentityPlatform,
) -> None:
    link(user, BOB)
    identity_platform.expire_access_tokens(BOB)  # Graph refuses it; we trust it
    identity_platform.reset()

    assert mail.send_mail("Fresh", "Body", BOB, ["to@example.org"]) == 1

    assert [r.grant_type for r in identity_platform.token_requests] == ["refresh_token"]
    assert [m.subject for m in graph_server.messages] == ["Fresh"]


@pytest.mark.usefixtures("graph")
def test_send_as_denied_reads_well(
    link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    account = link(user, BOB)
    # Our routing lets bob send as team@; Exchange was never told.
    SendAsAddress.objects.create(account=account, address="team@contoso.com")

    with pytest.raises(SendAsDenied) as caught:
        mail.send_mail("Team", "Body", "team@contoso.com", ["to@example.org"])

    message = str(caught.value)
    assert "ErrorSendAsDenied" in message
    assert f"let {BOB} send as team@contoso.com" in message
    assert "Add-RecipientPermission -Identity team@contoso.com" in message
    assert caught.value.smtp_code == 403
    assert graph_server.messages == []


def test_missing_graph_consent_reads_well(
    live_settings: dict[str, Any],
    link: Linker,
    user: Any,
    identity_platform: IdentityPlatform,
    graph_server: FakeGraphAPI,
) -> None:
    account = link(user, BOB)  # TRANSPORT "smtp": SMTP only
    graph_scope = f"{live_settings['GRAPH_ENDPOINT']}/Mail.Send"
    identity_platform.withdraw_consent(BOB, graph_scope)  # if a test gave it
    live_settings["TRANSPORT"] = "graph"

    with pytest.raises(ConsentRequired) as caught:
        mail.send_mail("Hi", "Body", BOB, ["to@example.org"])

    message = str(caught.value)
    assert f"{BOB} has not granted this app Mail.Send" in message
    assert "re-link" in message
    assert graph_server.requests == []
    account.refresh_from_db()
    assert account.status == MailAccount.Status.ACTIVE
    assert "Mail.Send" in account.last_error


@pytest.mark.usefixtures("graph")
def test_a_mailbox_graph_cannot_reach_reads_well(
    link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    link(user, BOB)
    graph_server.rest_disabled.add(BOB)

    with pytest.raises(GraphError) as caught:
        mail.send_mail("Hi", "Body", BOB, ["to@example.org"])

    assert caught.value.code == "MailboxNotEnabledForRESTAPI"
    assert "TRANSPORT'] = 'smtp'" in str(caught.value)


def test_a_10_mb_attachment_arrives_intact_through_upload_sessions(
    graph: dict[str, Any], link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    graph["GRAPH_SCOPES"] = ["Mail.Send", "Mail.ReadWrite"]
    link(user, BOB)
    content = os.urandom(10 * 1024 * 1024)
    message = full_message(BOB)
    message.attach("big.bin", content, "application/octet-stream")

    assert message.send() == 1

    (received,) = graph_server.messages
    attachments = dict(received.attachments)
    assert hashlib.sha256(attachments["big.bin"]).digest() == (
        hashlib.sha256(content).digest()
    )
    assert attachments["report.csv"] == b"a,b\n1,2\n"
    assert sorted(received.rcpt_tos) == [
        "cc@example.org",
        "hidden@example.org",
        "to@example.org",
    ]
    assert b"hidden@example.org" not in received.data
    paths = [path for method, path in graph_server.requests if method != "PUT"]
    assert sendmail_requests(graph_server) == []
    assert sum(p.endswith("/createUploadSession") for p in paths) == 1
    assert sum(p.endswith("/send") for p in paths) == 1
    # 10 MB in chunks of at most 4 MB.
    assert sum(method == "PUT" for method, _ in graph_server.requests) == 3


def test_a_large_message_without_mail_readwrite_says_what_to_grant(
    graph: dict[str, Any],
    link: Linker,
    user: Any,
    graph_server: FakeGraphAPI,
    identity_platform: IdentityPlatform,
) -> None:
    read_write = f"{graph['GRAPH_ENDPOINT']}/Mail.ReadWrite"
    identity_platform.withdraw_consent(BOB, read_write)  # if a test gave it
    link(user, BOB)
    message = full_message(BOB)
    message.attach("big.bin", os.urandom(5 * 1024 * 1024), "application/pdf")

    with pytest.raises(GraphError) as caught:
        message.send()

    text = str(caught.value)
    assert "4 MB" in text
    assert "Mail.ReadWrite" in text
    assert "Nothing was sent" in text
    assert graph_server.messages == []


def test_small_attachments_of_a_large_message_go_in_single_requests(
    graph: dict[str, Any], link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    # Graph refuses upload sessions for files under about 3 MB.
    graph["GRAPH_SCOPES"] = ["Mail.Send", "Mail.ReadWrite"]
    link(user, BOB)
    files = {f"part{n}.bin": os.urandom(1024 * 1024) for n in range(5)}
    message = full_message(BOB)
    for name, content in files.items():
        message.attach(name, content, "application/octet-stream")

    assert message.send() == 1

    (received,) = graph_server.messages
    assert dict(received.attachments) == {**files, "report.csv": b"a,b\n1,2\n"}
    paths = [path for _, path in graph_server.requests]
    assert not any(p.endswith("/createUploadSession") for p in paths)
    assert sum(p.endswith("/attachments") for p in paths) >= 2


@pytest.mark.usefixtures("graph")
def test_an_international_recipient_is_not_also_made_bcc(
    link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    link(user, BOB)
    message = mail.EmailMessage(
        "IDN", "Body", BOB, ["x@bücher.example"], bcc=["hidden@example.org"]
    )

    assert message.send() == 1

    (received,) = graph_server.messages
    assert sorted(received.rcpt_tos) == [
        "hidden@example.org",
        "x@xn--bcher-kva.example",
    ]
    assert b"hidden@example.org" not in received.data


def test_a_mailbox_set_to_graph_sends_through_smtp_while_graph_is_off(
    link: Linker,
    user: Any,
    graph_server: FakeGraphAPI,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    # TRANSPORT "smtp": linking asked no Graph consent, so Graph is never used.
    account = link(user, BOB)
    MailAccount.objects.filter(pk=account.pk).update(transport="graph")

    assert mail.send_mail("Hi", "Body", BOB, ["to@example.org"]) == 1

    assert [m.mechanism for m in smtp_server.messages] == ["XOAUTH2"]
    assert graph_server.requests == []


@pytest.mark.usefixtures("graph")
def test_a_process_keeps_to_four_graph_requests_at_once_per_mailbox(
    link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    account = link(user, BOB)
    get_access_token(account, protocol="graph")  # one refresh, not eight
    graph_server.response_delay = 0.2  # long enough for all eight to overlap
    outcomes: list[Any] = []

    def send(number: int) -> None:
        try:
            connection = mail.get_connection(account=account.pk)
            message = mail.EmailMessage(
                f"m{number}", "Body", BOB, ["to@example.org"], connection=connection
            )
            outcomes.append(message.send())
        except Exception as error:  # reported below
            outcomes.append(error)
        finally:
            db.connections.close_all()

    threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert outcomes == [1] * 8
    # No request was refused for the mailbox's concurrency: each went once.
    assert len(sendmail_requests(graph_server)) == 8
    assert len(graph_server.messages) == 8


class Rollback(Exception):
    """An unrelated error later in the caller's transaction."""


@pytest.mark.postgres
@pytest.mark.usefixtures("auto")
def test_the_move_to_graph_survives_the_callers_rollback(
    link: Linker,
    user: Any,
    graph_server: FakeGraphAPI,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    require_vendor("postgresql")
    account = link(user, BOB)
    smtp_server.smtp_auth_disabled.add(BOB)

    with pytest.raises(Rollback), transaction.atomic():
        mail.send_mail("First", "Body", BOB, ["to@example.org"])
        raise Rollback

    # What Exchange said stays true: no SMTP AUTH attempt on the next send.
    assert MailAccount.objects.get(pk=account.pk).transport == "graph"
    smtp_server.reset()
    assert mail.send_mail("Second", "Body", BOB, ["to@example.org"]) == 1
    assert smtp_server.auth_attempts == []


@pytest.mark.usefixtures("graph")
def test_graph_never_sends_through_a_mailbox_for_someone_who_does_not_own_it(
    link: Linker,
    user: Any,
    other_user: Any,
    graph_server: FakeGraphAPI,
    identity_platform: IdentityPlatform,
) -> None:
    link(user, BOB)
    identity_platform.reset()

    with sending_as(other_user), pytest.raises(SenderNotAllowed):
        mail.send_mail("Hi", "Body", BOB, ["to@example.org"])

    assert graph_server.requests == []
    assert identity_platform.token_requests == []


@pytest.mark.usefixtures("graph")
@pytest.mark.parametrize(
    "address",
    [
        "a@example.org\u2028smuggled@evil.example",
        "a@example.org\x85smuggled@evil.example",
        "to\nevil@example.com",
    ],
)
def test_graph_refuses_an_address_the_smtp_backend_refuses(
    address: str, link: Linker, user: Any, graph_server: FakeGraphAPI
) -> None:
    # Graph reads the recipients from the MIME headers: an address that
    # smuggles a second one must be refused before, as the SMTP path does.
    link(user, BOB)
    message = mail.EmailMessage("Hi", "Body", BOB, ["to@example.org"], bcc=[address])
    with sending_as(user), pytest.raises(ValueError):
        message.send()
    assert [r for r in graph_server.requests if "sendMail" in r.path] == []
