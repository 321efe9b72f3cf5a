"""A linked Microsoft mailbox and its encrypted token cache."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import crypto
from .conf import Protocol, conf
from .exceptions import TokenCacheUnreadable


class MailAccountQuerySet(models.QuerySet["MailAccount"]):
    def active(self) -> MailAccountQuerySet:
        return self.filter(status=MailAccount.Status.ACTIVE)

    def for_address(self, address: str) -> MailAccountQuerySet:
        return self.filter(email=normalize_email(address))


def normalize_email(address: str) -> str:
    """Exchange treats mailbox addresses case-insensitively; so do we."""
    return address.strip().lower()


class MailAccount(models.Model):
    """A user's Microsoft mailbox, linked once with OAuth and used to send."""

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        RECONNECT_REQUIRED = "reconnect_required", _("Reconnect required")

    class Kind(models.TextChoices):
        PERSONAL = "personal", _("Personal (Outlook.com)")
        WORK = "work", _("Work or school (Microsoft 365)")
        APP = "app", _("App (client credentials)")

    # None for an app mailbox: the app itself signs in, no person linked it.
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="mail_accounts",
        verbose_name=_("user"),
        null=True,
        blank=True,
    )
    email = models.EmailField(_("mailbox"), max_length=254, db_index=True)
    display_name = models.CharField(_("display name"), max_length=255, blank=True)
    kind = models.CharField(_("kind"), max_length=16, choices=Kind.choices)
    tenant_id = models.CharField(_("tenant id"), max_length=64, blank=True)
    # msal's account key ("<object id>.<tenant id>"); not a secret.
    home_account_id = models.CharField(_("home account id"), max_length=255)
    status = models.CharField(
        _("status"), max_length=32, choices=Status.choices, default=Status.ACTIVE
    )
    # Linked through the device-code flow: its refresh token belongs to a public
    # client, and Microsoft refuses a client secret when redeeming it.
    public_client = models.BooleanField(_("linked with a device code"), default=False)
    # A Fernet token wrapping msal's serialized token cache. Never plaintext.
    encrypted_token_cache = models.TextField(editable=False)
    created_at = models.DateTimeField(_("linked at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    last_used_at = models.DateTimeField(_("last used"), null=True, blank=True)
    last_refreshed_at = models.DateTimeField(_("last refreshed"), null=True, blank=True)
    token_expires_at = models.DateTimeField(
        _("access token expires"), null=True, blank=True
    )
    last_error = models.TextField(_("last error"), blank=True)
    # Set while one worker redeems the refresh token (see tokens.py), so the
    # others wait for its result instead of redeeming the same token.
    refreshing_until = models.DateTimeField(
        _("refresh in progress until"), null=True, blank=True, editable=False
    )
    # Any code may send from a shared mailbox (noreply@, support@); others
    # only send for their owner. See routing.py.
    shared = models.BooleanField(
        _("shared"),
        default=False,
        help_text=_(
            "Any code on the site may send from a shared mailbox, not only its "
            "owner's requests."
        ),
    )

    # Which transport sends its mail; "" follows LIVE_OAUTH_MAIL["TRANSPORT"].
    # In "auto" mode a mailbox whose SMTP AUTH is off is moved to "graph".
    transport = models.CharField(
        _("transport"),
        max_length=8,
        blank=True,
        default="",
        choices=[
            ("", _("Follow the TRANSPORT setting")),
            ("smtp", _("SMTP")),
            ("graph", _("Microsoft Graph")),
        ],
        help_text=_(
            "Used when TRANSPORT is 'graph' or 'auto'. Set to Microsoft Graph "
            "automatically when SMTP AUTH is off for this mailbox (TRANSPORT "
            "'auto'); clear it to try SMTP again."
        ),
    )

    objects = MailAccountQuerySet.as_manager()

    class Meta:
        verbose_name = _("linked mailbox")
        verbose_name_plural = _("linked mailboxes")
        ordering = ["email", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["user", "email"], name="live_oauth_mail_one_link_per_mailbox"
            ),
            # NULL users are all different to the one above.
            models.UniqueConstraint(
                fields=["email"],
                condition=models.Q(kind="app"),
                name="live_oauth_mail_one_app_mailbox_per_address",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def is_app(self) -> bool:
        """Sends with the app's own token (client credentials), as no one."""
        return self.kind == self.Kind.APP

    @property
    def protocol(self) -> Protocol:
        """What its mail goes through now: its own choice, else the setting's.

        With ``TRANSPORT = "smtp"`` Graph is not configured (linking does not
        ask for its consent), so every mailbox sends through SMTP.
        """
        setting = conf.TRANSPORT
        if setting == "smtp":
            return "smtp"
        if self.transport == "graph" or (not self.transport and setting == "graph"):
            return "graph"
        return "smtp"

    def read_token_cache(self) -> str:
        """The decrypted msal cache, as JSON text. Keep it out of logs."""
        if not self.encrypted_token_cache:
            return ""
        try:
            return crypto.decrypt(self.encrypted_token_cache)
        except crypto.InvalidToken:
            raise TokenCacheUnreadable(
                f"The stored tokens of {self.email} cannot be decrypted with the "
                "current LIVE_OAUTH_MAIL['ENCRYPTION_KEYS'] (or SECRET_KEY). Put the "
                "key they were written with back (after the newest key, or in "
                "SECRET_KEY_FALLBACKS), or have the mailbox linked again.",
                mailbox=self.email,
            ) from None

    def write_token_cache(self, serialized: str) -> None:
        """Encrypt and set the msal cache; the caller saves."""
        self.encrypted_token_cache = crypto.encrypt(serialized)


class SendAsAddress(models.Model):
    """Another address a mailbox may send as (an Exchange shared mailbox, say).

    Exchange must also grant the mailbox Send As on the address; this row only
    lets our routing pick the mailbox for messages from it.
    """

    account = models.ForeignKey(
        MailAccount,
        on_delete=models.CASCADE,
        related_name="send_as_addresses",
        verbose_name=_("mailbox"),
    )
    address = models.EmailField(_("send as"), max_length=254, db_index=True)
    shared = models.BooleanField(
        _("shared"),
        default=False,
        help_text=_(
            "Any code on the site may send as this address through the mailbox, "
            "not only its owner's requests."
        ),
    )

    class Meta:
        verbose_name = _("send as address")
        verbose_name_plural = _("send as addresses")
        ordering = ["address", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["account", "address"], name="live_oauth_mail_one_send_as"
            )
        ]

    def __str__(self) -> str:
        return self.address

    def save(self, *args: Any, **kwargs: Any) -> None:
        self.address = normalize_email(self.address)
        super().save(*args, **kwargs)
