"""Exchange Online's SMTP replies, turned into our exceptions and into text.

The one place that reads Exchange's replies: the SMTP transport asks
:func:`explain_auth` about a refused AUTH and :func:`explain_send` about a
refused message, and :func:`answer_lost` says what a missing reply means;
:func:`describe` is how any SMTP failure reads in a log line. Each
explanation says what the reply means and what to do about it.
"""

from __future__ import annotations

import smtplib

from ..exceptions import (
    MailboxFull,
    MessageMayHaveBeenSent,
    SendAsDenied,
    SMTPAuthDisabled,
    SubmissionQuotaExceeded,
    Throttled,
    TokenRejected,
)


def reply_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode(errors="replace")


def reply_text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def describe(error: BaseException) -> str:
    """A failure in one line: the server's reply if it gave one, else the error."""
    if isinstance(error, smtplib.SMTPRecipientsRefused):
        return "; ".join(
            f"{rcpt}: {code} {reply_text(reply)}"
            for rcpt, (code, reply) in error.recipients.items()
        )
    if isinstance(error, smtplib.SMTPResponseException):
        return f"{error.smtp_code} {reply_text(error.smtp_error)}"
    return str(error) or type(error).__name__


def has_code(error: BaseException, enhanced_code: str) -> bool:
    """Is ``error`` a reply with this enhanced status code (the whole of it)?"""
    if not isinstance(error, smtplib.SMTPResponseException):
        return False
    words = reply_bytes(error.smtp_error).split(maxsplit=1)
    # "5.7.3" must not match "5.7.30" or "5.7.39".
    return bool(words) and words[0].rstrip(b";,") == enhanced_code.encode()


def explain_auth(
    error: smtplib.SMTPAuthenticationError,
    mailbox: str,
    *,
    refreshed: bool,
    app_id: str | None = None,
) -> smtplib.SMTPAuthenticationError:
    """Our exception for a refused AUTH; ``refreshed``: with a brand-new token.

    ``app_id``: the app signed in with its own token (an app mailbox).
    """
    code, reply = error.smtp_code, reply_bytes(error.smtp_error)
    text = f"({code} {reply_text(reply)})"
    if app_id and refreshed and has_code(error, "5.7.3"):
        # Exchange gives one reply for both causes; say both.
        return TokenRejected(
            f"Exchange refused the app's token for {mailbox} {text}. Either "
            "Exchange does not know the app (register its service principal: "
            f"`New-ServicePrincipal -AppId {app_id} -ObjectId <object id of the "
            "app's Enterprise application>`), or the app may not use this "
            "mailbox (grant it: `Add-MailboxPermission -Identity "
            f"{mailbox} -User <that service principal's id> -AccessRights "
            "FullAccess`). Run both in Exchange Online PowerShell.",
            mailbox=mailbox,
            smtp_code=code,
            smtp_error=reply,
        )
    if has_code(error, "5.7.139"):
        return SMTPAuthDisabled(
            f"Exchange refused SMTP AUTH for {mailbox}: it is disabled for the "
            f"tenant or the mailbox {text}. This is not a token problem, "
            "and linking again will not help. An Exchange administrator must "
            "enable authenticated SMTP, e.g. `Set-CASMailbox -Identity "
            f"{mailbox} -SmtpClientAuthenticationDisabled $false`, or clear "
            "'Turn off SMTP AUTH protocol for your organization' in the "
            "Microsoft 365 admin center (Settings > Org settings > Mail flow).",
            mailbox=mailbox,
            smtp_code=code,
            smtp_error=reply,
        )
    if refreshed and has_code(error, "5.7.3"):
        return TokenRejected(
            f"Exchange rejected a freshly refreshed token for {mailbox} {text}. "
            "The token is not for SMTP: check that "
            "LIVE_OAUTH_MAIL['SCOPES'] holds https://outlook.office.com/SMTP.Send "
            "and that the app registration has that delegated permission, then "
            "link the mailbox again.",
            mailbox=mailbox,
            smtp_code=code,
            smtp_error=reply,
        )
    return error


def throttling(error: BaseException, mailbox: str) -> Throttled | None:
    """Our Throttled for Exchange's "too many at once" (``432 4.3.2``), else None.

    Exchange allows 3 connections per mailbox and refuses more with it, at the
    greeting, AUTH or MAIL.
    """
    if not (
        isinstance(error, smtplib.SMTPResponseException) and error.smtp_code == 432
    ):
        return None
    if not has_code(error, "4.3.2"):
        return None
    return Throttled(
        f"Exchange refused {mailbox} another connection: it allows 3 at a time "
        f"per mailbox (432 {reply_text(error.smtp_error)}). Other processes or "
        "programs are sending as this mailbox; queue the mail, or send from "
        "fewer workers at once.",
        mailbox=mailbox,
        retry_after=None,
    )


