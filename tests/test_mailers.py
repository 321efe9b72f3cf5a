"""Configuration styles: Django 6.1's MAILERS, and EMAIL_BACKEND before it."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.core.mail import EmailMessage, send_mail

from django_live_oauth_mail.backends import EmailBackend
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .mailers import BACKEND, USES_MAILERS

# About configuration styles, not who may send: the sends run as the owner.
pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acting_user")]

needs_mailers = pytest.mark.skipif(not USES_MAILERS, reason="MAILERS is Django 6.1+")
legacy_only = pytest.mark.skipif(USES_MAILERS, reason="deprecated in Django 6.1")


@pytest.fixture
def noreply_mailers(settings: Any, live_settings: dict[str, Any]) -> None:
    settings.MAILERS = {
        "default": {"BACKEND": BACKEND},
        "noreply": {"BACKEND": BACKEND, "OPTIONS": {"account": "bob@contoso.com"}},
    }


@needs_mailers
def test_named_mailer_sends_as_its_account(
    noreply_mailers: None,
    alice_account: MailAccount,
    bob_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
) -> None:
    backend = mail.mailers["noreply"]
    assert isinstance(backend, EmailBackend)
    assert backend.alias == "noreply"
    assert (
        EmailMessage("s", "b", "bob@contoso.com", ["r@example.org"]).send(
            using="noreply"
        )
        == 1
    )
    assert (
        send_mail("s", "b", "bob@contoso.com", ["r@example.org"], using="noreply") == 1
    )
    assert send_mail("s", "b", "alice@outlook.com", ["r@example.org"]) == 1
    assert [m.authenticated_as for m in smtp_server.messages] == [
        "bob@contoso.com",
        "bob@contoso.com",
        "alice@outlook.com",
    ]


@needs_mailers
def test_mailer_options_are_used(settings: Any, smtp_server: XOAuth2SMTPServer) -> None:
    settings.MAILERS = {
        "default": {
            "BACKEND": BACKEND,
            "OPTIONS": {"host": "127.0.0.1", "port": 2525, "timeout": 3},
        }
    }
    backend = mail.mailers["default"]
    assert (backend.host, backend.port, backend.timeout) == ("127.0.0.1", 2525, 3)


@needs_mailers
def test_unknown_option_raises_invalid_mailer_naming_the_alias(settings: Any) -> None:
    settings.MAILERS = {"default": {"BACKEND": BACKEND, "OPTIONS": {"acount": "x@y.z"}}}
    with pytest.raises(mail.InvalidMailer, match="default") as caught:
        mail.mailers["default"]
    assert "acount" in str(caught.value)


@needs_mailers
def test_no_deprecation_warning_from_our_code_with_mailers(
    noreply_mailers: None, bob_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        EmailMessage("s", "b", "bob@contoso.com", ["r@example.org"]).send(
            using="noreply"
        )
    assert [
        str(w.message) for w in caught if issubclass(w.category, DeprecationWarning)
    ] == []
    assert len(smtp_server.messages) == 1


@legacy_only
def test_get_connection_with_account_and_connection_argument(
    alice_account: MailAccount, bob_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    connection = mail.get_connection(account="bob@contoso.com")
    sent = send_mail(
        "s", "b", "bob@contoso.com", ["r@example.org"], connection=connection
    )
    assert sent == 1
    assert smtp_server.messages[0].authenticated_as == "bob@contoso.com"


@legacy_only
def test_auth_user_names_the_mailbox(
    alice_account: MailAccount, bob_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    assert (
        send_mail(
            "s", "b", "bob@contoso.com", ["r@example.org"], auth_user="bob@contoso.com"
        )
        == 1
    )
    assert smtp_server.messages[0].authenticated_as == "bob@contoso.com"


@legacy_only
def test_fail_silently_argument(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    assert (
        send_mail("s", "b", "nobody@example.com", ["r@example.org"], fail_silently=True)
        == 0
    )
    assert smtp_server.messages == []
