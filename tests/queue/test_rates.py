"""Send rates are read strictly, wherever they come from, and never break sending."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.test import Client
from django.utils import timezone

from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.checks import check_settings, check_stored_send_rates
from django_live_oauth_mail.conf import MAX_RATE_COUNT, parse_rate
from django_live_oauth_mail.exceptions import ConfigurationError
from django_live_oauth_mail.models import MailAccount, OutboundMessage
from django_live_oauth_mail.queue import pacing
from django_live_oauth_mail.queue.tasks import send_queued_message
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from ..test_admin import change

UNREADABLE = [
    "²/minute",  # str.isdigit() says yes, int() says no
    "٣/minute",  # Arabic-Indic digit: int() reads it
    "99999999999999999999999/second",
    f"{MAX_RATE_COUNT + 1}/second",
    "0/minute",
    "-1/minute",
    "30/week",
    "30",
    "fast",
    "1//minute",
    "",
]


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("30/minute", (30, 60.0)),
        (" 10 / Seconds ", (10, 1.0)),
        ("2/hours", (2, 3600.0)),
        (f"{MAX_RATE_COUNT}/day", (MAX_RATE_COUNT, 86400.0)),
    ],
)
@pytest.mark.offline
def test_a_readable_rate(value: str, expected: tuple[int, float]) -> None:
    assert parse_rate(value, "The rate") == expected


@pytest.mark.parametrize("value", [*UNREADABLE, 30, None])
@pytest.mark.offline
def test_an_unreadable_rate_is_a_configuration_error(value: Any) -> None:
    with pytest.raises(ConfigurationError, match=r"^The rate must be 1 to 10,000 "):
        parse_rate(value, "The rate")


@pytest.mark.parametrize("value", UNREADABLE[:-1])
@pytest.mark.django_db
def test_the_field_validator_refuses_an_unreadable_rate(
    value: str, alice_account: MailAccount
) -> None:
    alice_account.send_rate = value
    with pytest.raises(ValidationError) as caught:
        alice_account.full_clean()
    assert list(caught.value.message_dict) == ["send_rate"]


@pytest.mark.parametrize("value", ["²/minute", "99999999999999999999999/second"])
@pytest.mark.django_db(transaction=True)
def test_the_admin_refuses_an_unreadable_rate_as_a_form_error(
    admin_client: Client, alice_account: MailAccount, value: str
) -> None:
    response = change(admin_client, alice_account, send_rate=value)
    assert response.status_code == 200
    assert "must be 1 to 10,000 messages per second" in response.content.decode()
    assert MailAccount.objects.get(pk=alice_account.pk).send_rate == ""


@pytest.mark.parametrize("value", ["²/minute", "10001/second"])
@pytest.mark.offline
def test_an_unreadable_send_rate_setting_is_check_error_e011(
    live_settings: dict[str, Any], value: str
) -> None:
    live_settings["SEND_RATE"] = value
    assert {str(m.id) for m in check_settings()} == {"live_oauth_mail.E011"}


@pytest.mark.django_db
def test_a_stored_unreadable_rate_is_database_check_error_e012(
    alice_account: MailAccount, bob_account: MailAccount
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(send_rate="²/minute")
    MailAccount.objects.filter(pk=bob_account.pk).update(send_rate="10/minute")

    [error] = check_stored_send_rates(databases=["default"])

    assert error.id == "live_oauth_mail.E012"
    assert "The send rate of alice@outlook.com must be" in error.msg
    # Only when asked for the databases: runserver's checks query nothing.
    assert check_stored_send_rates(databases=None) == []
    assert "live_oauth_mail.E012" in {
        str(m.id) for m in run_checks(databases=["default"])
    }


@pytest.mark.django_db
def test_pacing_names_the_mailbox_and_the_fix_for_a_stored_unreadable_rate(
    alice_account: MailAccount,
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(
        send_rate="99999999999999999999999/second"
    )
    account = MailAccount.objects.get(pk=alice_account.pk)
    message = OutboundMessage(account=account, recipient_count=1)

    with pytest.raises(ConfigurationError) as caught:
        pacing.wait_for(account, message, timezone.now())

    text = str(caught.value)
    assert text.startswith("The send rate of alice@outlook.com must be 1 to 10,000")
    assert "Correct it on the mailbox's admin page" in text
    assert "LIVE_OAUTH_MAIL['SEND_RATE']" in text


@pytest.mark.django_db
def test_a_queued_message_from_a_mailbox_with_an_unreadable_rate_fails_saying_why(
    alice_account: MailAccount,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    django_capture_on_commit_callbacks: Any,
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(
        send_rate="99999999999999999999999/second"
    )
    with django_capture_on_commit_callbacks(execute=False):
        QueuedEmailBackend().send_messages(
            [EmailMessage("Hi", "Body", alice_account.email, ["to@example.org"])]
        )
    (queued,) = OutboundMessage.objects.all()

    # Not a mail error: the worker lets the task show it too.
    with contextlib.suppress(ConfigurationError):
        send_queued_message(queued.pk)

    queued.refresh_from_db()
    assert queued.status == OutboundMessage.Status.FAILED
    assert queued.last_error.startswith(
        "The send rate of alice@outlook.com must be 1 to 10,000"
    )
    assert smtp_server.messages == []
