from __future__ import annotations

from email.utils import formataddr
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email

from django_live_oauth_mail.models import MailAccount

MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024


def mailbox_label(mailbox: MailAccount) -> str:
    if mailbox.display_name:
        return f"{mailbox.display_name} <{mailbox.email}>"
    return str(mailbox.email)


class ComposeForm(forms.Form):
    """A message from one of the user's active linked mailboxes.

    The sender is chosen by address, not by row: a mailbox disconnected and
    linked again in another tab is a new row, and the draft still sends.
    """

    sender = forms.ChoiceField(
        label="From", help_text="Your linked mailboxes that can send right now."
    )
    to = forms.CharField(
        label="To",
        max_length=1000,
        help_text="One or more addresses, separated by commas.",
        widget=forms.TextInput(attrs={"placeholder": "someone@example.com"}),
    )
    subject = forms.CharField(max_length=200)
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 7}))
    attachment = forms.FileField(
        required=False, help_text="Optional, up to 5 MB.", allow_empty_file=True
    )

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.user = user
        self.mailboxes = {
            mailbox.email: mailbox
            for mailbox in MailAccount.objects.active()
            .filter(user=user)
            .order_by("email")
        }
        choices = [(email, mailbox_label(m)) for email, m in self.mailboxes.items()]
        # Keep the choice the page was sent with, even if that mailbox can no
        # longer send: the draft stays as typed, and clean_sender says why.
        chosen = str(self.data.get("sender", ""))[:254]
        if chosen and chosen not in self.mailboxes:
            choices.append((chosen, f"{chosen} (cannot send now)"))
        field = self.fields["sender"]
        assert isinstance(field, forms.ChoiceField)
        field.choices = choices

    def clean_sender(self) -> MailAccount:
        address: str = self.cleaned_data["sender"]
        mailbox = self.mailboxes.get(address)
        if mailbox is not None:
            return mailbox
        stored = MailAccount.objects.filter(user=self.user, email=address).first()
        if stored is None:
            raise ValidationError(
                f"{address} is no longer linked: it was disconnected, perhaps in "
                "another tab. Link it again, then press Send here; or choose "
                "another mailbox."
            )
        why = f" ({stored.last_error.rstrip('. ')})" if stored.last_error else ""
        raise ValidationError(
            f"{address} must be linked again before it can send{why}. Link it "
            "again, then press Send here; or choose another mailbox."
        )

    def clean_to(self) -> list[str]:
        addresses = [a.strip() for a in self.cleaned_data["to"].split(",")]
        addresses = [a for a in addresses if a]
        if not addresses:
            raise ValidationError("Enter at least one address.")
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                raise ValidationError(
                    f"{address!r} is not a valid e-mail address."
                ) from None
        return addresses

    def clean_attachment(self) -> Any:
        upload = self.cleaned_data.get("attachment")
        if upload and upload.size > MAX_ATTACHMENT_BYTES:
            raise ValidationError("The attachment is larger than 5 MB.")
        return upload

    def build_message(self) -> EmailMessage:
        data = self.cleaned_data
        account: MailAccount = data["sender"]
        message = EmailMessage(
            subject=data["subject"],
            body=data["body"],
            # The backend picks the linked mailbox from this address.
            from_email=formataddr((account.display_name, account.email)),
            to=data["to"],
        )
        upload = data.get("attachment")
        if upload:
            message.attach(upload.name, upload.read(), upload.content_type or None)
        return message


class ContactForm(forms.Form):
    """A message from anyone to the site; the visitor is only its Reply-To."""

    name = forms.CharField(label="Your name", max_length=100)
    email = forms.EmailField(
        label="Your email",
        help_text="We reply to this address. It is never the sender.",
        widget=forms.EmailInput(attrs={"placeholder": "you@example.com"}),
    )
    message = forms.CharField(max_length=5000, widget=forms.Textarea(attrs={"rows": 6}))

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        # It goes into the Subject and Reply-To headers.
        if "\r" in name or "\n" in name:
            raise ValidationError("Enter your name on one line.")
        return name

    def build_message(self, sender: str, recipients: list[str]) -> EmailMessage:
        data = self.cleaned_data
        visitor = formataddr((data["name"], data["email"]))
        return EmailMessage(
            subject=f"Contact form: {data['name']}",
            body=f"{visitor} wrote:\n\n{data['message']}",
            # The site's shared mailbox sends. The From address chooses the
            # mailbox that signs in to Microsoft, so the visitor's address
            # there would let anyone pick whose mailbox sends; it only says
            # where replies go.
            from_email=sender,
            to=recipients,
            reply_to=[visitor],
        )
