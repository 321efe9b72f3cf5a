"""The Send As address form, shared by the mailboxes page and the admin, and
the admin's forms to register an app mailbox and to change a mailbox."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .accounts import tenant_problem
from .conf import parse_rate
from .exceptions import ConfigurationError
from .models import MailAccount, SendAsAddress, normalize_email
from .routing import reserved_address


class SendAsAddressForm(forms.ModelForm):  # type: ignore[type-arg]
    """An address a mailbox may also send as; its mailbox is the instance's.

    The form takes ``address`` only: whether an address is shared (any code on
    the site may send as it) is the admin's call, and the admin adds the field.
    """

    class Meta:
        model = SendAsAddress
        fields = ("address",)

    def clean_address(self) -> str:
        address = normalize_email(self.cleaned_data["address"])
        # Checked here and not left to the unique constraint: the owner's form
        # has no account field, so Django's own check would skip the pair, and
        # it would compare the address before save() lowercases it.
        account = self.instance.account
        if address == normalize_email(account.email):
            raise forms.ValidationError(
                _("%(address)s is the mailbox's own address; it sends as it already."),
                code="own_address",
                params={"address": address},
            )
        duplicates = SendAsAddress.objects.filter(account=account, address=address)
        if duplicates.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(
                _("%(mailbox)s already sends as %(address)s."),
                code="duplicate",
                params={"mailbox": account.email, "address": address},
            )
        return address

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        address = cleaned.get("address")
        shared = cleaned.get("shared", self.instance.shared)
        # Only the admin can claim a site address, and only for everyone.
        if address and not shared and reserved_address(address):
            self.add_error(
                "address",
                forms.ValidationError(
                    _(
                        "%(address)s is the site's address or another mailbox's, "
                        "so one user's mailbox cannot send as it. An "
                        "administrator can add it as a shared Send As address."
                    ),
                    code="reserved",
                    params={"address": address},
                ),
            )
        return cleaned


class AppMailboxForm(forms.ModelForm):  # type: ignore[type-arg]
    """Register an app mailbox: its address and its tenant (the admin's add)."""

    class Meta:
        model = MailAccount
        fields = ("email", "tenant_id")
        help_texts = {
            "tenant_id": _(
                "The tenant id (a GUID) or a verified domain of the organisation "
                "that owns the mailbox; not common or organizations."
            )
        }

    def clean_email(self) -> str:
        email = normalize_email(self.cleaned_data["email"])
        if MailAccount.objects.filter(kind=MailAccount.Kind.APP, email=email).exists():
            raise forms.ValidationError(
                _("%(email)s is already an app mailbox.") % {"email": email}
            )
        return email

    def clean_tenant_id(self) -> str:
        tenant = str(self.cleaned_data.get("tenant_id") or "").strip()
        problem = tenant_problem(tenant)
        if problem:
            raise forms.ValidationError(problem)
        return tenant


class MailAccountForm(forms.ModelForm):  # type: ignore[type-arg]
    """The change form; a send rate the workers could not read is refused here."""

    def clean_send_rate(self) -> str:
        rate = str(self.cleaned_data["send_rate"]).strip()
        if rate:
            try:
                parse_rate(rate, "The send rate")
            except ConfigurationError as error:
                raise forms.ValidationError(str(error), code="invalid") from None
        return rate
