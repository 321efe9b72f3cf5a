"""The stored state: linked mailboxes, their Send As addresses, the outbox.

``MailAccount`` is a linked mailbox with its encrypted token cache and the
lease that lets one process refresh it; ``SendAsAddress`` is another address
a mailbox may send as; ``OutboundMessage`` is a queued message, encrypted,
with its delivery status.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils.translation import gettext_lazy as _

from . import crypto
from .conf import conf, parse_rate
from .exceptions import ConfigurationError, TokenCacheUnreadable
from .row_locks import SendingLocks


class MailAccountQuerySet(SendingLocks["MailAccount"]):
    def active(self) -> MailAccountQuerySet:
        return self.filter(status=MailAccount.Status.ACTIVE)

    def for_address(self, address: str) -> MailAccountQuerySet:
        return self.filter(email=normalize_email(address))


def normalize_email(address: str) -> str:
    """Exchange treats mailbox addresses case-insensitively; so do we."""
    return address.strip().lower()


def validate_send_rate(value: str) -> None:
    """Refuse a send rate the workers could not pace by (see ``parse_rate``)."""
    try:
        parse_rate(value, "The send rate")
    except ConfigurationError as error:
        raise ValidationError(str(error), code="invalid_rate") from None


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

    # Pacing of queued mail (see pacing.py); empty follows the settings.
    send_rate = models.CharField(
        _("send rate"),
        max_length=32,
        blank=True,
        validators=[validate_send_rate],
        help_text=_(
            "Queued messages per period, such as '30/minute': 1 to 10,000 per "
            "second, minute, hour or day. Empty follows "
            "LIVE_OAUTH_MAIL['SEND_RATE']."
        ),
    )
    daily_recipients = models.PositiveIntegerField(
        _("daily recipients"),
        null=True,
        blank=True,
        help_text=_(
            "Recipients of queued mail per 24 hours. Empty follows "
            "LIVE_OAUTH_MAIL['DAILY_RECIPIENTS'] for the mailbox's kind."
        ),
    )

    # Worker processes holding an SMTP session to it: {holder: ISO expiry}.
    # See session_leases.py.
    session_leases = models.JSONField(default=dict, blank=True, editable=False)

    objects = MailAccountQuerySet.as_manager()

    class Meta:
        verbose_name = _("linked mailbox")
        verbose_name_plural = _("linked mailboxes")
        ordering = ["email", "pk"]
        permissions = [
            # Sharing hands a person's address to the whole site: more than
            # changing a mailbox's pacing or transport (see address_claims).
            ("share_mailaccount", _("Can share a person's mailbox with the site"))
        ]
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
    def protocol(self) -> str:
        """What its mail goes through now: its own choice, else the setting's.

        With ``TRANSPORT = "smtp"`` Graph is not configured (linking does not
        ask for its consent), so every Microsoft mailbox sends through SMTP.
        Another provider's transport (see :mod:`.transports.registry`) is
        the mailbox's own, whatever the setting.
        """
        if self.transport not in ("", "smtp", "graph"):
            return self.transport
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


class OutboundMessageQuerySet(models.QuerySet["OutboundMessage"]):
    def retriable(self) -> OutboundMessageQuerySet:
        """The messages a person may queue again: failed, unknown or cancelled."""
        return self.filter(status__in=OutboundMessage.RETRIABLE)

    def failed(self) -> OutboundMessageQuerySet:
        return self.filter(status=OutboundMessage.Status.FAILED)

    def from_mailbox(self, address: str) -> OutboundMessageQuerySet:
        """Queued from ``address``, in any case: Exchange ignores it, so do we."""
        return self.filter(mailbox__iexact=address)

    def chosen_for_retry(
        self,
        pks: Collection[int] = (),
        statuses: Collection[str] = (),
        mailbox: str | None = None,
    ) -> OutboundMessageQuerySet:
        """What ``outbox retry`` queues again: the messages named, else the failed.

        Named messages may be in any retriable status; ``statuses`` (retriable
        ones) and ``mailbox`` narrow the choice.
        """
        chosen = self.retriable()
        if statuses:
            chosen = chosen.filter(status__in=statuses)
        elif not pks:
            chosen = chosen.failed()
        if pks:
            chosen = chosen.filter(pk__in=pks)
        return chosen.from_mailbox(mailbox) if mailbox else chosen


class OutboundMessage(models.Model):
    """A message queued by ``QueuedEmailBackend``, and what became of it.

    The rendered message is encrypted like the tokens; the sender, subject and
    recipients (Bcc included) are plain, so the admin can search them. Nothing
    here cascades: deleting a mailbox or a user keeps the row and its story.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        DEFERRED = "deferred", _("Deferred")
        SENDING = "sending", _("Sending")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")
        CANCELLED = "cancelled", _("Cancelled")
        UNKNOWN = "unknown", _("Unknown (may have been sent)")

    #: Not yet handed to Microsoft: a worker may still send them.
    WAITING = (Status.QUEUED, Status.DEFERRED)
    #: Given up on, or stopped by a person: a person may queue them again.
    RETRIABLE = (Status.FAILED, Status.UNKNOWN, Status.CANCELLED)

    account = models.ForeignKey(
        MailAccount,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="outbound_messages",
        verbose_name=_("mailbox"),
    )
    # The mailbox's address when queued: still there once the link is gone.
    mailbox = models.EmailField(_("mailbox address"), max_length=254)
    # Chosen by code (the backend's account=), not by routing.
    explicit = models.BooleanField(_("mailbox chosen by code"), default=False)
    acting_user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
        verbose_name=_("acting user"),
    )
    from_email = models.TextField(_("from"))
    subject = models.TextField(_("subject"), blank=True)
    # A JSON list, exactly as the caller wrote each address: joined lines
    # would be split again on whatever str.splitlines() takes for a line end
    # (U+2028, \x85, ...), turning one recipient into several.
    recipients = models.JSONField(
        _("recipients"),
        default=list,
        help_text=_("The envelope: To, Cc and Bcc."),
    )
    # len(recipients), kept as a column so that pacing can sum it in SQL.
    recipient_count = models.PositiveIntegerField(_("recipients"), default=0)
    message_id = models.CharField(_("Message-ID"), max_length=255)
    # A Fernet token wrapping the rendered MIME message.
    encrypted_message = models.TextField(editable=False)
    status = models.CharField(
        _("status"),
        max_length=16,
        choices=Status.choices,
        default=Status.QUEUED,
        db_index=True,
    )
    attempts = models.PositiveIntegerField(_("attempts"), default=0)
    last_error = models.TextField(_("last error or reason"), blank=True)
    created_at = models.DateTimeField(_("queued at"), auto_now_add=True)
    updated_at = models.DateTimeField(_("updated at"), auto_now=True)
    send_after = models.DateTimeField(_("not before"), null=True, blank=True)
    # When the latest attempt began; the pacing counts these.
    started_at = models.DateTimeField(_("last attempt"), null=True, blank=True)
    sent_at = models.DateTimeField(_("sent at"), null=True, blank=True)

    objects = OutboundMessageQuerySet.as_manager()

    class Meta:
        verbose_name = _("outbound message")
        verbose_name_plural = _("outbox")
        ordering = ["-created_at", "-pk"]
        permissions = [
            ("view_outboundmessage_body", _("Can view the body of queued messages"))
        ]
        indexes = [
            models.Index(
                fields=["account", "started_at"], name="live_oauth_mail_pacing"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.subject or '(no subject)'} → {self.recipient_count}"

    @property
    def recipient_list(self) -> list[str]:
        """The envelope recipients, as queued."""
        return [str(r) for r in self.recipients]

    def read_message(self) -> bytes:
        """The decrypted MIME message. Keep it out of logs."""
        try:
            return crypto.decrypt_bytes(self.encrypted_message)
        except crypto.InvalidToken:
            raise TokenCacheUnreadable(
                f"Queued message {self.pk} from {self.mailbox} cannot be decrypted "
                "with the current LIVE_OAUTH_MAIL['ENCRYPTION_KEYS'] (or "
                "SECRET_KEY). Put the key it was written with back.",
                mailbox=self.mailbox,
            ) from None
