"""Secrets out of log records: bearer tokens, query secrets, token fields.

urllib3 logs every request line at DEBUG, query string included, and an
upload session's URL authorizes itself with its ``authtoken`` query; msal,
requests and our own modules log what they are given. :class:`RedactSecrets`
rewrites such values to ``********`` in a record's message and exception
text, at every level. The app applies it to every record of those
libraries' loggers and its own (see :func:`install`); a site can also add it
to its own handlers.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .secret import MASK

#: Logger families whose records may quote a request, an answer or a token.
LOGGER_FAMILIES = ("urllib3", "requests", "msal", "django_live_oauth_mail")

#: Names of fields and query parameters whose values are secrets.
SECRET_FIELDS = (
    "access_token",
    "refresh_token",
    "id_token",
    "client_secret",
    "client_assertion",
    "assertion",
    "code",
    "code_verifier",
    "device_code",
    "authtoken",
    "password",
    "secret",
    "sig",
)

_FIELDS = "|".join(SECRET_FIELDS)
_PATTERNS = (
    # Authorization: Bearer <token>, and XOAUTH2's auth=Bearer <token>; not
    # prose such as "a bearer token" (no token is that short).
    (re.compile(r"(?i)(\bbearer\s+)[^\s'\",\\\x01]{16,}"), rf"\g<1>{MASK}"),
    # name=value in a query string or a form body.
    (re.compile(rf"(?i)(\b(?:{_FIELDS})=)[^&\s'\"]+"), rf"\g<1>{MASK}"),
    # "name": "value" in JSON, 'name': 'value' in a dict's repr.
    (
        re.compile(rf"(?i)(['\"](?:{_FIELDS})['\"]\s*:\s*)(['\"])(?:(?!\2).)*\2"),
        rf"\g<1>'{MASK}'",
    ),
)


def redact(text: str) -> str:
    """``text`` with every secret value the patterns recognise masked."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


class RedactSecrets(logging.Filter):
    """Mask secrets in each record's message and exception text; drop none."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


_FILTER = RedactSecrets()


def install() -> None:
    """Apply :class:`RedactSecrets` to every record of :data:`LOGGER_FAMILIES`.

    A filter on a logger sees only the records logged on that very logger,
    not those its children propagate (``urllib3.connectionpool`` logs the
    request lines, not ``urllib3``), and modules create their loggers when
    first imported, some after ``ready()``. So the filter is applied where
    every record is made: a log record factory wrapping the current one,
    which leaves other loggers' records alone. Calling it again changes
    nothing.
    """
    previous = logging.getLogRecordFactory()
    if getattr(previous, "redacts_secrets", False):
        return

    def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        if record.name.partition(".")[0] in LOGGER_FAMILIES:
            _FILTER.filter(record)
        return record

    make_record.redacts_secrets = True  # type: ignore[attr-defined]
    logging.setLogRecordFactory(make_record)
