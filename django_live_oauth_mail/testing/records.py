"""What the fake SMTP server remembers, for assertions in tests.

Kept free of ``aiosmtpd`` so the records can be imported (and type-checked)
without the optional dependency.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser

__all__ = ["AuthAttempt", "ReceivedMessage"]


@dataclass(frozen=True)
class AuthAttempt:
    """One SMTP AUTH exchange. The token or password is never stored."""

    mechanism: str
    user: str | None
    success: bool
    reply: str
    session_id: int


@dataclass(frozen=True)
class ReceivedMessage:
    """A message the server accepted (``250`` after DATA)."""

    mail_from: str
    rcpt_tos: list[str]
    authenticated_as: str | None
    mechanism: str | None
    data: bytes = field(repr=False)
    session_id: int = 0
    #: When it was accepted (``time.time()``): pacing tests measure the gaps.
    received_at: float = field(default_factory=time.time, compare=False)

    @property
    def message(self) -> EmailMessage:
        """The parsed message (``email.policy.default``)."""
        # SMTP delivers CRLF line ends; parse with "\n" so bodies read naturally.
        data = self.data.replace(b"\r\n", b"\n")
        parsed = BytesParser(policy=policy.default).parsebytes(data)
        assert isinstance(parsed, EmailMessage)
        return parsed

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    @property
    def text(self) -> str:
        """The ``text/plain`` body ("" if there is none)."""
        body = self.message.get_body(preferencelist=("plain",))
        return "" if body is None else str(body.get_content())

    @property
    def attachments(self) -> list[tuple[str, bytes]]:
        """``(filename, content)`` for each attachment."""
        found = []
        for part in self.message.iter_attachments():
            payload = part.get_payload(decode=True)
            content = payload if isinstance(payload, bytes) else b""
            found.append((part.get_filename() or "", content))
        return found
