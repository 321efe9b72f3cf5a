from __future__ import annotations

import email.policy
from email.utils import formataddr
from typing import Any

from django import forms
from django.core.exceptions import ValidationError
from django.core.mail import EmailMessage
from django.core.validators import validate_email

from django_live_oauth_mail.models import MailAccount

MAX_ATTACHMENT_BYTES = 5 * 1024 * 1024


def validate_header_value(value: str) -> None:
    """Refuse a value that Django 6's EmailMessage would refuse in a header.

    Django 6 builds messages with Python's modern email API, whose policy
    refuses any value that ``str.splitlines()`` splits: \\r and \\n, and
    also \\x0b, \\x0c, \\x1c-\\x1e, \\x85, \\u2028 and \\u2029. Django 5.2's
    own check (``forbid_multi_line_headers``, deprecated in 6.1) sees only
    \\r and \\n. Asking that policy here refuses the same values on every
    Django, as a form error instead of a ValueError (a 500) at send time.
    """
    try:
        email.policy.default.header_store_parse("Subject", value)
    except ValueError:
        raise ValidationError(
            "Enter this on one line: it goes into a mail header, where line "
            "breaks (of any kind) are not allowed."
        ) from None


def validate_content_type(content_type: str) -> None:
    """Refuse a content type that Django cannot attach: it must be type/subtype.

    ``EmailMessage.attach()`` splits the content type at its first "/" into
    the MIME main type and subtype; without one it raises ValueError.
    """
    maintype, _, subtype = content_type.partition("/")
    if not (maintype.strip() and subtype.strip()):
        raise ValidationError(
            f"The file came with the content type {content_type!r}, which is not "
            "of the form type/subtype (e.g. text/plain). Attach it again, or "
            "send it without the attachment."
        )
    validate_header_value(content_type)


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
    subject = forms.CharField(max_length=200, validators=[validate_header_value])
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
        if not upload:
            return upload
        if upload.size > MAX_ATTACHMENT_BYTES:
            raise ValidationError("The attachment is larger than 5 MB.")
        # Both go into the attachment's MIME headers, as the browser sent them.
        validate_header_value(upload.name)
        if upload.content_type:
            validate_content_type(upload.content_type)
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

    # It goes into the Subject and Reply-To headers.
    name = forms.CharField(
        label="Your name", max_length=100, validators=[validate_header_value]
    )
    email = forms.EmailField(
        label="Your email",
        help_text="We reply to this address. It is never the sender.",
        widget=forms.EmailInput(attrs={"placeholder": "you@example.com"}),
    )
    message = forms.CharField(max_length=5000, widget=forms.Textarea(attrs={"rows": 6}))

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
