"""A local stand-in for Microsoft Graph's mail-sending API (v1.0).

It answers what an app sending through Graph calls: ``sendMail`` with a
base64 MIME body and, for messages over Graph's 4 MB request limit, a draft
created from MIME, attachment upload sessions and ``send``. Like Graph it
checks the token's audience, permissions and expiry, reads recipients from
the To/Cc/Bcc headers and applies Exchange's Send As rule, shared with the
SMTP stand-in when one is given so both transports fill one "dev inbox".
"""

from __future__ import annotations

import base64
import contextlib
import json
import re
import secrets
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from email.utils import getaddresses
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

from ._grants import IssuedToken
from ._http import HTTPSServer, Reply, Request
from ._local_server import LocalServer
from ._mailroom import Mailroom
from .certs import TestCertificate
from .ports import listen
from .records import ReceivedMessage

if TYPE_CHECKING:
    from .identity import FakeIdentityPlatform
    from .smtp import XOAuth2SMTPServer

__all__ = ["FakeGraphAPI", "GraphError", "TokenInfo"]

MB = 1024 * 1024
_API = re.compile(r"/v1\.0/(?:me|users/(?P<user>[^/]+))/(?P<rest>.+)")
_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+)")
_DRAFT = r"messages/([^/]+)"
_SESSION = _DRAFT + r"/attachments/(?:microsoft\.graph\.)?createUploadSession"
# An app-only token for a mailbox outside the app's application access policy.
_APP_ACCESS_POLICY = (
    "Access to OData is disabled: [RAOP] : Blocked by tenant configured "
    "AppOnly AccessPolicy settings."
)
# Each error code the stand-in answers with: its status and default message.
_ERRORS: dict[str, tuple[int, str]] = {
    "InvalidAuthenticationToken": (401, "Access token is empty."),
    "ErrorAccessDenied": (403, "Access is denied. Check credentials and try again."),
    "MailboxNotEnabledForRESTAPI": (
        404,
        "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
    ),
    "ApplicationThrottled": (429, "Application is over its MailboxConcurrency limit."),
    "RequestBodyTooLarge": (413, "The maximum request length supported is 4MB."),
    "BadRequest": (400, "Resource not found for the segment."),
    "ErrorMimeContentInvalidBase64String": (400, "Invalid base64 string for MIME."),
    "ErrorMimeContentInvalid": (400, "The MIME content is invalid."),
    "ErrorInvalidRecipients": (400, "At least one recipient is not valid."),
    "ErrorSendAsDenied": (
        403,
        "The user account which was used to submit this request does not have the "
        "right to send mail on behalf of the specified sending account., Cannot "
        "submit message.",
    ),
    "ErrorQuotaExceeded": (403, "The mailbox has exceeded its size quota."),
    "ErrorItemNotFound": (404, "The specified object was not found in the store."),
    "ErrorInvalidRequest": (400, "AttachmentItem needs a file's name and size."),
    "ErrorMessageSizeExceeded": (400, "The message exceeds the maximum size."),
    "ErrorAttachmentSizeShouldNotBeLessThanMinimumSize": (
        400,
        "The file is under the upload session minimum: put it in the MIME.",
    ),
    "ErrorInvalidRange": (
        416,
        "Send 'Content-Range: bytes start-end/size' from the next expected byte.",
    ),
    # Invented: Graph would send without it, but an unfinished upload is a bug.
    "ErrorAttachmentUploadIncomplete": (400, "An attachment upload is unfinished."),
}


class TokenInfo(Protocol):
    """What Graph learns from a bearer token (``IssuedToken`` fits)."""

    @property
    def mailbox(self) -> str: ...
    @property
    def audience(self) -> str: ...
    @property
    def scopes(self) -> frozenset[str]: ...
    @property
    def expires_at(self) -> float: ...


Introspect = Callable[[str], TokenInfo | None]


