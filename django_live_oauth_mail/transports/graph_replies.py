"""Microsoft Graph's mail errors, turned into our exceptions with advice.

The one place that words Graph's failures, as :mod:`.smtp_replies` is for
SMTP: the answers Graph gives, and what broke around a request (an untrusted
certificate, a lost answer, a message or attachment over Graph's limits).
Graph answers ``{"error": {"code": ..., "message": ...}}``; the code says
what happened, the status whether trying again may help. A refusal that
means the same on both transports (Send As, a full mailbox) raises the same
exception class, so callers catch one; its ``smtp_code`` then holds the HTTP
status and ``smtp_error`` Graph's code and message.
"""

from __future__ import annotations

import math
from typing import Any

from ..conf import SETTINGS_NAME
from ..exceptions import GraphError, MessageMayHaveBeenSent, SendAsDenied, Throttled
from .smtp_replies import mailbox_full, quota_exceeded, send_as_advice


def refusal(
    response: Any,
    *,
    mailbox: str,
    sender: str | None,
    refreshed: bool,
    sends: bool = True,
    app_id: str | None = None,
) -> Exception:
    """:func:`explain` for a ``requests`` response."""
    try:
        body = response.json()
    except ValueError:  # a proxy's HTML page, an empty body
        body = None
    return explain(
        response.status_code,
        body,
        response.headers,
        mailbox=mailbox,
        sender=sender,
        refreshed=refreshed,
        sends=sends,
        app_id=app_id,
    )


def error_of(status: int, body: Any) -> tuple[str, str]:
    """Graph's ``(code, message)``; made up from the status if the body has none."""
    error = body.get("error") if isinstance(body, dict) else None
    if isinstance(error, dict):
        code = str(error.get("code") or f"HTTP{status}")
        lines = str(error.get("message") or "").strip().splitlines()
        return code, next(iter(lines), "no details given")
    return f"HTTP{status}", "no details given"


#: The longest ``Retry-After`` believed. Graph asks for seconds; a figure of
#: years is a broken proxy's, and the queue could not even date its deferral.
MAX_RETRY_AFTER = 24 * 3600.0


def retry_after(headers: Any) -> float | None:
    """Seconds from a ``Retry-After`` header, if it holds a finite number."""
    value = headers.get("Retry-After") if headers is not None else None
    try:
        seconds = float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return None
    return min(max(0.0, seconds), MAX_RETRY_AFTER) if math.isfinite(seconds) else None


def explain(
    status: int,
    body: Any,
    headers: Any,
    *,
    mailbox: str,
    sender: str | None,
    refreshed: bool,
    sends: bool = True,
    app_id: str | None = None,
) -> Exception:
    """Our exception for a refused Graph request about ``mailbox``'s message.

    ``refreshed``: the token was brand new, so a 401 is not its age.
    ``sends``: the request would have sent the message, so a server error
    may mean it went out. ``app_id``: the app sent with its own token.
    """
    code, text = error_of(status, body)
    said = f"(HTTP {status} {code}: {text})"
    wait = retry_after(headers)
    if status == 429 or (status == 503 and wait is not None):
        return Throttled(
            f"Microsoft Graph asked {mailbox} to slow down {said}. Graph allows "
            "4 requests at once per app and mailbox, and limits how many per "
            "minute; queue the mail, or send from fewer workers at once.",
            mailbox=mailbox,
            retry_after=wait,
        )
    raw = f"{code}: {text}".encode(errors="replace")
    if code == "ErrorSendAsDenied":
        return SendAsDenied(
            send_as_advice(mailbox, sender, said),
            mailbox=mailbox,
            smtp_code=status,
            smtp_error=raw,
        )
    if code == "ErrorQuotaExceeded":
        return mailbox_full(mailbox, said, status, raw)
    if code == "ErrorSubmissionQuotaExceeded":
        return quota_exceeded(mailbox, said, status, raw)
    if app_id and code == "ErrorAccessDenied":
        return GraphError(
            f"Microsoft Graph refused the app access to {mailbox} {said}. The app "
            "needs the Mail.Send application permission with admin consent, and "
            "where the tenant scopes it (RBAC for Applications, or an "
            f"application access policy) {mailbox} must be in scope: "
            f'`New-ManagementRoleAssignment -App {app_id} -Role "Application '
            'Mail.Send" -CustomResourceScope <a scope that includes the '
            "mailbox>`.",
            mailbox=mailbox,
            status=status,
            code=code,
        )
    advice = _ADVICE.get(code) or _ADVICE.get(str(status))
    if advice is not None:
        return GraphError(
            f"Microsoft Graph refused to send as {mailbox} {said}. "
            + advice.format(mailbox=mailbox, settings=SETTINGS_NAME),
            mailbox=mailbox,
            status=status,
            code=code,
        )
    if status == 401:
        when = " even with a brand-new token" if refreshed else ""
        return GraphError(
            f"Microsoft Graph refused the token for {mailbox}{when} {said}. The "
            f"token's resource must be {SETTINGS_NAME}['GRAPH_ENDPOINT']: check "
            "that it names the Graph of your cloud, and link the mailbox again.",
            mailbox=mailbox,
            status=status,
            code=code,
        )
    if status >= 500 and not sends:
        return GraphError(
            f"Microsoft Graph failed while preparing a message from {mailbox} "
            f"{said}. Nothing was sent; try again in a moment.",
            mailbox=mailbox,
            status=status,
            code=code,
        )
    if status >= 500:
        return MessageMayHaveBeenSent(
            f"Microsoft Graph failed while sending from {mailbox} {said}, after "
            "the message was handed over. It may have been sent: Graph's sendMail "
            "cannot be safely repeated, so it was not. Check the mailbox's Sent "
            "Items before sending it again.",
            mailbox=mailbox,
            status=status,
            code=code,
        )
    return GraphError(
        f"Microsoft Graph refused to send from {mailbox} {said}.",
        mailbox=mailbox,
        status=status,
        code=code,
    )


