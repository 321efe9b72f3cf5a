"""Messages over Graph's 4 MB request limit: a draft plus upload sessions.

The largest attachments are taken out until the rest fits one request; that
becomes a draft (from MIME, so everything else survives as with sendMail).
Each attachment taken out is added to it: one of 3 MB or more through an
upload session in chunks (Graph refuses sessions for smaller files), a
smaller one in a single request. Then the draft is sent. Creating and
changing drafts needs the ``Mail.ReadWrite`` permission besides
``Mail.Send``. A failure that cannot have sent the message deletes the draft.
"""

from __future__ import annotations

import base64
import contextlib
import copy
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import requests
from django.core.mail import EmailMessage

from ..conf import SETTINGS_NAME
from ..exceptions import GraphError, MessageMayHaveBeenSent
from ..http import http_session
from ..models import MailAccount
from ..secret import Secret
from . import graph_replies


class GraphSession(Protocol):
    """What an upload needs of :class:`.graph.GraphSession` (which imports this)."""

    account: MailAccount
    base: str

    def request(
        self, method: str, path: str, sender: str | None, *, sends: bool, **kwargs: Any
    ) -> requests.Response: ...


#: Graph takes up to 4 MB per upload request; a multiple of 320 KiB is safe.
CHUNK_BYTES = 12 * 320 * 1024
#: Smaller attachments go in one request: Graph's upload sessions start here.
UPLOAD_SESSION_MIN_BYTES = 3 * 1024 * 1024
#: Graph's limit for one attachment.
MAX_ATTACHMENT_BYTES = 150 * 1024 * 1024


def send_large(
    session: GraphSession,
    message: EmailMessage,
    sender: str | None,
    *,
    limit: int,
    render: Callable[[EmailMessage], bytes],
) -> None:
    """Send ``message`` as a draft with its largest attachments uploaded.

    ``render`` makes the MIME Graph is given; ``limit`` is the most a request
    may carry, base64 included.
    """
    mailbox = session.account.email
    draft, moved = _split(message, limit, render, mailbox)
    try:
        created = session.request(
            "POST", f"{session.base}/messages", sender, sends=False, data=draft
        )
    except GraphError as error:
        if error.code == "ErrorAccessDenied":
            raise _needs_read_write(mailbox, error, session.account.is_app) from None
        raise
    draft_id = str(created.json()["id"])
    try:
        for filename, content, mimetype in moved:
            if len(content) < UPLOAD_SESSION_MIN_BYTES:
                _attach(session, draft_id, filename, content, mimetype, sender)
            else:
                _upload(session, draft_id, filename, content, mimetype, sender)
        session.request(
            "POST", f"{session.base}/messages/{draft_id}/send", sender, sends=True
        )
    except MessageMayHaveBeenSent:
        raise  # the draft may be the sent message now: leave it alone
    except BaseException:
        # A retry makes a new draft; this one must not stay in Drafts.
        with contextlib.suppress(Exception):
            session.request(
                "DELETE", f"{session.base}/messages/{draft_id}", sender, sends=False
            )
        raise


def _split(
    message: EmailMessage,
    limit: int,
    render: Callable[[EmailMessage], bytes],
    mailbox: str,
) -> tuple[bytes, list[tuple[str, bytes, str]]]:
    """The draft's base64 MIME, and the attachments taken out of it."""
    draft = copy.copy(message)
    kept = list(message.attachments)
    movable = sorted(
        (a for a in kept if _is_file(a)), key=lambda a: len(_bytes(a[1])), reverse=True
    )
    moved: list[tuple[str, bytes, str]] = []
    while True:
        draft.attachments = kept
        body = base64.b64encode(render(draft))
        if len(body) <= limit:
            return body, moved
        if not movable:
            raise graph_replies.body_too_large(mailbox, len(body), limit)
        attachment = movable.pop(0)
        kept = [a for a in kept if a is not attachment]
        filename, content, mimetype = (
            attachment[0],
            _bytes(attachment[1]),
            attachment[2],
        )
        if len(content) > MAX_ATTACHMENT_BYTES:
            raise graph_replies.attachment_too_large(mailbox, filename, len(content))
        moved.append(
            (filename or "attachment", content, mimetype or "application/octet-stream")
        )


def _attach(
    session: GraphSession,
    draft_id: str,
    filename: str,
    content: bytes,
    mimetype: str,
    sender: str | None,
) -> None:
    """An attachment under 3 MB, in one request."""
    attachment = {
        "@odata.type": "#microsoft.graph.fileAttachment",
        "name": filename,
        "contentType": mimetype,
        "contentBytes": base64.b64encode(content).decode("ascii"),
    }
    session.request(
        "POST",
        f"{session.base}/messages/{draft_id}/attachments",
        sender,
        sends=False,
        json=attachment,
    )


def _upload(
    session: GraphSession,
    draft_id: str,
    filename: str,
    content: bytes,
    mimetype: str,
    sender: str | None,
) -> None:
    """One attachment through an upload session, in chunks."""
    item = {
        "attachmentType": "file",
        "name": filename,
        "size": len(content),
        "contentType": mimetype,
    }
    created = session.request(
        "POST",
        f"{session.base}/messages/{draft_id}/attachments/createUploadSession",
        sender,
        sends=False,
        json={"AttachmentItem": item},
    )
    # The upload URL authorizes itself (its ``authtoken`` query), so it is a
    # secret; Graph refuses a bearer token on it.
    upload_url = Secret(str(created.json()["uploadUrl"]))
    http = http_session()
    mailbox = session.account.email
    for start in range(0, len(content), CHUNK_BYTES):
        chunk = content[start : start + CHUNK_BYTES]
        end = start + len(chunk) - 1
        try:
            response = http.put(
                upload_url.reveal(),
                data=chunk,
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Range": f"bytes {start}-{end}/{len(content)}",
                },
            )
        except requests.RequestException as error:
            # Its text would quote the upload URL, whose query is a secret.
            raise graph_replies.upload_failed(mailbox, filename, error) from None
        if response.status_code >= 400:
            raise graph_replies.refusal(
                response, mailbox=mailbox, sender=sender, refreshed=True, sends=False
            )


def _needs_read_write(mailbox: str, error: GraphError, app: bool) -> GraphError:
    grant = (
        "the Microsoft Graph application permission Mail.ReadWrite besides "
        "Mail.Send, with admin consent (and the mailbox in its RBAC scope)"
        if app
        else "the delegated Microsoft Graph permission Mail.ReadWrite besides "
        "Mail.Send: add it to the app registration and to "
        f"{SETTINGS_NAME}['GRAPH_SCOPES'], then link the mailbox again to consent"
    )
    return GraphError(
        f"A message from {mailbox} is over Microsoft Graph's 4 MB request limit, "
        "so it must be sent as a draft with its attachments uploaded, and Graph "
        f"refused to create the draft ({error.code}). That needs {grant}. "
        "Nothing was sent.",
        mailbox=mailbox,
        status=error.status,
        code=error.code,
    )


def _is_file(attachment: Any) -> bool:
    """A (filename, content, mimetype) file, not a MIME part or a message."""
    return (
        isinstance(attachment, Sequence)
        and len(attachment) == 3
        and isinstance(attachment[1], (bytes, str))
    )


def _bytes(content: Any) -> bytes:
    return content if isinstance(content, bytes) else str(content).encode()
