"""A local stand-in for the Microsoft Graph calls the app sends mail with, for
tests: ``sendMail``, and past Graph's 4 MB limit drafts and upload sessions."""

from __future__ import annotations

import base64
import json
import re
import secrets
import socket
from collections.abc import Callable, Mapping
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

from ._http import HTTPSServer, Reply, Request
from ._local_server import LocalServer, ReceivedMessage, addresses, casefolded, granted
from .certs import TestCertificate

if TYPE_CHECKING:
    from .identity import FakeIdentityPlatform
    from .smtp import XOAuth2SMTPServer
    from .tokens import IssuedToken

_API = re.compile(r"/v1\.0/(?:me|users/(?P<user>[^/]+))/(?P<rest>.+)")
#: The POSTs under a mailbox: the permission each needs, and its handler.
_ROUTES = {
    "sendMail": ("Mail.Send", "_send_mail"),
    "messages": ("Mail.ReadWrite", "_create_draft"),
    "messages/([^/]+)/attachments": ("Mail.ReadWrite", "_attach"),
    "messages/([^/]+)/attachments/createUploadSession": ("Mail.ReadWrite", "_open"),
    # As Graph's message: send, this needs Mail.Send, not Mail.ReadWrite.
    "messages/([^/]+)/send": ("Mail.Send", "_send_draft"),
}
_MAX_REQUEST_BYTES = 4 * 1024 * 1024  # Graph's limit, for a body or a chunk


class _Refusal(Exception):
    """Graph's ``{"error": {"code": ...}}`` answer, raised to reply with it."""

    def __init__(
        self, status: int, code: str, headers: Mapping[str, str] | None = None
    ) -> None:
        body = {"error": {"code": code, "message": code}}
        self.reply = Reply.json(status, body, dict(headers or {}))


class _File(NamedTuple):
    name: str
    content_type: str
    size: int
    data: bytearray