_ADVICE = {
    "ErrorAccessDenied": (
        "The token does not carry Mail.Send for Graph, or an administrator "
        "limits which mailboxes this app may use (an application access policy "
        "or RBAC for Applications). Add the delegated Microsoft Graph permission "
        "Mail.Send to the app registration, then link the mailbox again (re-link) "
        "to consent to it; or ask an Exchange administrator to include this "
        "mailbox in the app's scope."
    ),
    "MailboxNotEnabledForRESTAPI": (
        "Graph cannot reach this mailbox: it is inactive, soft-deleted, or "
        "hosted on-premises (Exchange hybrid). Send from it through SMTP "
        "({settings}['TRANSPORT'] = 'smtp'), or move it to Exchange Online."
    ),
    "ErrorMessageSizeExceeded": (
        "The message is larger than the mailbox may send: Exchange Online's "
        "default is 35 MB, and an administrator can raise it to 150 MB "
        "(Set-Mailbox -MaxSendSize). Send smaller attachments, or share large "
        "files by link."
    ),
    "413": (
        "The request is over Graph's 4 MB limit. Messages this large are sent "
        "as a draft with attachment upload sessions, which needs the Mail.ReadWrite "
        "permission: see the README's Graph section."
    ),
}

# What failed before or around a request, rather than a refusal Graph sent.


def untrusted(mailbox: str, error: Exception) -> GraphError:
    """Graph's TLS certificate was not trusted: a setting, not a retry."""
    return GraphError(
        f"The TLS connection to Microsoft Graph for {mailbox} failed "
        f"({type(error).__name__}): its certificate was not trusted. Check "
        f"{SETTINGS_NAME}['CA_BUNDLE'] and GRAPH_ENDPOINT.",
        mailbox=mailbox,
        status=0,
        code="tls",
    )


def unreached(mailbox: str, error: Exception) -> ConnectionError:
    """A request that never connected: an OSError, so the backend retries it."""
    return ConnectionError(
        f"Could not connect to Microsoft Graph for {mailbox} "
        f"({type(error).__name__}); nothing was sent. Check "
        "LIVE_OAUTH_MAIL['GRAPH_ENDPOINT'] and the server's network access."
    )


def lost(mailbox: str, error: Exception, sends: bool) -> Exception:
    """A request whose answer never came: retried, unless it may have sent."""
    if not sends:
        # An OSError, so the backend tries again; requests' own error would
        # quote the URL.
        return ConnectionError(
            f"The connection to Microsoft Graph for {mailbox} broke "
            f"({type(error).__name__}); nothing was sent."
        )
    return MessageMayHaveBeenSent(
        f"The connection to Microsoft Graph broke while sending from {mailbox} "
        f"({type(error).__name__}), after the message was handed over. It may "
        "have been sent: Graph's sendMail cannot be safely repeated, so it was "
        "not. Check the mailbox's Sent Items before sending it again.",
        mailbox=mailbox,
        status=0,
        code=type(error).__name__,
    )


def body_too_large(mailbox: str, size: int, limit: int) -> GraphError:
    """Even with every file attachment uploaded apart, the body is over 4 MB."""
    return GraphError(
        f"A message from {mailbox} is too large for Microsoft Graph even "
        f"without its file attachments ({size} bytes to send, at most "
        f"{limit}): Graph takes 4 MB per request. Send the body and inline "
        "parts smaller, or attach large content as files.",
        mailbox=mailbox,
        status=413,
        code="RequestBodyTooLarge",
    )


def attachment_too_large(mailbox: str, filename: str | None, size: int) -> GraphError:
    return GraphError(
        f"The attachment {filename!r} ({size} bytes) is over "
        "Microsoft Graph's limit of 150 MB per attachment, so the message "
        f"from {mailbox} was not sent. Share large files by link instead.",
        mailbox=mailbox,
        status=413,
        code="ErrorAttachmentSizeLimitExceeded",
    )


def upload_failed(mailbox: str, filename: str | None, error: Exception) -> OSError:
    """An upload chunk's request failed; requests' text would quote the secret URL."""
    return ConnectionError(
        f"Uploading {filename!r} to Microsoft Graph for {mailbox} failed "
        f"({type(error).__name__}); nothing was sent."
    )
