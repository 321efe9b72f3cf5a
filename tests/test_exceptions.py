"""The errors: every one survives pickling (Celery and other task queues) intact."""

from __future__ import annotations

import inspect
import pickle
import smtplib
from typing import Any

import pytest
from django.core.mail import EmailMessage, EmailMultiAlternatives, send_mass_mail

from django_live_oauth_mail import exceptions
from django_live_oauth_mail.exceptions import (
    ConfigurationError,
    GraphError,
    LiveOAuthMailError,
    MailboxRejected,
    MessageMayHaveBeenSent,
    PartialDelivery,
    SendAsDenied,
    Throttled,
    TokenError,
)
from django_live_oauth_mail.models import MailAccount, SendAsAddress
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .mailers import make_backend

ERRORS = sorted(
    (
        value
        for value in vars(exceptions).values()
        if inspect.isclass(value)
        and issubclass(value, BaseException)
        and value.__module__ == exceptions.__name__
    ),
    key=lambda cls: cls.__name__,
)

MAILBOX = "alice@outlook.com"

# Exchange's replies, for MailboxRejected and each of its subclasses.
REPLIES: dict[str, tuple[int, bytes]] = {
    "MailboxRejected": (550, b"5.7.1 Service unavailable, Client host blocked"),
    "SMTPAuthDisabled": (
        535,
        b"5.7.139 Authentication unsuccessful, SmtpClientAuthentication is "
        b"disabled for the Mailbox.",
    ),
    "TokenRejected": (535, b"5.7.3 Authentication unsuccessful"),
    "SendAsDenied": (
        554,
        b"5.2.252 SendAsDenied; alice@outlook.com not allowed to send as "
        b"team@contoso.com",
    ),
    "SubmissionQuotaExceeded": (
        554,
        b"5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
    ),
    "MailboxFull": (554, b"5.2.2 mailbox full; STOREDRV.Submission.Exception"),
}


def message(subject: str) -> EmailMultiAlternatives:
    email = EmailMultiAlternatives(
        subject,
        "Hello,\n\nyour invoice is attached.",
        MAILBOX,
        ["bob@example.org"],
        cc=["carol@example.org"],
        reply_to=["billing@example.org"],
        headers={"X-Invoice": subject},
    )
    email.attach_alternative(f"<p>{subject}</p>", "text/html")
    email.attach("invoice.txt", "total: 12 EUR", "text/plain")
    return email


def rejection(cls: type[MailboxRejected] = SendAsDenied) -> MailboxRejected:
    smtp_code, smtp_error = REPLIES[cls.__name__]
    return cls(
        f"Exchange refused {MAILBOX}: {smtp_code} {smtp_error.decode()}",
        mailbox=MAILBOX,
        smtp_code=smtp_code,
        smtp_error=smtp_error,
    )


def partial_delivery() -> PartialDelivery:
    return PartialDelivery(
        "2 of 4 messages were sent (#1, #2) before #3 failed: Exchange refused "
        f"{MAILBOX}. The 1 message(s) not yet tried were not sent; the sent ones "
        "must not be sent again.",
        mailbox=MAILBOX,
        error=rejection(SendAsDenied),
        sent=[message("m1"), message("m2")],
        failed=message("m3"),
        unsent=[message("m4")],
    )


def example(cls: type[BaseException]) -> BaseException:
    """A realistic instance of ``cls``, built with every field it takes.

    A new error class is built like its nearest ancestor here; one with new
    constructor arguments fails until it gets its own case.
    """
    text = f"{MAILBOX} needs attention ({cls.__name__}): link it again."
    if issubclass(cls, PartialDelivery):
        return partial_delivery()
    if issubclass(cls, MailboxRejected):
        return rejection(cls)
    if issubclass(cls, TokenError):
        return cls(
            text,
            mailbox=MAILBOX,
            error="invalid_grant",
            error_codes=[70000, 50173],
            description="AADSTS70000: The provided grant has expired.",
        )
    if issubclass(cls, Throttled):
        return cls(text, mailbox=MAILBOX, retry_after=12.5)
    if issubclass(cls, GraphError):
        return cls(text, mailbox=MAILBOX, status=403, code="ErrorAccessDenied")
    if issubclass(cls, MessageMayHaveBeenSent):
        return cls(text, mailbox=MAILBOX, status=502, code="UnknownError")
    if issubclass(cls, LiveOAuthMailError):
        return cls(text, mailbox=MAILBOX)
    return cls(text)


def described(value: Any) -> Any:
    """What must survive pickling, in a form that compares by value.

    Exceptions and email messages compare by identity, so they are taken
    apart; a message's ``connection`` is the backend that sent it, which stays
    behind on purpose.
    """
    if isinstance(value, BaseException):
        return (
            type(value),
            value.args,
            str(value),
            repr(value),
            {name: described(field) for name, field in vars(value).items()},
        )
    if isinstance(value, EmailMessage):
        return (
            type(value),
            {
                name: described(field)
                for name, field in vars(value).items()
                if name not in ("connection", "_connection")
            },
        )
    if isinstance(value, list):
        return [described(item) for item in value]
    return value


