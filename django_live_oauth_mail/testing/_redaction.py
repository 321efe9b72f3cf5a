"""Keep credentials out of aiosmtpd's ``mail.log`` records.

aiosmtpd already masks ``AUTH <mechanism> <initial-response>`` lines, but a
few DEBUG records can still carry secrets (for example the raw line of an
AUTH continuation that is not valid base64). The fake server promises "no
token in any log line", so a filter on that logger scrubs what's left. It
also drops aiosmtpd's own "Session.login_data is deprecated" warning, which
aiosmtpd triggers itself on every successful AUTH.
"""

from __future__ import annotations

import logging
import re

__all__ = ["install"]

_PATTERNS = (
    # AUTH <mechanism> <initial response>
    (re.compile(r"(AUTH\s+[\w-]+[^\S\r\n]+)[\w+/=.~-]+", re.IGNORECASE), r"\1********"),
    # XOAUTH2 payload, decoded ...
    (re.compile(r"(auth=Bearer\s*)[^\s\\'\"]+", re.IGNORECASE), r"\1********"),
    (re.compile(r"(Bearer\s+)[\w.~+/=-]{8,}"), r"\1********"),
    # ... and base64-encoded ("user=" encodes to "dXNlcj...").
    (re.compile(r"dXNlcj[A-Za-z0-9+/=]{8,}"), "********"),
    # aiosmtpd's "can't decode base64: <whatever the client sent>"
    (re.compile(r"(can't decode base64: ).*", re.IGNORECASE), r"\1********"),
)


class _RedactCredentials(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a broken record is not ours to fix
            return True
        if "login_data is deprecated" in message:
            return False
        redacted = message
        for pattern, replacement in _PATTERNS:
            redacted = pattern.sub(replacement, redacted)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


_FILTER = _RedactCredentials()


def install(logger_name: str = "mail.log") -> None:
    """Attach the filter to ``logger_name`` once (idempotent)."""
    logger = logging.getLogger(logger_name)
    if _FILTER not in logger.filters:
        logger.addFilter(_FILTER)