def explain_send(
    error: smtplib.SMTPResponseException, mailbox: str, sender: str | None
) -> Exception:
    """Our exception for a refused message, or ``error`` when we know no better.

    ``sender`` is the message's From address, normalized.
    """
    code, reply = error.smtp_code, reply_bytes(error.smtp_error)
    throttled = throttling(error, mailbox)
    if throttled is not None:
        return throttled
    if _send_as_denied(error):
        return SendAsDenied(
            send_as_advice(mailbox, sender, f"({code} {_first_clause(reply)})"),
            mailbox=mailbox,
            smtp_code=code,
            smtp_error=reply,
        )
    if code == 554 and b"SubmissionQuotaExceeded" in reply:
        return quota_exceeded(mailbox, f"({code} {reply_text(reply)})", code, reply)
    if code == 554 and has_code(error, "5.2.2"):
        return mailbox_full(mailbox, f"({code} {reply_text(reply)})", code, reply)
    return error


def _send_as_denied(error: smtplib.SMTPResponseException) -> bool:
    """Exchange Online refuses Send As in three ways, depending on where it looks.

    ``554 5.2.252 SendAsDenied``, ``554 5.2.0 STOREDRV.Submission.Exception:
    SendAsDeniedException...`` from the mailbox store, and ``550 5.7.60 SMTP;
    Client does not have permissions to send as this sender`` from transport.
    """
    reply = reply_bytes(error.smtp_error)
    if error.smtp_code == 554:
        return b"5.2.252" in reply or b"SendAsDenied" in reply
    return has_code(error, "5.7.60")


def _first_clause(reply: bytes) -> str:
    """The reply up to its first ';': the store's replies go on for a screen."""
    return reply_text(reply).split(";", 1)[0].strip()


def quota_exceeded(
    mailbox: str, said: str, code: int, reply: bytes
) -> SubmissionQuotaExceeded:
    """The daily limit, on either transport; ``said`` quotes the server."""
    return SubmissionQuotaExceeded(
        f"{mailbox} has reached Microsoft's daily sending limit {said}. Sending "
        "works again once the 24-hour window has passed; spread bulk mail over "
        "several mailboxes or use a bulk mail service.",
        mailbox=mailbox,
        smtp_code=code,
        smtp_error=reply,
    )


def mailbox_full(mailbox: str, said: str, code: int, reply: bytes) -> MailboxFull:
    """The mailbox over its quota, on either transport; ``said`` quotes the server."""
    return MailboxFull(
        f"{mailbox} is over its storage quota, so Exchange will not take mail "
        f"from it {said}. Sent messages are saved in its Sent Items, which fill "
        "up on a busy sender: empty Sent Items or Deleted Items, archive, or "
        "raise the mailbox's quota.",
        mailbox=mailbox,
        smtp_code=code,
        smtp_error=reply,
    )


def send_as_advice(mailbox: str, sender: str | None, said: str) -> str:
    """What to do about SendAsDenied; ``said`` quotes the server (any transport)."""
    if not sender or sender == mailbox:
        return (
            f"Exchange refused to send as {mailbox} from {mailbox} itself {said}: "
            "the From header names another address. Make the From header the "
            "mailbox's own address."
        )
    # A Send As address (an Exchange shared mailbox, say) or DEFAULT_ACCOUNT
    # sending for DEFAULT_FROM_EMAIL: Exchange needs the permission granted.
    return (
        f"Exchange refused to let {mailbox} send as {sender} {said}. An Exchange "
        f"administrator must grant {mailbox} Send As on {sender}: "
        f"`Add-RecipientPermission -Identity {sender} -Trustee {mailbox} "
        "-AccessRights SendAs` (or Exchange admin center > Recipients "
        f"> {sender} > Delegation > Send as). Until then, send from {mailbox} "
        "itself."
    )


def answer_lost(mailbox: str, message_id: str, reason: str) -> MessageMayHaveBeenSent:
    """The connection broke, or timed out, after the end of DATA was written."""
    return MessageMayHaveBeenSent(
        f"The connection to Exchange broke while sending from {mailbox} "
        f"({reason}), after the whole message was handed over. It may have been "
        "sent: SMTP cannot tell, and sending it again could deliver it twice, "
        f"so it was not. Look for Message-ID {message_id} in {mailbox}'s Sent "
        "Items before sending it again.",
        mailbox=mailbox,
        code="SMTPServerDisconnected",
    )
