"""Admin for linked mailboxes and the outbox. It shows health, never tokens.

An action reports a mailbox it cannot handle and goes on with the others: one
row whose tokens cannot be decrypted must not hide the rest behind a 500.
The outbox is a record: its rows are retried, cancelled or deleted, never
edited, and a message's body shows only to those allowed to read it.
"""

from __future__ import annotations

import datetime
import logging
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.formats import date_format
from django.utils.functional import Promise
from django.utils.html import format_html
from django.utils.text import Truncator
from django.utils.timesince import timesince
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .admin_disconnect import disconnect_selected
from .diagnostics import send_test_message
from .exceptions import ConfigurationError, LiveOAuthMailError, TokenCacheUnreadable
from .forms import AppMailboxForm, MailAccountForm, SendAsAddressForm
from .identity.accounts import add_app_mailbox, unlink_mailbox
from .identity.tokens import get_access_token
from .models import MailAccount, OutboundMessage, SendAsAddress
from .queue import outbox, service

logger = logging.getLogger(__name__)

# What one row can raise: its cache cannot be decrypted (ConfigurationError),
# Microsoft refused it, or the database did (a lock timeout, say). Tokens and
# accounts write in atomic blocks of their own, so after a failed row the
# connection is still usable for the next one.
_ROW_ERRORS = (ConfigurationError, LiveOAuthMailError, DatabaseError)

# What the site decides about a mailbox; the rest mirrors what Microsoft said.
_MAILBOX_SETTINGS = ("shared", "transport", "send_rate", "daily_recipients")

BODY_PERMISSION = "live_oauth_mail.view_outboundmessage_body"


class SendAsAddressInline(admin.TabularInline):  # type: ignore[type-arg]
    model = SendAsAddress
    form = SendAsAddressForm
    fields = ("address", "shared")
    extra = 1