def round_trip(error: BaseException) -> Any:
    return pickle.loads(pickle.dumps(error))  # noqa: S301 - bytes made just above


@pytest.mark.offline
def test_every_error_of_the_module_is_checked() -> None:
    names = {cls.__name__ for cls in ERRORS}
    assert {"LiveOAuthMailError", "ConfigurationError", "PartialDelivery"} <= names
    assert set(REPLIES) == {
        cls.__name__ for cls in ERRORS if issubclass(cls, MailboxRejected)
    }


@pytest.mark.offline
@pytest.mark.parametrize("cls", ERRORS, ids=lambda cls: cls.__name__)
def test_every_error_survives_pickling_with_its_fields(
    cls: type[BaseException],
) -> None:
    error = example(cls)
    assert type(error) is cls

    restored = round_trip(error)

    assert type(restored) is cls
    assert str(restored) == str(error)
    assert repr(restored) == repr(error)
    assert restored.args == error.args
    assert vars(restored).keys() == vars(error).keys()
    assert described(restored) == described(error)


@pytest.mark.offline
@pytest.mark.parametrize(
    "cls",
    [cls for cls in ERRORS if issubclass(cls, MailboxRejected)],
    ids=lambda cls: cls.__name__,
)
def test_a_rejection_is_still_caught_as_the_smtplib_error_it_was(
    cls: type[MailboxRejected],
) -> None:
    restored = round_trip(rejection(cls))
    smtplib_bases = [b for b in cls.__mro__ if b.__module__ == "smtplib"]
    assert smtplib.SMTPResponseException in smtplib_bases
    for base in (*smtplib_bases, LiveOAuthMailError, OSError):
        assert isinstance(restored, base)
    assert (restored.smtp_code, restored.smtp_error) == REPLIES[cls.__name__]
    assert restored.mailbox == MAILBOX


@pytest.mark.offline
def test_a_configuration_error_stays_outside_the_runtime_errors() -> None:
    restored = round_trip(ConfigurationError("LIVE_OAUTH_MAIL['CLIENT_ID'] is unset."))
    assert not isinstance(restored, LiveOAuthMailError)


@pytest.mark.offline
def test_partial_delivery_keeps_its_messages_and_the_rejection_inside() -> None:
    error = partial_delivery()

    restored = round_trip(error)

    assert [m.subject for m in restored.sent] == ["m1", "m2"]
    assert restored.failed.subject == "m3"
    assert [m.subject for m in restored.unsent] == ["m4"]
    for before, after in zip(
        [*error.sent, error.failed, *error.unsent],
        [*restored.sent, restored.failed, *restored.unsent],
        strict=True,
    ):
        assert after.alternatives == before.alternatives
        assert after.attachments == before.attachments
        assert after.extra_headers == before.extra_headers
        assert (after.to, after.cc, after.reply_to) == (
            before.to,
            before.cc,
            before.reply_to,
        )
    nested = restored.error
    assert type(nested) is SendAsDenied
    assert isinstance(nested, smtplib.SMTPDataError)
    assert (nested.smtp_code, nested.smtp_error) == REPLIES["SendAsDenied"]
    assert nested.mailbox == MAILBOX
    assert str(nested) == str(error.error)
    assert described(restored) == described(error)


@pytest.mark.django_db
@pytest.mark.usefixtures("acting_user")
def test_partial_delivery_from_send_mass_mail_pickles_and_its_rest_can_be_sent(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    # Our routing lets alice send as team@; Exchange was never told: 5.2.252.
    SendAsAddress.objects.create(account=alice_account, address="team@contoso.com")
    batch = [
        (subject, "body", sender, ["r@example.org"])
        for subject, sender in [
            ("m1", MAILBOX),
            ("m2", MAILBOX),
            ("m3", "team@contoso.com"),
            ("m4", MAILBOX),
        ]
    ]
    with pytest.raises(PartialDelivery) as caught:
        send_mass_mail(batch)
    error = caught.value
    # Django leaves the backend that sent them (a lock, a socket) on them.
    assert all(
        vars(m).get("connection") or vars(m).get("_connection") for m in error.sent
    )

    restored = round_trip(error)

    assert str(restored) == str(error)
    assert [m.subject for m in restored.sent] == ["m1", "m2"]
    assert restored.failed.subject == "m3"
    assert type(restored.error) is SendAsDenied
    # The messages the caller holds keep their backend; only the copies in
    # the pickle leave it behind.
    assert error.sent[0] is not restored.sent[0]
    assert vars(error.sent[0]).keys() == vars(restored.sent[0]).keys()
    # Another process can send what was not attempted.
    assert make_backend().send_messages(restored.unsent) == 1
    assert [m.subject for m in smtp_server.messages] == ["m1", "m2", "m4"]
