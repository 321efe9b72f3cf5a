"""Each system check fires when, and only when, its problem is present."""

from __future__ import annotations

from typing import Any

import pytest

from django_live_oauth_mail.checks import check_settings
from django_live_oauth_mail.conf import SETTINGS, conf
from django_live_oauth_mail.exceptions import ConfigurationError
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


#: A value each declared setting cannot read, and the check it then fails.
#: The settings missing here read whatever they are given (text, a flag, a path).
UNREADABLE: dict[str, tuple[Any, str]] = {
    "CLIENT_CERTIFICATE": ("a string", "E009"),
    "SCOPES": (5, "E013"),
    "TRANSPORT": ("ews", "E007"),
    "GRAPH_SCOPES": (5, "E013"),
    "RESPONSE_MODE": ("fragment", "E005"),
    "SMTP_PORT": ("submission", "E013"),
    "SMTP_TIMEOUT": ("long", "E013"),
    "SESSION_IDLE_TIMEOUT": ("long", "E013"),
    "SMTP_RETRIES": ("some", "E013"),
    "SMTP_RETRY_BACKOFF": ("long", "E013"),
    "MAX_INLINE_WAIT": ("long", "E013"),
    "ENCRYPTION_KEYS": (5, "E013"),
    "ROUTING": ("anyone", "E006"),
    "HTTP_TIMEOUT": ("long", "E013"),
    "QUEUE": ("rabbit", "E010"),
    "SEND_RATE": ("fast", "E011"),
    "DAILY_RECIPIENTS": ("many", "E010"),
    "SESSIONS_PER_MAILBOX": ("some", "E010"),
    "QUEUE_ATTEMPTS": ("some", "E010"),
    "QUEUE_BACKOFF": ("long", "E010"),
    "SENDING_TIMEOUT": ("long", "E010"),
}


@pytest.mark.parametrize(
    ("name", "value", "check"), [(n, *UNREADABLE[n]) for n in UNREADABLE]
)
def test_an_unreadable_setting_is_refused_by_name_and_fails_its_check(
    live_settings: dict[str, Any], settings: Any, name: str, value: Any, check: str
) -> None:
    _use_queued_backend(settings)  # the only backend that reads E010's settings
    live_settings[name] = value
    with pytest.raises(
        ConfigurationError, match=rf"^LIVE_OAUTH_MAIL\['{name}'\] must be "
    ):
        getattr(conf, name)
    assert ids() == {f"live_oauth_mail.{check}"}


@pytest.mark.parametrize("name", [n for n in SETTINGS if n not in UNREADABLE])
def test_the_other_settings_read_any_value(
    live_settings: dict[str, Any], name: str
) -> None:
    live_settings[name] = ["a", "list"]
    getattr(conf, name)


@pytest.mark.parametrize(
    "name", [n for n, setting in SETTINGS.items() if setting.minimum is not None]
)
def test_a_number_under_its_minimum_is_read_as_the_minimum(
    live_settings: dict[str, Any], name: str
) -> None:
    setting = SETTINGS[name]
    live_settings[name] = setting.minimum - 5
    assert getattr(conf, name) == setting.minimum
    assert type(getattr(conf, name)) is setting.read  # int stays int
    assert ids() == set()


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("ENCRYPTION_KEYS", [b"\xffsecret-key-bytes"]),
        ("CLIENT_CERTIFICATE", ["secret-key-pem"]),
    ],
)
def test_an_unreadable_secret_is_never_shown(
    live_settings: dict[str, Any], name: str, value: Any
) -> None:
    live_settings[name] = value
    with pytest.raises(ConfigurationError) as caught:
        getattr(conf, name)
    # Django's error page shows no suppressed context, and no cause is kept.
    assert caught.value.__suppress_context__
    assert caught.value.__cause__ is None
    [message] = check_settings()
    assert "secret-key" not in f"{caught.value} {message.msg} {message.hint}"


def test_a_settings_value_that_is_no_dict_is_one_error(settings: Any) -> None:
    settings.LIVE_OAUTH_MAIL = ["CLIENT_ID", "x"]
    [message] = check_settings()
    assert message.id == "live_oauth_mail.E013"
    assert message.msg == "settings.LIVE_OAUTH_MAIL must be a dict, not list."
