from __future__ import annotations

import smtplib
from email.utils import formataddr
from typing import Any

import django
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.core.mail import EmailMessage
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_ratelimit.core import is_ratelimited

from django_live_oauth_mail.conf import conf
from django_live_oauth_mail.exceptions import LiveOAuthMailError
from django_live_oauth_mail.models import MailAccount, SendAsAddress
from django_live_oauth_mail.transports.smtp_replies import describe

from . import standins
from .forms import ComposeForm, ContactForm

#: An envelope, drawn in SVG: the demo's icon, so no page logs a 404 for it.
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect x="2" y="7" width="28" height="18" rx="3" fill="#2b6cb0"/>'
    '<path d="M3 9l13 9 13-9" fill="none" stroke="#fff" stroke-width="2.5"/></svg>'
)


@require_GET
def favicon(request: HttpRequest) -> HttpResponse:
    response = HttpResponse(FAVICON, content_type="image/svg+xml")
    response["Cache-Control"] = "max-age=86400"
    return response


@require_GET
def home(request: HttpRequest) -> HttpResponse:
    """What to try next: link a mailbox, send a message, see it arrive."""
    context: dict[str, Any] = {"linked": False, "sent": False, "received": 0}
    if request.user.is_authenticated:
        mailboxes = MailAccount.objects.filter(user=request.user)
        context["linked"] = mailboxes.active().exists()
        context["sent"] = mailboxes.filter(last_used_at__isnull=False).exists()
    context["received"] = len(_visible_mail(request))
    return render(request, "demo/home.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def compose(request: HttpRequest) -> HttpResponse:
    """Send a message from one of the user's linked mailboxes.

    A message that was not sent comes back as typed, with the reason: the
    mailbox may have been disconnected in another tab, or Microsoft refused.
    """
    form = ComposeForm(request.POST or None, request.FILES or None, user=request.user)
    error = ""
    if request.method == "POST":
        if form.is_valid():
            message = form.build_message()
            # No user= and no account=: SendingAsMiddleware makes request.user
            # the acting user, so routing sends from their own mailbox.
            error = _send(message)
            if not error:
                messages.success(
                    request,
                    f"Sent “{message.subject}” from "
                    f"{form.cleaned_data['sender'].email} to {', '.join(message.to)}.",
                )
                return redirect("compose")
        else:
            error = " ".join(form.errors.get("sender", [])) or (
                "Some fields need a change; see below."
            )
    # The chosen mailbox stopped sending since the page was drawn: offer to
    # link it again.
    chosen = request.POST.get("sender", "")
    mailboxes = MailAccount.objects.active().filter(user=request.user)
    relink = chosen if error and not mailboxes.filter(email=chosen).exists() else ""
    return render(
        request,
        "demo/compose.html",
        {
            "form": form,
            "error": error,
            # The typed message is never dropped, even with no mailbox left.
            "show_form": bool(form.mailboxes) or form.is_bound,
            "needs_reconnect": MailAccount.objects.filter(
                user=request.user, status=MailAccount.Status.RECONNECT_REQUIRED
            ).exists(),
            "relink": relink,
            "attachment_dropped": bool(error and request.FILES),
        },
    )


@require_http_methods(["GET", "POST"])
def contact(request: HttpRequest) -> HttpResponse:
    """Anyone may write to the site; a shared mailbox sends it to the site."""
    sender = _site_sender()
    form = ContactForm(request.POST or None)
    error = ""
    status = 200
    if request.method == "POST" and sender is not None and form.is_valid():
        error = _over_contact_limit(request)
        if error:
            status = 429  # Too Many Requests; the page keeps what was typed
        else:
            error = _queue_contact_message(form, sender)
        if not error:
            messages.success(
                request,
                f"Thank you, {form.cleaned_data['name']}: your message was queued "
                f"to go out from {sender[1]} in a moment, and replies will go to "
                f"{form.cleaned_data['email']}.",
            )
            return redirect("contact")
    return render(
        request,
        "demo/contact.html",
        {
            "form": form,
            "error": error,
            "sender": sender,
            "recipients": settings.CONTACT_RECIPIENTS
            or ([sender[1]] if sender else []),
            "routing": conf.ROUTING,
        },
        status=status,
    )


def _queue_contact_message(form: ContactForm, sender: tuple[str, str]) -> str:
    """Queue the visitor's message; "" when queued, else why not, for the page."""
    name, address = sender
    # The recipients are the site's, never the visitor's: an open form that
    # let visitors choose them would relay spam.
    recipients = settings.CONTACT_RECIPIENTS or [address]
    message = form.build_message(formataddr((name, address)), recipients)
    # Queued: the visitor does not wait for Microsoft; the worker sends it.
    message.connection = _queued_connection()
    # A real site would log the error and apologise; the demo shows it.
    return _send(message)


def _over_contact_limit(request: HttpRequest) -> str:
    """Count one message against the contact form's limits; why not, or "".

    Only messages about to be queued count, so a visitor who mistyped an
    address is not held back. The visitor's limit comes first: a message it
    refuses does not use up the site's.
    """
    if is_ratelimited(
        request,
        group="demo.contact.visitor",
        key="ip",
        rate=settings.CONTACT_LIMIT_PER_VISITOR,
        increment=True,
    ):
        return (
            "Too many messages from you just now: please try again later, or "
            "write to us from your own mail program."
        )
    if is_ratelimited(
        request,
        group="demo.contact.site",
        key=_whole_site,
        rate=settings.CONTACT_LIMIT_SITE_WIDE,
        increment=True,
    ):
        return "Too many messages reached the site just now: please try again later."
    return ""


def _whole_site(group: str, request: HttpRequest) -> str:
    """django-ratelimit's key for a limit that every visitor shares."""
    return "everyone"


def _site_sender() -> tuple[str, str] | None:
    """(name, address) the site sends as: the first shared mailbox or address.

    With ROUTING "owner" only these may send for anyone, including anonymous
    visitors; any code on the site may use them, so an administrator must
    mark them shared in the admin.
    """
    mailbox = (
        MailAccount.objects.active()
        .filter(shared=True)
        .order_by("created_at", "pk")
        .first()
    )
    if mailbox is not None:
        return mailbox.display_name, mailbox.email
    send_as = (
        SendAsAddress.objects.filter(
            shared=True, account__status=MailAccount.Status.ACTIVE
        )
        .order_by("pk")
        .first()
    )
    if send_as is not None:
        return "", send_as.address
    return None


def _queued_connection() -> Any:
    """The queued backend, as the installed Django builds backends."""
    if django.VERSION >= (6, 1):
        return mail.mailers["queued"]
    return mail.get_connection(settings.QUEUED_BACKEND)


def _send(message: EmailMessage) -> str:
    """Send ``message``; "" when it went out, else why not, for the page."""
    try:
        message.send()
    except LiveOAuthMailError as exc:
        return str(exc)  # written to be shown to the user
    except smtplib.SMTPException as exc:
        return f"The mail server refused the message: {describe(exc)}"
    except OSError as exc:
        config = settings.LIVE_OAUTH_MAIL
        where = f"{config.get('SMTP_HOST', 'smtp.office365.com')}:"
        where += str(config.get("SMTP_PORT", 587))
        return f"Could not reach the mail server at {where} ({exc})."
    return ""


@login_required
@require_GET
def dev_inbox(request: HttpRequest) -> HttpResponse:
    """What the local stand-ins received (SMTP or Graph), newest first.

    Staff see every message, Bcc recipients included, and the SMTP AUTH
    switches; anyone else sees only the messages they sent (_visible_mail).
    """
    running = standins.running()
    inbox = [_summary(number, item) for number, item in _visible_mail(request)]
    inbox.reverse()
    switches = []
    if running is not None and request.user.is_staff:
        off = {address.casefold() for address in running.smtp.smtp_auth_disabled}
        switches = [
            {
                "email": account.email,
                "smtp_auth": account.email.casefold() not in off,
                "transport": account.get_transport_display(),
                "sends_through": account.protocol,
            }
            for account in _switchable(request)
        ]
    return render(
        request,
        "demo/inbox.html",
        {
            "inbox": inbox,
            "running": running is not None,
            "switches": switches,
            "everything": request.user.is_staff,
        },
    )


def _visible_mail(request: HttpRequest) -> list[tuple[int, Any]]:
    """(number, message) of each received message the user may read.

    Staff may read them all. Anyone else may read the messages they sent: those
    the stand-in accepted after one of their linked mailboxes signed in
    (``authenticated_as``). That is what Microsoft checked, unlike the From
    header, which anyone may write; Send As addresses are covered, as their
    mail signs in as the user's mailbox. Mail from a shared mailbox (the
    contact form's) is the site's: staff only.
    """
    running = standins.running()
    if running is None or not request.user.is_authenticated:
        return []
    received = list(enumerate(running.smtp.messages, 1))
    if request.user.is_staff:
        return received
    theirs = {
        address.casefold()
        for address in MailAccount.objects.filter(
            user=request.user.pk, shared=False
        ).values_list("email", flat=True)
    }
    return [
        (number, message)
        for number, message in received
        if (message.authenticated_as or "").casefold() in theirs
    ]


@login_required
@require_POST
def smtp_auth(request: HttpRequest) -> HttpResponse:
    """Turn SMTP AUTH off or on for a mailbox, as an Exchange admin would.

    Only staff, only on the stand-in, and only for their own or shared
    mailboxes: a shared mailbox sends the site's mail for everyone.
    With TRANSPORT "auto", the next send from a mailbox whose SMTP AUTH is
    off goes through Graph, and the mailbox stays there.
    """
    if not request.user.is_staff:
        raise PermissionDenied("Only staff may switch SMTP AUTH.")
    running = standins.running()
    allowed = {account.email for account in _switchable(request)}
    mailbox = request.POST.get("mailbox", "")
    if running is None or mailbox not in allowed:
        messages.error(request, "There is no such mailbox to switch.")
        return redirect("dev_inbox")
    if request.POST.get("smtp_auth") == "off":
        running.smtp.smtp_auth_disabled.add(mailbox)
        messages.info(
            request,
            f"SMTP AUTH is now off for {mailbox}: Exchange answers 535 5.7.139. "
            "Send from it, and see it go out through Microsoft Graph.",
        )
    else:
        running.smtp.smtp_auth_disabled.discard(mailbox)
        messages.info(
            request,
            f"SMTP AUTH is on again for {mailbox}. A mailbox moved to Graph stays "
            "there until you clear its Transport in the admin.",
        )
    return redirect("dev_inbox")


def _switchable(request: HttpRequest) -> list[MailAccount]:
    """The user's own mailboxes and the shared ones."""
    mailboxes = MailAccount.objects.active().filter(
        Q(user=request.user.pk) | Q(shared=True)
    )
    return list(mailboxes.order_by("email"))


def _summary(number: int, received: Any) -> dict[str, Any]:
    parsed = received.message
    return {
        "number": number,
        "subject": received.subject or "(no subject)",
        "from": str(parsed.get("From", "")),
        "to": str(parsed.get("To", "")),
        "cc": str(parsed.get("Cc", "")),
        "reply_to": str(parsed.get("Reply-To", "")),
        "date": str(parsed.get("Date", "")),
        "envelope_from": received.mail_from,
        "envelope_to": ", ".join(received.rcpt_tos),
        "authenticated_as": received.authenticated_as,
        "mechanism": received.mechanism,
        "body": received.text,
        "attachments": [
            {"name": name or "(unnamed)", "size": len(content)}
            for name, content in received.attachments
        ],
    }
