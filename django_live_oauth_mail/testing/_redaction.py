"""Keep credentials out of aiosmtpd's ``mail.log``: it masks an AUTH command's
initial response, but other DEBUG records can carry a token. The filter masks
every long token-like run, and drops the "login_data is deprecated" warning
aiosmtpd triggers itself on each AUTH."""

from __future__ import annotations

import logging
import re

_SECRET = re.compile(r"[\w+/=.~-]{20,}")


def _redact(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    record.msg, record.args = _SECRET.sub("********", message), None
    return "login_data is deprecated" not in message


def install() -> None:
    """Attach the filter to aiosmtpd's logger (``addFilter`` adds it once)."""
    logging.getLogger("mail.log").addFilter(_redact)