class FakeGraphAPI(LocalServer):
    """HTTPS stand-in for graph.microsoft.com: set GRAPH_ENDPOINT to :attr:`endpoint`.

    It takes tokens ``platform`` issued for :attr:`endpoint`: delegated ones for
    their mailbox, app-only ones for the mailboxes in :attr:`app_access`. What
    it sends, ``smtp`` records (and checks Send As for).
    """

    def __init__(
        self,
        platform: FakeIdentityPlatform,
        *,
        smtp: XOAuth2SMTPServer,
        host: str = "127.0.0.1",
        port: int | None = None,
        certificate: TestCertificate | None = None,
    ) -> None:
        self._platform, self._smtp = platform, smtp
        #: App client id -> mailboxes its app-only tokens may use (the tenant's
        #: application access policy); others get 403.
        self.app_access: dict[str, set[str]] = {}
        self._bind_address(host, port, certificate)
        self._drafts: dict[str, tuple[str, bytes, list[_File]]] = {}
        self._uploads: dict[str, _File] = {}

    def _serve(self, sock: socket.socket) -> Callable[[], None]:
        return HTTPSServer(self, sock, self.certificate.server_context()).close

    @property
    def endpoint(self) -> str:
        """GRAPH_ENDPOINT: requests go to ``{endpoint}/v1.0/...``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}:{self.port}"

    def dispatch(self, request: Request) -> Reply:
        try:
            if len(request.body) > _MAX_REQUEST_BYTES:
                raise _Refusal(413, "RequestBodyTooLarge")
            if request.method == "PUT" and request.path == "/upload":
                return self._upload(request)
            found = _API.fullmatch(request.path)
            if found is None or request.method != "POST":
                raise _Refusal(400, "BadRequest")
            scheme, _, bearer = request.headers.get("authorization", "").partition(" ")
            token = self._platform.introspect(bearer.strip())
            audience = token.audience.rstrip("/").casefold() if token else ""
            mine = scheme.lower() == "bearer" and audience == self.endpoint.casefold()
            if token is None or not mine:  # None: unknown or expired
                raise _Refusal(401, "InvalidAuthenticationToken")
            mailbox = unquote(found["user"]) if found["user"] else token.mailbox
            if token.app:
                allowed = granted(self.app_access, token.app_id)
            else:
                allowed = {token.mailbox.casefold()}
            if mailbox.casefold() not in allowed:
                raise _Refusal(403, "ErrorAccessDenied")
            return self._call(mailbox, token, found["rest"], request)
        except _Refusal as refusal:
            return refusal.reply

    def _call(
        self, mailbox: str, token: IssuedToken, rest: str, request: Request
    ) -> Reply:
        """Run the API call ``rest`` for ``mailbox``, the token checked."""
        for pattern, (scope, handler) in _ROUTES.items():
            if found := re.fullmatch(pattern, rest):
                if scope.casefold() not in casefolded(token.scopes):
                    raise _Refusal(403, "ErrorAccessDenied")
                reply: Reply = getattr(self, handler)(mailbox, request, *found.groups())
                return reply
        raise _Refusal(400, "BadRequest")

    def _send_mail(self, mailbox: str, request: Request) -> Reply:
        self._deliver(mailbox, _parse(_mime(request)))
        return Reply(202)

    def _create_draft(self, mailbox: str, request: Request) -> Reply:
        mime = _mime(request)
        _parse(mime)
        draft_id = "AAMk" + secrets.token_urlsafe(24)
        self._drafts[draft_id] = (mailbox, mime, [])  # a refused send keeps it
        return Reply.json(201, {"id": draft_id})

    def _attach(self, mailbox: str, request: Request, draft_id: str) -> Reply:
        """A file attachment in one request, its content base64 in the JSON."""
        item = json.loads(request.body)
        data = bytearray(base64.b64decode(item["contentBytes"]))
        file = _File(item["name"], item["contentType"], len(data), data)
        self._draft(mailbox, draft_id)[2].append(file)
        return Reply.json(201, {"id": "AAMk" + secrets.token_urlsafe(12)})

    def _open(self, mailbox: str, request: Request, draft_id: str) -> Reply:
        """An upload session for an attachment: its chunks come by PUT."""
        item = json.loads(request.body)["AttachmentItem"]
        file = _File(item["name"], item["contentType"], int(item["size"]), bytearray())
        self._draft(mailbox, draft_id)[2].append(file)
        self._uploads[key := secrets.token_urlsafe(32)] = file
        return Reply.json(201, {"uploadUrl": f"{self.endpoint}/upload?authtoken={key}"})

    def _upload(self, request: Request) -> Reply:
        """A PUT of the next chunk: the uploadUrl authorizes it, a bearer is refused."""
        key = request.query.get("authtoken", "")
        file = self._uploads.get(key)
        if "authorization" in request.headers or file is None:
            raise _Refusal(401, "InvalidAuthenticationToken")
        file.data.extend(request.body)
        if len(file.data) < file.size:
            return Reply.json(200, {"nextExpectedRanges": [f"{len(file.data)}-"]})
        del self._uploads[key]
        return Reply(201)

    def _send_draft(self, mailbox: str, request: Request, draft_id: str) -> Reply:
        _, mime, files = self._draft(mailbox, draft_id)
        message = _parse(mime)
        for file in files:
            if len(file.data) < file.size:
                raise _Refusal(400, "ErrorAttachmentUploadIncomplete")
            maintype, _, subtype = file.content_type.partition("/")
            message.add_attachment(
                bytes(file.data), maintype, subtype, filename=file.name
            )
        self._deliver(mailbox, message)
        del self._drafts[draft_id]
        return Reply(202)

    def _deliver(self, mailbox: str, message: EmailMessage) -> ReceivedMessage:
        """Submit as Exchange does behind Graph: recipients come from the headers,
        and Bcc is removed (the sender's copy in Sent Items keeps it)."""
        recipients = addresses(message, "To", "Cc", "Bcc")
        if not recipients:
            raise _Refusal(400, "ErrorInvalidRecipients")
        if message["From"] is None:
            message["From"] = mailbox  # Exchange sends it from the mailbox
        senders = addresses(message, "From", "Sender")
        if not all(self._smtp.may_send_as(mailbox, sender) for sender in senders):
            raise _Refusal(403, "ErrorSendAsDenied")
        del message["Bcc"]
        data = message.as_bytes(policy=policy.SMTP)
        received = ReceivedMessage(senders[0], recipients, mailbox, "graph", data)
        self._smtp.deliver(received)
        return received

    def _draft(self, mailbox: str, draft_id: str) -> tuple[str, bytes, list[_File]]:
        draft = self._drafts.get(draft_id)
        if draft is None or draft[0].casefold() != mailbox.casefold():
            raise _Refusal(404, "ErrorItemNotFound")
        return draft


def _mime(request: Request) -> bytes:
    """The MIME of a base64 body (Graph's MIME mode; line breaks allowed)."""
    try:
        return base64.b64decode(b"".join(request.body.split()), validate=True)
    except ValueError:  # binascii.Error
        raise _Refusal(400, "ErrorMimeContentInvalidBase64String") from None


def _parse(mime: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(mime)
    if not isinstance(message, EmailMessage) or not message.keys():
        raise _Refusal(400, "ErrorMimeContentInvalid")
    return message
