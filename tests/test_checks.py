"""Each system check fires when, and only when, its problem is present."""

from __future__ import annotations

from typing import Any

import pytest

from django_live_oauth_mail.checks import check_settings
from django_live_oauth_mail.testing import make_client_certificate

from .mailers import USES_MAILERS

pytestmark = pytest.mark.offline


def ids() -> set[str]:
    return {str(message.id) for message in check_settings()}


def test_the_test_settings_pass(live_settings: dict[str, Any]) -> None:
    assert ids() == set()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"CLIENT_ID": ""}, "live_oauth_mail.E001"),
        ({"CLIENT_SECRET": ""}, "live_oauth_mail.E002"),
        ({"ENCRYPTION_KEYS": ["nope"]}, "live_oauth_mail.E004"),
        ({"ENCRYPTION_KEYS": []}, "live_oauth_mail.W001"),
        ({"AUTHORITY": "http://login.example/common"}, "live_oauth_mail.W002"),
        ({"RESPONSE_MODE": "fragment"}, "live_oauth_mail.E005"),
        ({"TRANSPORT": "ews"}, "live_oauth_mail.E007"),
        (
            {"TRANSPORT": "auto", "GRAPH_ENDPOINT": "http://graph.example"},
            "live_oauth_mail.E008",
        ),
    ],
)
def test_setting_checks(
    live_settings: dict[str, Any], change: dict[str, Any], expected: str
) -> None:
    live_settings.update(change)
    assert ids() == {expected}


def test_sessions_missing(live_settings: dict[str, Any], settings: Any) -> None:
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "Session" not in m]
    assert ids() == {"live_oauth_mail.E003"}


def test_backend_not_used(live_settings: dict[str, Any], settings: Any) -> None:
    smtp = "django.core.mail.backends.smtp.EmailBackend"
    if USES_MAILERS:
        settings.MAILERS = {
            "default": {"BACKEND": smtp, "OPTIONS": {"host": "localhost"}}
        }
    else:
        settings.EMAIL_BACKEND = smtp
    assert ids() == {"live_oauth_mail.W003"}


@pytest.mark.skipif(USES_MAILERS, reason="Django 6.1 refuses EMAIL_HOST with MAILERS")
@pytest.mark.parametrize(
    ("name", "value"), [("EMAIL_HOST", "smtp.office365.com"), ("EMAIL_PORT", 587)]
)
def test_email_host_or_port_set_for_this_backend_warns(
    live_settings: dict[str, Any], settings: Any, name: str, value: Any
) -> None:
    setattr(settings, name, value)
    [warning] = check_settings()
    assert warning.id == "live_oauth_mail.W006"
    assert f"{name} = {value!r}" in warning.msg
    assert "SMTP_HOST" in str(warning.hint)


@pytest.mark.skipif(USES_MAILERS, reason="Django 6.1 refuses EMAIL_HOST with MAILERS")
def test_email_host_is_no_concern_when_another_backend_sends(
    live_settings: dict[str, Any], settings: Any
) -> None:
    settings.EMAIL_HOST = "mail.example.com"
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    assert "live_oauth_mail.W006" not in ids()


def test_a_malformed_client_certificate(live_settings: dict[str, Any]) -> None:
    live_settings["CLIENT_CERTIFICATE"] = {"private_key": "nope", "thumbprint": "zz"}
    assert ids() == {"live_oauth_mail.E009"}
    certificate = make_client_certificate()
    live_settings["CLIENT_CERTIFICATE"] = {
        "private_key": "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
        "thumbprint": certificate.thumbprint,
    }
    assert ids() == {"live_oauth_mail.E009"}


def test_a_client_certificate_stands_in_for_the_secret(
    live_settings: dict[str, Any], tmp_path: Any
) -> None:
    certificate = make_client_certificate()
    key_file = tmp_path / "app.pem"
    key_file.write_text(certificate.private_key_pem)
    live_settings["CLIENT_SECRET"] = ""
    live_settings["CLIENT_CERTIFICATE"] = {
        "private_key": str(key_file),
        "thumbprint": certificate.thumbprint,
    }
    assert ids() == set()


def _use_queued_backend(settings: Any) -> None:
    queued = "django_live_oauth_mail.backends.QueuedEmailBackend"
    if USES_MAILERS:
        settings.MAILERS = {"default": {"BACKEND": queued}}
    else:
        settings.EMAIL_BACKEND = queued


def test_queued_backend_with_an_engine_that_can_defer_passes(
    live_settings: dict[str, Any], settings: Any
) -> None:
    _use_queued_backend(settings)
    assert ids() == set()


def test_queued_backend_on_an_engine_that_cannot_defer_warns(
    live_settings: dict[str, Any], settings: Any
) -> None:
    _use_queued_backend(settings)
    settings.TASKS = {
        "default": {
            "BACKEND": f"{settings.TASKS_MODULE}.backends.immediate.ImmediateBackend"
        }
    }
    assert ids() == {"live_oauth_mail.W007"}


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        # SEND_RATE has a check of its own, whatever the backend (test_rates.py).
        ({"SEND_RATE": "fast"}, "live_oauth_mail.E011"),
        ({"SEND_RATE": "0/minute"}, "live_oauth_mail.E011"),
        ({"QUEUE": "rabbit"}, "live_oauth_mail.E010"),
    ],
)
def test_queued_backend_settings_that_cannot_be_read(
    live_settings: dict[str, Any], settings: Any, change: dict[str, Any], expected: str
) -> None:
    _use_queued_backend(settings)
    live_settings.update(change)
    assert ids() == {expected}
