"""The admin's bulk Disconnect, confirmed on a page first, as delete_selected is.

Disconnecting deletes tokens that only the mailbox's owner can give back by
signing in again, and fails the mail waiting to go out, so one stray click on
the changelist must not do it.
"""

from __future__ import annotations

from typing import Any, Protocol

from django.contrib import messages
from django.contrib.admin import AdminSite, helpers
from django.db import DatabaseError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from .identity.accounts import unlink_mailbox
from .models import MailAccount, OutboundMessage


class MailboxAdmin(Protocol):
    """What this needs of the mailboxes' ModelAdmin (``admin.py`` imports this
    module, so it is described here rather than imported)."""

    admin_site: AdminSite

    @property
    def media(self) -> Any: ...

    def message_user(self, request: HttpRequest, message: str, level: int) -> None: ...

    def report_row_error(
        self, request: HttpRequest, account: MailAccount, error: Exception
    ) -> None: ...


TEMPLATE = "admin/live_oauth_mail/mailaccount/disconnect_confirmation.html"


def disconnect_selected(
    modeladmin: MailboxAdmin,
    request: HttpRequest,
    queryset: QuerySet[MailAccount],
) -> TemplateResponse | None:
    """Show what disconnecting does; with ``post=yes`` do it and return None."""
    if request.POST.get("post") == "yes":
        _disconnect(modeladmin, request, queryset)
        return None
    waiting = Count(
        "outbound_messages",
        filter=Q(outbound_messages__status__in=OutboundMessage.WAITING),
    )
    mailboxes = list(
        queryset.select_related("user").annotate(waiting=waiting).order_by("email")
    )
    opts = MailAccount._meta
    request.current_app = modeladmin.admin_site.name
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": _("Disconnect mailboxes?"),
        "subtitle": None,
        "mailboxes": mailboxes,
        "waiting": sum(m.waiting for m in mailboxes),
        "opts": opts,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "media": modeladmin.media,
    }
    return TemplateResponse(request, TEMPLATE, context)


def _disconnect(
    modeladmin: MailboxAdmin,
    request: HttpRequest,
    queryset: QuerySet[MailAccount],
) -> None:
    count = 0
    for account in queryset.select_related("user"):
        try:
            unlink_mailbox(account)
        except DatabaseError as error:
            modeladmin.report_row_error(request, account, error)
        else:
            count += 1
    if count:
        modeladmin.message_user(
            request,
            ngettext("Disconnected %d mailbox.", "Disconnected %d mailboxes.", count)
            % count,
            messages.SUCCESS,
        )
