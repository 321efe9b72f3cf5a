"""The outbox stores the recipients exactly as the caller wrote them, and sends to them.

They used to be joined with "\\n" and split again with ``str.splitlines()``,
which also splits on U+2028, \\x85 and other line ends: one Bcc value could
become several recipients.
"""

from __future__ import annotations

from typing import Any

import django
import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from django_live_oauth_mail.backends import EmailBackend
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from ..test_django_contract import parser_breaks_on_a_bare_at
from .test_outbox import message, queue, run_tasks
from .test_outbox import tasks as tasks  # autouse: clears the recorded tasks

ALICE = "alice@outlook.com"
SMUGGLING = "a@example.org\u2028smuggled@evil.example"
# One address whose display name holds line ends splitlines() splits on, but
# Django sends to (the name is encoded in the header; the envelope is bare).
ODD_NAME = "Ann\u2028Lee\x85 <ann@example.org>"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "address",
    [
        SMUGGLING,
        "a@example.org\x85smuggled@evil.example",
        "to\nevil@example.com",
        '"evil@example.com\r\nto"@example.com',
        "to@other.com@example.com",
        "to@other.com <to@example.com>",
        "a@example.org, b@example.org",
        pytest.param("to@", marks=parser_breaks_on_a_bare_at),
    ],
)
def test_a_bcc_the_inline_backend_refuses_is_refused_when_queued(
    address: str,
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    email = message()
    email.bcc = [address]
    with pytest.raises(ValueError) as inline:
        EmailBackend().send_messages([email])
    with django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(ValueError) as queued:
            queue(email)
        with pytest.raises(ValueError):
            queue(email, fail_silently=True)  # as inline: not a sending failure
    assert str(queued.value) == str(inline.value)
    assert OutboundMessage.objects.count() == 0
    run_tasks()
    assert smtp_server.messages == []


@pytest.mark.django_db
def test_the_worker_sends_to_exactly_the_addresses_queued(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    email = message(to=(ODD_NAME,))
    email.bcc = ["hidden@example.org"]
    if django.VERSION >= (6,):
        # Django 6's modern email policy refuses such a name in a header when
        # rendering: inline and queued alike, and nothing is stored.
        with pytest.raises(ValueError) as inline:
            EmailBackend().send_messages([email])
        with pytest.raises(ValueError) as queued:
            queue(email)
        assert str(queued.value) == str(inline.value)
        assert OutboundMessage.objects.count() == 0
        return
    with django_capture_on_commit_callbacks(execute=True):
        queue(email)
    row = OutboundMessage.objects.get()
    assert row.recipients == [ODD_NAME, "hidden@example.org"]
    assert row.recipient_count == 2
    run_tasks()
    (sent,) = smtp_server.messages
    assert sorted(sent.rcpt_tos) == ["ann@example.org", "hidden@example.org"]
    row.refresh_from_db()
    assert row.status == OutboundMessage.Status.SENT


@pytest.mark.django_db
def test_a_stored_list_is_sent_to_as_stored(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        queue(message())
    # As a row written before this version reads once migrated.
    OutboundMessage.objects.update(recipients=[ODD_NAME], recipient_count=1)
    run_tasks()
    (sent,) = smtp_server.messages
    assert sent.rcpt_tos == ["ann@example.org"]


MIGRATED = ("live_oauth_mail", "0009_outbox_recipients_as_json_list")
BEFORE = ("live_oauth_mail", "0008_mailaccount_send_rate_validated")


def _migrate(target: tuple[str, str]) -> Any:
    """Migrate the app to ``target``; the app registry as of then."""
    executor = MigrationExecutor(connection)
    executor.migrate([target])
    return executor.loader.project_state([target]).apps


@pytest.mark.django_db(transaction=True)
def test_joined_recipients_migrate_to_exactly_the_addresses_joined() -> None:
    addresses = [ODD_NAME, "b@example.org", "Bo\x0bb <bob@example.org>"]
    try:
        old = _migrate(BEFORE).get_model("live_oauth_mail", "OutboundMessage")
        row = old.objects.create(
            mailbox=ALICE,
            from_email=ALICE,
            recipients="\n".join(addresses),
            recipient_count=3,
            message_id="<1@example.org>",
            encrypted_message="",
        )
        new = _migrate(MIGRATED).get_model("live_oauth_mail", "OutboundMessage")
        migrated = new.objects.get(pk=row.pk)
        assert (migrated.recipients, migrated.recipient_count) == (addresses, 3)

        old = _migrate(BEFORE).get_model("live_oauth_mail", "OutboundMessage")
        assert old.objects.get(pk=row.pk).recipients == "\n".join(addresses)
    finally:
        _migrate(MIGRATED)
