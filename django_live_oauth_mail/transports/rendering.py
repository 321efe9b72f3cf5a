"""A message rendered once, when it is queued, and sent later exactly as rendered.

Rendering in the caller's request means the caller sees a broken message
(a newline in a header, an unreadable address) at once, lazy translations
use the request's language, and every attempt sends the same bytes with the
same Message-ID: a repeat after an ambiguous failure can be recognised.
"""

from __future__ import annotations

import contextlib
import dataclasses
import email.policy
import inspect
from collections.abc import Iterator
from email.message import EmailMessage as MIMEMessage
from email.parser import BytesParser
from email.policy import Policy
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.core.mail import message as django_message
from django.core.mail.backends.smtp import EmailBackend as DjangoSMTPBackend
from django.core.mail.message import make_msgid
from django.core.mail.utils import DNS_NAME


@dataclasses.dataclass(frozen=True)
class Rendered:
    mime: bytes
    from_email: str
    recipients: list[str]
    subject: str
    message_id: str


def render(message: EmailMessage) -> Rendered:
    """The bytes Django would send for ``message``, and its envelope.

    Raises the ``ValueError`` the inline backend raises for an address Django
    would refuse to send to (two addresses in one, a line break), so such a
    message is refused now, never stored.
    """
    check_addresses(message)
    recipients = [str(r) for r in message.recipients()]
    from_email = str(message.from_email or "")
    with stable_message_id(message):
        message_id = next(
            str(value)
            for name, value in message.extra_headers.items()
            if name.lower() == "message-id"
        )
        if "policy" in inspect.signature(message.message).parameters:  # Django 6
            mime = message.message(policy=email.policy.SMTP).as_bytes()  # type: ignore[call-arg,unused-ignore]
        else:
            mime = message.message().as_bytes(linesep="\r\n")  # type: ignore[call-arg,unused-ignore]
    return Rendered(
        mime=bytes(mime),
        from_email=from_email,
        recipients=recipients,
        subject=str(message.subject or ""),
        message_id=message_id,
    )


def check_addresses(message: EmailMessage) -> None:
    """:func:`check_address` for the sender and every envelope recipient."""
    for address in (message.from_email or "", *message.recipients()):
        check_address(str(address), message.encoding)


def check_address(address: str, encoding: str | None) -> None:
    """Raise the ``ValueError`` Django's SMTP backend raises sending to ``address``.

    The inline backend sends through that backend, so this is exactly its
    check, for this Django version.
    """
    prep_address = getattr(DjangoSMTPBackend, "prep_address", None)
    if prep_address is not None:  # Django 6: it needs nothing of the instance
        prep_address(DjangoSMTPBackend.__new__(DjangoSMTPBackend), address)
    else:  # Django 5.2
        django_message.sanitize_address(address, encoding or settings.DEFAULT_CHARSET)


class _ParsedMIME(MIMEMessage):
    """A parsed message that Django 5.2's SMTP backend can flatten too.

    5.2 calls ``as_bytes(linesep="\\r\\n")``, which only its own MIME classes take.
    """

    def as_bytes(
        self, unixfrom: bool = False, policy: Policy | None = None, **kwargs: Any
    ) -> bytes:
        policy = policy or self.policy
        if "linesep" in kwargs:
            policy = policy.clone(linesep=kwargs["linesep"])
        return super().as_bytes(unixfrom=unixfrom, policy=policy)


#: An attached file as Django lists it: (filename, content, mimetype).
File = tuple[str, bytes, str]


class RenderedMessage(EmailMessage):
    """A queued message as the transports take it: stored bytes, stored envelope.

    ``attachments`` lists the files in the stored MIME. Graph's large-message
    path takes some of them out and uploads them apart: :meth:`message` then
    leaves out the files no longer listed.
    """

    def __init__(
        self, mime: bytes, *, from_email: str, recipients: list[str], subject: str
    ) -> None:
        super().__init__(subject=subject, from_email=from_email)
        self.mime = mime
        self.envelope = list(recipients)
        self._files: list[File] | None = None  # read from the MIME when asked
        self._kept: list[Any] | None = None

    @property
    def attachments(self) -> list[Any]:
        if self._kept is not None:
            return self._kept
        return list(self._stored_files())

    @attachments.setter
    def attachments(self, value: list[Any]) -> None:
        # EmailMessage.__init__ sets [] before there is anything to keep.
        self._kept = list(value) if hasattr(self, "mime") else None

    def recipients(self) -> list[str]:
        return list(self.envelope)

    def __repr__(self) -> str:
        return f"<RenderedMessage {self.subject!r}, body hidden>"

    def message(self, *, policy: Any = None) -> Any:
        # Headers as rendered: never folded or encoded anew (a long
        # List-Unsubscribe must reach the recipient as it was written).
        as_rendered = (policy or email.policy.SMTP).clone(refold_source="none")
        parser = BytesParser(_class=_ParsedMIME, policy=as_rendered)
        parsed = parser.parsebytes(self.mime)
        if self._kept is not None:
            remaining, dropped = list(self._kept), []
            for part, file in zip(
                _file_parts(parsed), self._stored_files(), strict=True
            ):
                if file in remaining:
                    remaining.remove(file)
                else:
                    dropped.append(part)
            for container in parsed.walk():
                if container.is_multipart():
                    payload = container.get_payload()
                    container.set_payload(
                        [p for p in payload if all(p is not d for d in dropped)]
                    )
        return parsed

    def _stored_files(self) -> list[File]:
        if self._files is None:
            as_rendered = email.policy.SMTP.clone(refold_source="none")
            parsed = BytesParser(policy=as_rendered).parsebytes(self.mime)
            self._files = [
                (
                    part.get_filename() or "attachment",
                    part.get_payload(decode=True) or b"",
                    part.get_content_type(),
                )
                for part in _file_parts(parsed)
            ]
        return self._files


def _file_parts(parsed: Any) -> list[Any]:
    """The attached files of a parsed message, in order."""
    return [
        part
        for part in parsed.walk()
        if not part.is_multipart() and part.get_content_disposition() == "attachment"
    ]


@contextlib.contextmanager
def stable_message_id(message: EmailMessage) -> Iterator[None]:
    """Give every attempt at one message the same Message-ID.

    Django makes a new one each time it renders a message; a retry would then
    look like a different message, and the Message-ID a lost answer's error
    names (look for it in Sent Items) would not be the one that went out. The
    caller's message is left as it was.
    """
    if any(name.lower() == "message-id" for name in message.extra_headers):
        yield
        return
    original = message.extra_headers  # possibly shared with other messages
    message.extra_headers = {
        **original,
        "Message-ID": make_msgid(domain=DNS_NAME.get_fqdn()),
    }
    try:
        yield
    finally:
        message.extra_headers = original
