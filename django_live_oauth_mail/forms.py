"""The Send As address form, shared by the mailboxes page and the admin, and
the admin's forms to register an app mailbox and to change a mailbox."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from .identity.accounts import tenant_problem
from .models import MailAccount, SendAsAddress, normalize_email
from .ownership.claims import (
    app_mailbox_problem,
    send_as_problem,
    share_mailbox_problem,
)


class SendAsAddressForm(forms.ModelForm):  # type: ignore[type-arg]
    """An address a mailbox may also send as; its mailbox is the instance's.

    The form takes ``address`` only: whether an address is shared (any code on
    the site may send as it) is the admin's call, and the admin adds the field
    and passes ``requested_by``, since some addresses only a superuser may
    share (see :mod:`.claims`).
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

    def __init__(self, *args: Any, requested_by: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Who saves it: the rules for shared entries depend on it (see
        # address_claims). None is an ordinary user.
        self.requested_by = requested_by

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        address = cleaned.get("address")
        shared = cleaned.get("shared", self.instance.shared)
        problem = address and send_as_problem(
            self.instance.account, address, shared=bool(shared), by=self.requested_by
        )
        if problem:
            self.add_error(
                "address",
                forms.ValidationError(
                    problem, code="shared_reserved" if shared else "reserved"
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
        problem = app_mailbox_problem(email)
        if problem:
            raise forms.ValidationError(problem, code="linked")
        return email

    def clean_tenant_id(self) -> str:
        tenant = str(self.cleaned_data.get("tenant_id") or "").strip()
        problem = tenant_problem(tenant)
        if problem:
            raise forms.ValidationError(problem)
        return tenant


class MailAccountForm(forms.ModelForm):  # type: ignore[type-arg]
    """The change form; the send rate's validator refuses one workers can't read.

    ``requested_by`` is who saves it (the admin sets it on the form class it
    makes for each request): sharing a person's mailbox takes a permission of
    its own (see :func:`.claims.share_mailbox_problem`).
    """

    requested_by: Any = None

    def clean_shared(self) -> bool:
        shared = bool(self.cleaned_data.get("shared"))
        if shared and not self.instance.shared:
            problem = share_mailbox_problem(self.instance, by=self.requested_by)
            if problem:
                raise forms.ValidationError(problem, code="share_mailbox")
        return shared

    def clean_send_rate(self) -> str:
        return str(self.cleaned_data["send_rate"]).strip()
