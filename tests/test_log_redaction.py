"""Secrets are masked in log records of urllib3, requests, msal and ours."""

from __future__ import annotations

import copy
import logging
import pickle

import pytest

from django_live_oauth_mail.log_redaction import RedactSecrets, redact
from django_live_oauth_mail.secret import Secret

pytestmark = pytest.mark.offline

TOKEN = "eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJ4In0.c2lnbmF0dXJlLXNlY3JldA"


@pytest.mark.parametrize(
    ("line", "kept"),
    [
        (f"Authorization: Bearer {TOKEN}", "Authorization: Bearer ********"),
        (f"user=a@b.c\x01auth=Bearer {TOKEN}\x01\x01", "auth=Bearer ********\x01"),
        (
            'https://graph:443 "PUT /upload?authtoken=k3y-s3cret&x=1 HTTP/1.1" 200',
            "/upload?authtoken=********&x=1 HTTP/1.1",
        ),
        (
            f"grant_type=refresh_token&refresh_token={TOKEN}&client_secret=s3cret",
            "refresh_token=********&client_secret=********",
        ),
        (f'{{"access_token": "{TOKEN}", "expires_in": 3599}}', '"expires_in": 3599'),
        (f"{{'code': '{TOKEN}', 'state': 'abc'}}", "'state': 'abc'"),
        (f'"client_assertion": "{TOKEN}"', "\"client_assertion\": '********'"),
    ],
)
def test_each_kind_of_secret_is_masked_and_the_rest_kept(line: str, kept: str) -> None:
    shown = redact(line)
    assert TOKEN not in shown and "s3cret" not in shown
    assert kept in shown


def test_prose_about_bearer_tokens_is_left_alone() -> None:
    line = "Graph refuses a bearer token on an upload URL."
    assert redact(line) == line


def test_records_of_library_child_loggers_are_redacted_at_debug(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The filter is on each logger that logs, not only on the families' roots."""
    caplog.set_level(logging.DEBUG)
    for name in ("urllib3.connectionpool", "msal.token_cache", "requests"):
        logging.getLogger(name).debug("%s sent Bearer %s", name, TOKEN)
    assert [r.getMessage() for r in caplog.records] == [
        f"{name} sent Bearer ********"
        for name in ("urllib3.connectionpool", "msal.token_cache", "requests")
    ]


def test_a_logger_made_after_startup_is_redacted_and_others_are_left_alone(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    logging.getLogger("msal.made_later.child").debug("Bearer %s", TOKEN)
    logging.getLogger("someone_else").debug("Bearer %s", TOKEN)
    assert [r.getMessage() for r in caplog.records] == [
        "Bearer ********",
        f"Bearer {TOKEN}",  # not ours to touch
    ]


def test_the_filter_also_works_on_a_sites_handler() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "code=%s", (TOKEN,), None)
    assert RedactSecrets().filter(record)
    assert record.getMessage() == "code=********"


def test_an_exception_logged_with_its_traceback_is_redacted(
    caplog: pytest.LogCaptureFixture,
) -> None:
    try:
        raise ValueError(f"refused https://x/upload?authtoken={TOKEN}")
    except ValueError:
        logging.getLogger("django_live_oauth_mail.queue.worker").exception("failed")
    assert TOKEN not in caplog.text
    assert "authtoken=********" in caplog.text


def test_a_secret_shows_masked_and_never_pickles() -> None:
    secret = Secret(TOKEN)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret}"):
        assert shown == "Secret('********')"
    assert secret.reveal() == TOKEN
    assert secret == Secret(TOKEN) and secret == TOKEN and secret != "other"
    assert copy.deepcopy(secret) is secret
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(secret)