class GraphError(Exception):
    """An answer ``{"error": {"code", "message", "innerError"}}``, as Graph's."""

    def __init__(
        self, code: str, message: str = "", headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(code)
        self.status, default = _ERRORS.get(code, (400, code))
        self.code, self.message = code, message or default
        self.headers = dict(headers or {})
        self.extra: dict[str, Any] = {}

    def reply(self) -> Reply:
        inner = {"date": _iso(time.time()), "request-id": str(uuid.uuid4())}
        error = {"code": self.code, "message": self.message, "innerError": inner}
        return Reply.json(self.status, {"error": error, **self.extra}, self.headers)


@dataclass
class _File:
    name: str
    content_type: str
    size: int
    is_inline: bool
    content_id: str | None
    data: bytearray = field(default_factory=bytearray)


@dataclass
class _Draft:
    mailbox: str
    mime: bytes  # kept raw, so a refused send leaves the draft as it was
    files: list[_File] = field(default_factory=list)


class FakeGraphAPI(LocalServer):
    """HTTPS stand-in for ``graph.microsoft.com``; set GRAPH_ENDPOINT to ``endpoint``.

    ``token_info`` maps a bearer token to its :class:`TokenInfo` (``None`` if
    unknown); pass a :class:`FakeIdentityPlatform` to use its ``introspect``.
    Tokens must be for ``audience`` (default :attr:`base_url`, because the app
    asks for ``{GRAPH_ENDPOINT}/Mail.Send``). With ``smtp``, delivered mail is
    also recorded by that server, and its Send As rules apply here too.
    App-only tokens (``{endpoint}/.default``) act on ``/users/{mailbox}`` of
    the mailboxes in :attr:`app_access`, with their ``roles`` as permissions.
    """

    def __init__(
        self,
        token_info: Introspect | FakeIdentityPlatform,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        certificate: TestCertificate | None = None,
        smtp: XOAuth2SMTPServer | None = None,
        audience: str | None = None,
    ) -> None:
        introspect: Any = getattr(token_info, "introspect", token_info)
        self._introspect: Introspect = introspect
        self._audience = audience.rstrip("/") if audience else None
        self._mailroom = (
            smtp._mailroom
            if smtp
            else Mailroom(
                validator=None,
                passwords=None,
                smtp_auth_disabled=(),
                submission_quota_exceeded=(),
                enforce_send_as=True,
            )
        )
        #: App client id -> mailboxes its app-only tokens may use (the tenant's
        #: application access policy / RBAC for Applications); others get 403.
        self.app_access: dict[str, set[str]] = {}
        #: Mailboxes answered with 404 MailboxNotEnabledForRESTAPI.
        self.rest_disabled: set[str] = set()
        #: Mailboxes over their storage quota (403 ErrorQuotaExceeded).
        self.quota_exceeded: set[str] = set()
        #: Larger bodies (the base64 MIME, an upload chunk) get 413.
        self.max_request_bytes = 4 * MB
        #: Graph serves 4 concurrent requests per mailbox and app.
        self.max_concurrent_requests = 4
        #: Seconds each API request takes, so tests can make requests overlap.
        self.response_delay = 0.0
        #: Graph refuses upload sessions for smaller files (2 MiB, observed).
        self.min_upload_session_bytes = 2 * MB
        #: The sender's copy of each sent message (Bcc kept), by casefolded mailbox.
        self.sent_items: dict[str, list[bytes]] = {}
        self._bind_address(host, port, certificate)
        self._server: HTTPSServer | None = None
        self._lock = threading.Condition()
        self._requests: list[tuple[str, str]] = []
        self._faults: deque[GraphError] = deque()
        self._in_flight: dict[str, int] = {}
        self._delivered: list[ReceivedMessage] = []
        self._drafts: dict[str, _Draft] = {}
        self._uploads: dict[str, tuple[str, _File]] = {}  # key: (Location, file)

    def start(self) -> FakeGraphAPI:
        """Start serving on a background thread (returns ``self``)."""
        if self._server is not None:
            raise RuntimeError("FakeGraphAPI is already running")
        sock = listen(self._host, self._port, may_move=self._auto_port)
        self._port = sock.getsockname()[1]
        self._server = HTTPSServer(self, sock, self._certificate.server_context())
        return self

    def stop(self) -> None:
        """Stop serving (recorded state is kept)."""
        if self._server is not None:
            self._server.close()
            self._server = None

    @property
    def base_url(self) -> str:
        host = f"[{self._host}]" if ":" in self._host else self._host
        return f"https://{host}:{self._port}"

    @property
    def endpoint(self) -> str:
        """What to set as GRAPH_ENDPOINT: requests go to ``{endpoint}/v1.0/...``."""
        return self.base_url

    @property
    def audience(self) -> str:
        return self._audience or self.base_url

    @property
    def send_as(self) -> dict[str, set[str]]:
        """Send As grants: mailbox -> addresses (the SMTP server's, if shared)."""
        return self._mailroom.send_as

    # -- records and faults --------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str]]:
        """Every request as ``(method, path)``; queries (upload tokens) left out."""
        with self._lock:
            return list(self._requests)

    @property
    def messages(self) -> list[ReceivedMessage]:
        """Messages this server delivered (``mechanism == "graph"``)."""
        with self._lock:
            return list(self._delivered)

    def wait_for_messages(
        self, count: int, timeout: float = 5.0
    ) -> list[ReceivedMessage]:
        """Block until ``count`` messages were delivered (``TimeoutError`` if not)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._delivered) >= count, timeout):
                raise TimeoutError(f"expected {count} message(s) within {timeout}s")
            return list(self._delivered)

    def reset(self) -> None:
        """Forget requests, faults, drafts, uploads, sent items and messages."""
        with self._lock:
            for state in (self._requests, self._faults, self._delivered):
                state.clear()
            for mapping in (self.sent_items, self._drafts, self._uploads):
                mapping.clear()

    def fail_next(
        self,
        count: int = 1,
        *,
        status: int = 429,
        code: str = "ApplicationThrottled",
        message: str = "",
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` authenticated API calls (not uploads) so.

        Add ``headers={"Retry-After": "1"}`` to throttle as Graph does.
        """
        fault = GraphError(code, message, headers)
        fault.status = status
        with self._lock:
            self._faults.extend([fault] * count)

    # -- HTTP ----------------------------------------------------------------

    def dispatch(self, request: Request) -> Reply:
        with self._lock:
            self._requests.append((request.method, request.path))
        try:
            if request.method == "PUT" and request.path == "/upload":
                return self._upload(request)
            match = _API.fullmatch(request.path)
            if match is None:
                raise GraphError("BadRequest")
            return self._api(request, match["user"], match["rest"])
        except GraphError as error:
            return error.reply()

    def _api(self, request: Request, user: str | None, rest: str) -> Reply:
        token = self._authenticate(request)
        mailbox = token.mailbox
        if isinstance(token, IssuedToken) and token.app:
            if user is None:
                problem = (
                    "/me request is only valid with delegated authentication flow."
                )
                raise GraphError("BadRequest", problem)
            mailbox = unquote(user)
            if not self._app_may_use(token.app_id, mailbox):
                raise GraphError("ErrorAccessDenied", _APP_ACCESS_POLICY)
        elif user is not None and unquote(user).casefold() != mailbox.casefold():
            raise GraphError("ErrorAccessDenied")  # another user's mailbox
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None:
            return fault.reply()
        if len(request.body) > self.max_request_bytes:
            raise GraphError("RequestBodyTooLarge")
        routes: list[tuple[str, str, str, Callable[..., Reply]]] = [
            ("POST", "sendMail", "Mail.Send", self._send_mail),
            ("POST", "messages", "Mail.ReadWrite", self._create_draft),
            ("DELETE", _DRAFT, "Mail.ReadWrite", self._delete_draft),
            ("POST", _SESSION, "Mail.ReadWrite", self._create_upload_session),
            ("POST", _DRAFT + "/attachments", "Mail.ReadWrite", self._add_attachment),
            # As Graph's message: send, this needs Mail.Send, not Mail.ReadWrite.
            ("POST", _DRAFT + "/send", "Mail.Send", self._send_draft),
        ]
        with self._slot(mailbox):
            time.sleep(self.response_delay)
            if _contains(self.rest_disabled, mailbox):
                raise GraphError("MailboxNotEnabledForRESTAPI")
            for method, pattern, scope, handler in routes:
                found = re.fullmatch(pattern, rest)
                if found and request.method == method:
                    granted = {s.rsplit("/", 1)[-1].casefold() for s in token.scopes}
                    if scope.casefold() not in granted:
                        raise GraphError("ErrorAccessDenied")
                    return handler(mailbox, request, *found.groups())
        raise GraphError("BadRequest", f"Resource not found for the segment '{rest}'.")

    def _authenticate(self, request: Request) -> TokenInfo:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        info = self._introspect(token) if scheme.lower() == "bearer" else None
        if info is None:
            # An unknown token fails Graph's first check, parsing it as a JWT.
            unknown = "IDX14100: JWT is not well formed, there are no dots (.)."
            raise GraphError("InvalidAuthenticationToken", token and unknown)
        if info.expires_at <= time.time():
            problem = "Lifetime validation failed, the token is expired."
        elif info.audience.rstrip("/").casefold() != self.audience.casefold():
            problem = "Access token validation failure. Invalid audience."
        else:
            return info
        raise GraphError("InvalidAuthenticationToken", problem)

    def _app_may_use(self, app_id: str, mailbox: str) -> bool:
        return any(
            app.casefold() == app_id.casefold() and _contains(mailboxes, mailbox)
            for app, mailboxes in tuple(self.app_access.items())
        )

    @contextlib.contextmanager
    def _slot(self, mailbox: str) -> Iterator[None]:
        """Count the request against Graph's per-mailbox concurrency limit."""
        key = mailbox.casefold()
        with self._lock:
            if self._in_flight.get(key, 0) >= self.max_concurrent_requests:
                raise GraphError("ApplicationThrottled", "", {"Retry-After": "1"})
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
        try:
            yield
        finally:
            with self._lock:
                self._in_flight[key] -= 1

    # -- mail ------------------------------------------------------------------

    def _send_mail(self, mailbox: str, request: Request) -> Reply:
        self._deliver(mailbox, _parse(_mime_body(request)))
        return Reply(202)

    def _create_draft(self, mailbox: str, request: Request) -> Reply:
        mime = _mime_body(request)
        _parse(mime)
        self._check_quota(mailbox)
        draft_id = "AAMk" + secrets.token_urlsafe(24)
        with self._lock:  # like Graph's, the draft keeps its Bcc recipients
            self._drafts[draft_id] = _Draft(mailbox, mime)
        return Reply.json(201, {"id": draft_id, "isDraft": True})

    def _delete_draft(self, mailbox: str, request: Request, draft_id: str) -> Reply:
        self._draft(mailbox, draft_id)
        with self._lock:
            self._drafts.pop(draft_id, None)
        return Reply(204)

    def _create_upload_session(
        self, mailbox: str, request: Request, draft_id: str
    ) -> Reply:
        draft = self._draft(mailbox, draft_id)
        try:
            item = dict(json.loads(request.body)["AttachmentItem"])
            size, name = int(item["size"]), str(item["name"])
        except (ValueError, TypeError, KeyError):
            raise GraphError("ErrorInvalidRequest") from None
        if size > 150 * MB:
            raise GraphError("ErrorMessageSizeExceeded")
        if size < max(self.min_upload_session_bytes, 1):
            raise GraphError("ErrorAttachmentSizeShouldNotBeLessThanMinimumSize")
        content_type = str(item.get("contentType") or "application/octet-stream")
        cid = str(item["contentId"]).strip("<>") if item.get("contentId") else None
        file = _File(name, content_type, size, bool(item.get("isInline")), cid)
        key = secrets.token_urlsafe(32)
        location = (
            f"{self.base_url}/v1.0/users/{mailbox}/messages/{draft_id}"
            f"/attachments/AAMk{secrets.token_urlsafe(12)}"
        )
        with self._lock:
            draft.files.append(file)
            self._uploads[key] = (location, file)
        return _session_reply(201, 0, f"{self.base_url}/upload?authtoken={key}")

    def _add_attachment(self, mailbox: str, request: Request, draft_id: str) -> Reply:
        """A file attachment in one request, its content base64 in the JSON."""
        draft = self._draft(mailbox, draft_id)
        try:
            item = dict(json.loads(request.body))
            data = base64.b64decode(str(item["contentBytes"]), validate=True)
            name = str(item["name"])
        except (ValueError, TypeError, KeyError):
            raise GraphError("ErrorInvalidRequest") from None
        content_type = str(item.get("contentType") or "application/octet-stream")
        file = _File(name, content_type, len(data), False, None, bytearray(data))
        with self._lock:
            draft.files.append(file)
        return Reply.json(201, {"id": "AAMk" + secrets.token_urlsafe(12), "name": name})

    def _upload(self, request: Request) -> Reply:
        """A PUT to an uploadUrl: the URL authorizes it, and a bearer is refused."""
        key = request.query.get("authtoken", "")
        found = _RANGE.fullmatch(request.headers.get("content-range", "").strip())
        start, end, total = (int(n) for n in found.groups()) if found else (0, -1, -1)
        with self._lock:
            location, file = self._uploads.get(key) or ("", None)
            if "authorization" in request.headers:
                problem = "The uploadUrl authorizes itself: send no Authorization."
                raise GraphError("InvalidAuthenticationToken", problem)
            if file is None:
                raise GraphError("ErrorItemNotFound")
            expected = (len(file.data), len(file.data) + len(request.body), file.size)
            if len(request.body) > self.max_request_bytes:
                raise GraphError("RequestBodyTooLarge")
            if (start, end + 1, total) != expected or end >= total:
                error = GraphError("ErrorInvalidRange")
                error.extra["nextExpectedRanges"] = [f"{len(file.data)}-"]
                raise error
            file.data += request.body
            if len(file.data) < file.size:
                return _session_reply(200, len(file.data))
            del self._uploads[key]
        return Reply(201, headers={"Location": location})

    def _send_draft(self, mailbox: str, request: Request, draft_id: str) -> Reply:
        draft = self._draft(mailbox, draft_id)
        message = _parse(draft.mime)
        with self._lock:
            files = list(draft.files)
        for file in files:
            if len(file.data) < file.size:
                raise GraphError("ErrorAttachmentUploadIncomplete")
            maintype, _, subtype = file.content_type.partition("/")
            message.add_attachment(
                bytes(file.data),
                maintype=maintype,
                subtype=subtype or "octet-stream",
                filename=file.name,
                disposition="inline" if file.is_inline else "attachment",
                cid=f"<{file.content_id}>" if file.content_id else None,
            )
        self._deliver(mailbox, message)
        with self._lock:
            self._drafts.pop(draft_id, None)
        return Reply(202)

    def _deliver(self, mailbox: str, message: EmailMessage) -> None:
        """Submit as Exchange does behind Graph: recipients come from the headers."""
        recipients = _addresses(message, "To", "Cc", "Bcc")
        if not recipients or any("@" not in address for address in recipients):
            raise GraphError("ErrorInvalidRecipients")
        if message["From"] is None:
            message["From"] = mailbox  # Exchange sends it from the mailbox
        senders = _addresses(message, "From", "Sender")
        if self._mailroom.send_as_refusal(mailbox, senders) is not None:
            raise GraphError("ErrorSendAsDenied")
        self._check_quota(mailbox)
        sent_copy = message.as_bytes(policy=policy.SMTP)
        del message["Bcc"]  # recipients never see Bcc; the sender's copy does
        record = ReceivedMessage(
            mail_from=(senders or [mailbox])[0],
            rcpt_tos=recipients,
            authenticated_as=mailbox,
            mechanism="graph",
            data=message.as_bytes(policy=policy.SMTP),
        )
        with self._lock:
            self.sent_items.setdefault(mailbox.casefold(), []).append(sent_copy)
            self._delivered.append(record)
            self._lock.notify_all()
        self._mailroom.deliver(record)

    def _check_quota(self, mailbox: str) -> None:
        if _contains(self.quota_exceeded, mailbox):
            raise GraphError("ErrorQuotaExceeded")

    def _draft(self, mailbox: str, draft_id: str) -> _Draft:
        with self._lock:
            draft = self._drafts.get(draft_id)
        if draft is None or draft.mailbox.casefold() != mailbox.casefold():
            raise GraphError("ErrorItemNotFound")
        return draft


def _mime_body(request: Request) -> bytes:
    """The MIME of a ``text/plain`` base64 body: Graph's MIME mode."""
    content_type = request.headers.get("content-type", "").split(";")[0]
    if content_type.strip().lower() != "text/plain":
        raise GraphError("BadRequest", "The stand-in takes MIME only (text/plain).")
    try:  # like .NET's decoder, allow line breaks in the base64
        return base64.b64decode(b"".join(request.body.split()), validate=True)
    except ValueError:  # binascii.Error
        raise GraphError("ErrorMimeContentInvalidBase64String") from None


def _session_reply(status: int, received: int, upload_url: str = "") -> Reply:
    body: dict[str, Any] = {"uploadUrl": upload_url} if upload_url else {}
    body["expirationDateTime"] = _iso(time.time() + 3600)
    body["nextExpectedRanges"] = [f"{received}-"]  # Outlook docs also show a bare "N"
    return Reply.json(status, body)


def _parse(mime: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(mime)
    if not isinstance(message, EmailMessage) or not message.keys():
        raise GraphError("ErrorMimeContentInvalid")
    return message


def _addresses(message: EmailMessage, *headers: str) -> list[str]:
    values = [str(value) for name in headers for value in message.get_all(name, [])]
    return [address for _, address in getaddresses(values) if address]


def _contains(mailboxes: set[str], mailbox: str) -> bool:
    return mailbox.casefold() in {m.casefold() for m in tuple(mailboxes)}


def _iso(timestamp: float) -> str:
    moment = datetime.fromtimestamp(timestamp, timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
