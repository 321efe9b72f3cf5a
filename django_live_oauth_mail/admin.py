"""Admin for linked mailboxes. It shows health, never tokens."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from .models import MailAccount


@admin.register(MailAccount)
class MailAccountAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    list_display = (
        "email",
        "user",
        "kind",
        "status",
        "last_used_at",
        "last_refreshed_at",
    )
    list_filter = ("status", "kind")
    search_fields = ("email", "display_name", "user__username", "user__email")
    list_select_related = ("user",)
    ordering = ("email",)
    # The encrypted cache is left out entirely; everything else is read-only
    # because it mirrors what Microsoft said, and editing it would lie.
    fields = (
        "user",
        "email",
        "display_name",
        "kind",
        "tenant_id",
        "home_account_id",
        "status",
        "created_at",
        "updated_at",
        "last_used_at",
        "last_refreshed_at",
        "token_expires_at",
        "last_error",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # Mailboxes are linked through the OAuth flow only.
