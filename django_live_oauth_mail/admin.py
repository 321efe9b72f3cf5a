"""Admin for linked mailboxes. It shows health, never tokens.

An action reports a mailbox it cannot handle and goes on with the others: one
row whose tokens cannot be decrypted must not hide the rest behind a 500.
"""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db import DatabaseError
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from .accounts import add_app_mailbox, unlink_mailbox
from .diagnostics import send_test_message
from .exceptions import ConfigurationError, LiveOAuthMailError
from .forms import AppMailboxForm, SendAsAddressForm
from .models import MailAccount, SendAsAddress
from .tokens import get_access_token

logger = logging.getLogger(__name__)

# What one row can raise: its cache cannot be decrypted (ConfigurationError),
# Microsoft refused it, or the database did (a lock timeout, say). Tokens and
# accounts write in atomic blocks of their own, so after a failed row the
# connection is still usable for the next one.
_ROW_ERRORS = (ConfigurationError, LiveOAuthMailError, DatabaseError)


class SendAsAddressInline(admin.TabularInline):  # type: ignore[type-arg]
    model = SendAsAddress
    form = SendAsAddressForm
    fields = ("address", "shared")
    extra = 1


@admin.register(MailAccount)
class MailAccountAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "email",
        "user",
        "kind",
        "status",
        "shared",
        "transport",
        "last_used_at",
        "last_refreshed_at",
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
    # The encrypted cache is left out entirely. Only "shared" and "transport"
    # are the site's to decide; the rest is read-only because it mirrors what
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
        "created_at",
        "updated_at",
        "last_used_at",
        "last_refreshed_at",
        "token_expires_at",
        "last_error",
    )
    readonly_fields = tuple(n for n in fields if n not in {"shared", "transport"})
    inlines = (SendAsAddressInline,)
    actions = ("send_test_message", "refresh_now", "disconnect")

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
                self._report_row_error(request, account, error)
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
                self._report_row_error(request, account, error)
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
    def disconnect(self, request: HttpRequest, queryset: QuerySet[MailAccount]) -> None:
        count = 0
        for account in queryset.select_related("user"):
            try:
                unlink_mailbox(account)
            except DatabaseError as error:
                self._report_row_error(request, account, error)
            else:
                count += 1
        if count:
            self.message_user(
                request,
                ngettext(
                    "Disconnected %d mailbox.", "Disconnected %d mailboxes.", count
                )
                % count,
                messages.SUCCESS,
            )

    def _report_row_error(
        self, request: HttpRequest, account: MailAccount, error: Exception
    ) -> None:
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
        edited = [n for n in ("shared", "transport") if n in form.changed_data]
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
        return super().get_form(request, obj, change=change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.add_form.Meta.fields if obj is None else self.fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return ()
        # An app mailbox has no owner: it is shared, or no code could use it.
        return (*self.readonly_fields, "shared") if obj.is_app else self.readonly_fields

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return () if obj is None else self.inlines
