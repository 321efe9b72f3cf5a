"""Microsoft Graph's mail errors, turned into our exceptions with advice.

The one place that reads Graph's answers, as :mod:`.smtp_replies` is for SMTP
replies. Graph answers ``{"error": {"code": ..., "message": ...}}``; the code
says what happened, the status whether trying again may help. A refusal that
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