@admin.register(MailAccount)
class MailAccountAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # Few columns, so the list fits a 1280-pixel screen beside its filters;
    # the page of a mailbox has the rest (last refresh, token expiry...).
    list_display = (
        "email",
        "user",
        "kind",
        "status",
        "shared",
        "transport",
        "last_used",
    )
    list_filter = ("status", "kind", "shared", "transport")
    # The user model's own login field: not every user model has "username".
    search_fields = (
        "email",
        "display_name",
        f"user__{get_user_model().USERNAME_FIELD}",
        "send_as_addresses__address",
    )
    list_select_related = ("user",)
    ordering = ("email",)
    # The encrypted cache is left out entirely. Only _MAILBOX_SETTINGS are the
    # site's to decide; the rest is read-only because it mirrors what
    # Microsoft said, and editing it would lie.
    fields = (
        "user",
        "email",
        "display_name",
        "kind",
        "tenant_id",
        "home_account_id",
        "status",
        "shared",
        "transport",
        "send_rate",
        "daily_recipients",
        "created_at",
        "updated_at",
        "last_used_at",
        "last_refreshed_at",
        "token_expires_at",
        "last_error",
    )
    readonly_fields = tuple(n for n in fields if n not in _MAILBOX_SETTINGS)
    form = MailAccountForm
    inlines = (SendAsAddressInline,)
    actions = ("send_test_message", "refresh_now", "disconnect")

    @admin.display(description=_("last used"), ordering="last_used_at")
    def last_used(self, row: MailAccount) -> str | Promise:
        if row.last_used_at is None:
            return _("never")
        if timezone.now() - row.last_used_at < datetime.timedelta(minutes=1):
            return _("just now")  # not "0 minutes ago"
        return _("%(time)s ago") % {"time": timesince(row.last_used_at, depth=1)}

    @admin.action(description=_("Send a test message to me"), permissions=["change"])
    def send_test_message(
        self, request: HttpRequest, queryset: QuerySet[MailAccount]
    ) -> None:
        to = getattr(request.user, "email", "")
        if not to:
            self.message_user(
                request,
                _("Your user has no email address to send the test message to."),
                messages.ERROR,
            )
            return
        for account in queryset:
            try:
                steps = send_test_message(account, to)
            except _ROW_ERRORS as error:
                self.report_row_error(request, account, error)
                continue
            last = steps[-1]
            if last.ok:
                self.message_user(
                    request,
                    _("%(mailbox)s: test message sent to %(to)s.")
                    % {"mailbox": account.email, "to": to},
                    messages.SUCCESS,
                )
            else:
                self.message_user(
                    request,
                    _("%(mailbox)s: failed at %(step)s: %(detail)s")
                    % {
                        "mailbox": account.email,
                        "step": last.name,
                        "detail": last.detail,
                    },
                    messages.ERROR,
                )

    @admin.action(description=_("Refresh the token now"), permissions=["change"])
    def refresh_now(
        self, request: HttpRequest, queryset: QuerySet[MailAccount]
    ) -> None:
        refreshed = 0
        for account in queryset:
            try:
                get_access_token(account, force_refresh=True)
            except _ROW_ERRORS as error:
                self.report_row_error(request, account, error)
            else:
                refreshed += 1
        if refreshed:
            self.message_user(
                request,
                ngettext("Refreshed %d mailbox.", "Refreshed %d mailboxes.", refreshed)
                % refreshed,
                messages.SUCCESS,
            )

    @admin.action(
        description=_("Disconnect (delete the link and its tokens)"),
        permissions=["delete"],
    )
    def disconnect(
        self, request: HttpRequest, queryset: QuerySet[MailAccount]
    ) -> TemplateResponse | None:
        return disconnect_selected(self, request, queryset)

    def report_row_error(
        self, request: HttpRequest, account: MailAccount, error: Exception
    ) -> None:
        """Say why an action failed for one mailbox; it goes on with the rest."""
        if isinstance(error, DatabaseError):
            # Not the mailbox's fault, and its text alone rarely says why.
            logger.warning("Admin action on %s failed.", account.email, exc_info=error)
        self.message_user(request, f"{account.email}: {error}", messages.ERROR)

    def get_actions(self, request: HttpRequest, action_location: Any = None) -> Any:
        # "Disconnect" replaces bulk delete, so account_disconnected is sent.
        # (action_location: Django 6.1 passes it; older versions do not.)
        if action_location is None:
            actions = super().get_actions(request)
        else:
            actions = super().get_actions(request, action_location=action_location)  # type: ignore[call-arg]
        actions.pop("delete_selected", None)
        return actions

    def save_model(
        self, request: HttpRequest, obj: MailAccount, form: Any, change: bool
    ) -> None:
        # Write only what the form edits: a full save would put back the token
        # cache and status read when the request began, undoing a refresh
        # (and the rotated refresh token) that committed meanwhile.
        if not change:
            account, _ = add_app_mailbox(obj.email, obj.tenant_id)
            obj.pk, obj.email = account.pk, account.email
            obj.kind, obj.shared = account.kind, account.shared
            return
        edited = [n for n in _MAILBOX_SETTINGS if n in form.changed_data]
        if edited:
            obj.save(update_fields=[*edited, "updated_at"])

    def delete_model(self, request: HttpRequest, obj: MailAccount) -> None:
        unlink_mailbox(obj)

    # People link their own mailboxes through the OAuth flow; the admin adds
    # only app mailboxes, which no one links (see add_app_mailbox).
    add_form = AppMailboxForm

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = self.add_form
            kwargs["fields"] = self.add_form.Meta.fields
        form = super().get_form(request, obj, change=change, **kwargs)
        # A new class per call (modelform_factory), so this is this request's.
        form.requested_by = request.user  # type: ignore[attr-defined]
        return form

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_form.Meta.fields if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        # An app mailbox has no owner: it is shared, or no code could use it.
        return (*self.readonly_fields, "shared") if obj.is_app else self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.inlines

    def get_formset_kwargs(
        self, request: HttpRequest, obj: Any, inline: Any, prefix: str
    ) -> dict[str, Any]:
        # Whether a Send As entry may be shared depends on who shares it.
        kwargs = super().get_formset_kwargs(request, obj, inline, prefix)
        return {**kwargs, "form_kwargs": {"requested_by": request.user}}


