"""The backend's options: which setting wins, and what is refused.

Timeout and the TLS options come from the backend's own options (or MAILERS
OPTIONS), then LIVE_OAUTH_MAIL, then Django's EMAIL_* settings, then our
default. EMAIL_HOST and EMAIL_PORT are never used (check W006 says so).
"""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.core.mail import send_mail

from django_live_oauth_mail.backends import EmailBackend
from django_live_oauth_mail.exceptions import ConfigurationError
from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import XOAuth2SMTPServer

from .mailers import USES_MAILERS, make_backend

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("acting_user")]

needs_email_settings = pytest.mark.skipif(
    USES_MAILERS, reason="Django 6.1 allows no EMAIL_* settings beside MAILERS"
)


@pytest.mark.parametrize(
    ("option", "ours", "djangos", "expected"),
    [
        (5, 10, "unset", 5),  # the backend's option wins
        (None, 10, "unset", 10),  # then LIVE_OAUTH_MAIL
        (None, "unset", "unset", 30),  # then our default
        (None, None, "unset", None),  # None in LIVE_OAUTH_MAIL: no timeout
        pytest.param(5, 10, 7, 5, marks=needs_email_settings),
        pytest.param(None, 10, 7, 10, marks=needs_email_settings),
        pytest.param(None, "unset", 7, 7, marks=needs_email_settings),
        pytest.param(None, None, 7, None, marks=needs_email_settings),
    ],
)
def test_timeout_precedence_reaches_the_socket(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
    settings: Any,
    option: float | None,
    ours: Any,
    djangos: Any,
    expected: float | None,
) -> None:
    if djangos != "unset":
        settings.EMAIL_TIMEOUT = djangos
    if ours == "unset":
        del live_settings["SMTP_TIMEOUT"]
    else:
        live_settings["SMTP_TIMEOUT"] = ours
    backend = make_backend(account="alice@outlook.com", timeout=option)

    assert backend.timeout == expected
    with backend:
        assert backend.connection is not None
        assert backend.connection.sock.gettimeout() == expected
    assert smtp_server.sessions == 1


@pytest.mark.offline
@pytest.mark.parametrize(
    ("option", "ours", "djangos", "expected"),
    [
        (False, True, "unset", False),
        (None, True, "unset", True),
        (None, "unset", "unset", False),
        pytest.param(False, True, True, False, marks=needs_email_settings),
        pytest.param(None, True, False, True, marks=needs_email_settings),
        pytest.param(None, "unset", True, True, marks=needs_email_settings),
        pytest.param(None, "unset", False, False, marks=needs_email_settings),
    ],
)
def test_use_ssl_precedence(
    live_settings: dict[str, Any],
    settings: Any,
    option: bool | None,
    ours: Any,
    djangos: Any,
    expected: bool,
) -> None:
    if djangos != "unset":
        settings.EMAIL_USE_SSL = djangos
    if ours != "unset":
        live_settings["SMTP_USE_SSL"] = ours
    backend = make_backend(use_ssl=option)

    assert (backend.use_ssl, backend.use_tls) == (expected, not expected)
    assert backend.transport.use_ssl is expected


@pytest.mark.offline
@needs_email_settings
def test_client_certificate_precedence(
    live_settings: dict[str, Any], settings: Any
) -> None:
    settings.EMAIL_SSL_CERTFILE = "/etc/django.pem"
    settings.EMAIL_SSL_KEYFILE = "/etc/django.key"
    assert (make_backend().ssl_certfile, make_backend().ssl_keyfile) == (
        "/etc/django.pem",
        "/etc/django.key",
    )
    live_settings["SMTP_SSL_CERTFILE"] = "/etc/ours.pem"
    assert make_backend().ssl_certfile == "/etc/ours.pem"
    assert make_backend(ssl_certfile="/etc/option.pem").ssl_certfile == (
        "/etc/option.pem"
    )


@needs_email_settings
def test_email_host_and_port_are_not_used(
    alice_account: MailAccount,
    smtp_server: XOAuth2SMTPServer,
    settings: Any,
) -> None:
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.2", 2525
    backend = make_backend()
    assert (backend.host, backend.port) == (smtp_server.host, smtp_server.port)
    assert send_mail("s", "b", "alice@outlook.com", ["r@example.org"]) == 1
    assert len(smtp_server.messages) == 1


@pytest.mark.offline
def test_an_unknown_option_is_refused_on_every_django_version() -> None:
    # Built directly, as code and Django before 6.1 do.
    with pytest.raises(ConfigurationError, match=r"'acount'.*takes account"):
        EmailBackend(acount="alice@outlook.com")
    if USES_MAILERS:
        with pytest.raises(mail.InvalidMailer, match="acount"):
            make_backend(acount="alice@outlook.com")
    else:
        with pytest.raises(ConfigurationError, match="acount"):
            make_backend(acount="alice@outlook.com")


def test_an_empty_username_names_no_mailbox(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    # auth_user="" is Django's "no login": routing picks the mailbox.
    assert (
        send_mail("s", "b", "alice@outlook.com", ["r@example.org"], auth_user="") == 1
    )
    assert [m.authenticated_as for m in smtp_server.messages] == ["alice@outlook.com"]