def _short(moment: datetime.datetime) -> str:
    """A time in the site's short format, which fits a narrow column."""
    if timezone.is_aware(moment):  # naive with USE_TZ = False
        moment = timezone.localtime(moment)
    return date_format(moment, "SHORT_DATETIME_FORMAT")


@admin.register(OutboundMessage)
class OutboundMessageAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    # Short columns, so the list fits a 1280-pixel screen beside its filters.
    list_display = (
        "queued_at",
        "mailbox",
        "subject",
        "status",
        "attempts",
        "sent_or_due",
        "last_error_summary",
    )
    list_filter = ("status", "mailbox")
    search_fields = ("subject", "recipients", "from_email", "message_id")
    date_hierarchy = "created_at"
    ordering = ("-created_at", "-pk")
    # Every plain field; the encrypted message never, its text by permission
    # (see get_fields).
    fields = (
        "account",
        "mailbox",
        "explicit",
        "acting_user",
        "from_email",
        "subject",
        "recipients",
        "recipient_count",
        "message_id",
        "status",
        "attempts",
        "last_error",
        "created_at",
        "updated_at",
        "send_after",
        "started_at",
        "sent_at",
    )
    actions = ("retry", "cancel")

    @admin.display(description=_("queued"), ordering="created_at")
    def queued_at(self, row: OutboundMessage) -> str:
        return _short(row.created_at)

    @admin.display(description=_("sent / not before"), ordering="sent_at")
    def sent_or_due(self, row: OutboundMessage) -> str | None:
        if row.sent_at is not None:
            return _short(row.sent_at)
        if row.send_after is not None and row.status in OutboundMessage.WAITING:
            return _("not before %(time)s") % {"time": _short(row.send_after)}
        return None  # the admin's empty_value_display

    @admin.display(description=_("error or reason"), ordering="last_error")
    def last_error_summary(self, row: OutboundMessage) -> str:
        return Truncator(row.last_error).chars(80)

    @admin.display(description=_("message"))
    def message(self, row: OutboundMessage) -> str:
        try:
            mime = row.read_message()
        except TokenCacheUnreadable as error:
            return str(error)
        return format_html("<pre>{}</pre>", mime.decode(errors="replace"))

    @admin.display(description=_("message"))
    def message_withheld(self, row: OutboundMessage) -> str:
        return _(
            "Showing the message needs the permission “Can view the body of "
            "queued messages” (%(permission)s)."
        ) % {"permission": BODY_PERMISSION}

    @admin.action(description=_("Retry (queue again)"), permissions=["change"])
    def retry(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        retried = service.retry(selected)
        self._report(
            request,
            retried,
            ngettext("Queued %d message again.", "Queued %d messages again.", retried)
            % retried,
            len(selected) - retried,
            _("only failed, unknown or cancelled messages can be retried"),
        )

    @admin.action(description=_("Cancel (do not send)"), permissions=["change"])
    def cancel(self, request: HttpRequest, queryset: QuerySet[OutboundMessage]) -> None:
        selected = list(queryset.values_list("pk", flat=True))
        cancelled = outbox.cancel(selected)
        self._report(
            request,
            cancelled,
            ngettext("Cancelled %d message.", "Cancelled %d messages.", cancelled)
            % cancelled,
            len(selected) - cancelled,
            _("only queued or deferred messages can be cancelled"),
        )

    def _report(
        self,
        request: HttpRequest,
        done: int,
        text: str,
        skipped: int,
        why: str | Promise,
    ) -> None:
        """Say how many rows changed, and how many were skipped and why."""
        if done:
            self.message_user(request, text, messages.SUCCESS)
        if skipped:
            self.message_user(
                request,
                ngettext(
                    "Skipped %(count)d message: %(why)s.",
                    "Skipped %(count)d messages: %(why)s.",
                    skipped,
                )
                % {"count": skipped, "why": why},
                messages.WARNING,
            )

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        body = (
            "message" if request.user.has_perm(BODY_PERMISSION) else "message_withheld"
        )
        return (*self.fields, body)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.get_fields(request, obj)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change permission is what retrying and cancelling need (actions
        # ask with no row); a row itself is a record, so its page is Django's
        # read-only view, with no Save button, and a POST to it is refused.
        return obj is None and super().has_change_permission(request)
