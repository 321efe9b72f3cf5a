"""Which mailbox sends a message, and who may send as whom.

The backend holds every linked mailbox's credentials, so the From address
alone must never decide whose mailbox signs in: a contact form that copies a
visitor's address into ``from_email`` would otherwise send, authenticated, as
that person. With ``ROUTING = "owner"`` (the default) a message goes out
through the first of:

1. the mailbox given explicitly (the backend's ``account=``/``auth_user``);
2. a mailbox of the acting user (see :mod:`.acting`) whose address, or one of
   whose Send As addresses, is the From address; a personal Send As entry
   never takes the site's address or another mailbox's (:func:`reserved_address`);
3. a shared mailbox, or a shared Send As address, matching the From address;
4. ``DEFAULT_ACCOUNT``, only for an empty From, ``DEFAULT_FROM_EMAIL``,
   ``SERVER_EMAIL`` or its own address;

and anything else raises :class:`AccountNotFound` before anything is sent.
``ROUTING = "any"`` lets any linked mailbox send for its address and
``DEFAULT_ACCOUNT`` for every other one, as before 0.2.
"""

from __future__ import annotations

from collections.abc import Sequence
from email.utils import getaddresses
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage
from django.db.models import F, Q

from ..conf import SETTINGS_NAME, conf
from ..exceptions import AccountNotFound, SenderNotAllowed
from ..models import MailAccount, normalize_email
from .acting import acting_user_pk, user_pk

Batches = list[tuple[MailAccount, list[EmailMessage]]]


def explicit_account(selector: MailAccount | int | str) -> MailAccount:
    """The mailbox code chose by instance, pk or address; trusted as given."""
    if isinstance(selector, MailAccount):
        return selector
    accounts = MailAccount.objects.active()
    accounts = (
        accounts.filter(pk=selector)
        if isinstance(selector, int)
        else accounts.for_address(str(selector))
    )
    account = accounts.order_by("-shared", "created_at", "pk").first()
    if account is None:
        raise AccountNotFound(
            f"No active linked mailbox matches {selector!r}. Link it on the "
            "mailboxes page (or re-link it if it needs reconnecting).",
            mailbox=str(selector),
        )
    return account


def route(
    messages: Sequence[EmailMessage], *, user: Any = None, account: Any = None
) -> tuple[Batches, list[tuple[EmailMessage, AccountNotFound]]]:
    """Group messages by the mailbox that sends them, in first-seen order.

    ``account`` (the backend's fixed mailbox) sends them all; else ``user``
    (the backend's ``user=``) wins over the acting user. One query finds every
    candidate, whatever the batch size. Also returns each message no mailbox
    may send, with the reason; the backend decides what to do.
    """
    if account is not None:
        try:
            return [(explicit_account(account), list(messages))], []
        except AccountNotFound as error:
            return [], [(message, error) for message in messages]
    addresses: dict[str, str | None] = {}  # parse each distinct From once
    for message in messages:
        raw = str(message.from_email or "")
        if raw not in addresses:
            addresses[raw] = sender_address(raw)
    acting = user_pk(user) if user is not None else acting_user_pk()
    mailboxes = _Mailboxes(
        {address for address in addresses.values() if address}, acting=acting
    )
    batches: dict[int, tuple[MailAccount, list[EmailMessage]]] = {}
    refused: list[tuple[EmailMessage, AccountNotFound]] = []
    for message in messages:
        try:
            account = mailboxes.pick(addresses[str(message.from_email or "")])
        except AccountNotFound as error:
            refused.append((message, error))
            continue
        batches.setdefault(account.pk, (account, []))[1].append(message)
    return list(batches.values()), refused


def site_account(user: Any = None) -> MailAccount:
    """The mailbox that sends a message from ``DEFAULT_FROM_EMAIL``.

    The backend's ``open()`` signs in as it, so that opening checks something.
    """
    batches, refused = route([EmailMessage()], user=user)
    for _, error in refused:
        raise type(error)(
            "open() signs in as the mailbox that sends DEFAULT_FROM_EMAIL, "
            f"and there is none: {error} Or give the backend account=, or "
            "leave open() out: send_messages() opens the sessions it needs.",
            mailbox=error.mailbox,
        )
    return batches[0][0]


def sender_address(raw: str) -> str | None:
    """The normalized address in a From value; "" when empty.

    None when it is unreadable or holds more than one address: "a@x, b@y"
    must not be read as either. An address with no domain ("webmaster") is
    read, as Django allows it; no linked mailbox has one, so only
    ``DEFAULT_ACCOUNT`` can send for it.
    """
    if not raw.strip():
        return ""
    parsed = getaddresses([raw])
    if len(parsed) != 1 or not parsed[0][1].strip("@"):
        return None
    return normalize_email(parsed[0][1])


def reserved_address(address: str) -> bool:
    """Is ``address`` the site's or another mailbox's to send from?

    Such an address may be a Send As address only for everyone (shared):
    one user's entry would otherwise take its mail while that user acts.
    """
    return _Mailboxes({address}, acting=None)._site_address(address)


class _Mailboxes:
    """The active mailboxes that could send for a batch's From addresses."""

    def __init__(self, senders: set[str], *, acting: Any) -> None:
        self.acting = acting
        self.routing = conf.ROUTING
        self.default = sender_address(conf.DEFAULT_ACCOUNT or "") or None
        wanted = senders | ({self.default} if self.default else set())
        # address -> [(mailbox, may any code send as this address?)], shared
        # mailboxes first, then oldest link first: a later link (another
        # user's, perhaps with an unverified email claim) never takes over an
        # address's mail.
        self.by_address: dict[str, list[tuple[MailAccount, bool]]] = {}
        if not wanted:
            return
        # One row per (mailbox, Send As address): the annotation reuses the
        # filter's join.
        rows = (
            MailAccount.objects.active()
            .filter(Q(email__in=wanted) | Q(send_as_addresses__address__in=wanted))
            .annotate(
                send_as=F("send_as_addresses__address"),
                send_as_shared=F("send_as_addresses__shared"),
            )
            .order_by("-shared", "created_at", "pk")
        )
        accounts: dict[int, MailAccount] = {}
        seen: set[tuple[str, int]] = set()
        for row in rows:
            account = accounts.setdefault(row.pk, row)
            send_as: str | None = row.send_as  # type: ignore[attr-defined]
            send_as_shared = bool(row.send_as_shared)  # type: ignore[attr-defined]
            own_address_shared = account.shared or account.email == self.default
            for address, shared in (
                (account.email, own_address_shared),
                (send_as, send_as_shared),
            ):
                if address in wanted and (address, account.pk) not in seen:
                    seen.add((address, account.pk))
                    self.by_address.setdefault(address, []).append((account, shared))
        # A mailbox's own address comes before another's Send As entry for it,
        # so listing someone's address as Send As never takes over their mail.
        for address, candidates in self.by_address.items():
            candidates.sort(key=lambda candidate: candidate[0].email != address)

    @property
    def default_account(self) -> MailAccount | None:
        if not self.default:
            return None
        return next(
            (
                a
                for a, _ in self.by_address.get(self.default, ())
                if a.email == self.default
            ),
            None,
        )

    def pick(self, sender: str | None) -> MailAccount:
        if sender is None:
            raise AccountNotFound(
                "The From of a message is not one readable address, so no "
                "mailbox was chosen. Give from_email as 'name@example.com' or "
                "'Name <name@example.com>'.",
            )
        candidates = self.by_address.get(sender, [])
        if self.acting is not None:
            for account, _ in candidates:
                if account.user_id == self.acting and (
                    account.email == sender or not self._site_address(sender)
                ):
                    return account
        for account, shared in candidates:
            if shared:
                return account
        if self.routing == "any" and candidates:
            return candidates[0][0]
        default = self.default_account
        if default is not None and (
            self.routing == "any" or self._default_serves(sender)
        ):
            return default
        if candidates:
            who = (
                "there is no acting user (an anonymous request, a command or a task)"
                if self.acting is None
                else f"it is not the acting user's (user pk {self.acting})"
            )
            raise SenderNotAllowed(
                f"{sender} is a linked mailbox, but {who}, and with "
                f"{SETTINGS_NAME}['ROUTING'] = 'owner' a mailbox sends "
                "only for its owner. Send as its owner (SendingAsMiddleware in a "
                "request, sending_as(user) elsewhere, or the backend's user=), "
                "choose it explicitly with account=, or mark it shared in the "
                "admin if any code may send from it. Nothing was sent.",
                mailbox=sender,
            )
        raise AccountNotFound(self._not_found(sender), mailbox=sender or None)

    def _site_address(self, sender: str) -> bool:
        """Is ``sender`` someone else's, or the site's, whatever a Send As says?

        A user's Send As entry for another linked mailbox's address, a shared
        address, or one ``DEFAULT_ACCOUNT`` serves must not take the site's
        mail for that address whenever that user is acting.
        """
        return self._default_serves(sender) or any(
            shared or account.email == sender
            for account, shared in self.by_address.get(sender, ())
        )

    def _default_serves(self, sender: str) -> bool:
        site_senders = {
            sender_address(str(getattr(settings, name, "") or ""))
            for name in ("DEFAULT_FROM_EMAIL", "SERVER_EMAIL")
        }
        return sender in {"", self.default, *site_senders}

    def _not_found(self, sender: str) -> str:
        shown = sender or "(none)"
        if self.default and self.default_account is None:
            return (
                f"No active linked mailbox for the sender {shown}, and "
                f"{SETTINGS_NAME}['DEFAULT_ACCOUNT'] ({self.default}) is not an "
                "active linked mailbox. Link it (or re-link it), or change the "
                "setting."
            )
        if self.default:
            return (
                f"No active linked mailbox for the sender {shown}. "
                f"{SETTINGS_NAME}['DEFAULT_ACCOUNT'] sends only for an empty From, "
                "DEFAULT_FROM_EMAIL, SERVER_EMAIL or its own address. Send from "
                "a mailbox the acting user linked, a shared mailbox or a shared "
                "Send As address."
            )
        return (
            f"No active linked mailbox for the sender {shown}. Send from a "
            "mailbox the acting user linked or a shared one, add the address as "
            "a Send As address of such a mailbox, or set "
            f"{SETTINGS_NAME}['DEFAULT_ACCOUNT'] for DEFAULT_FROM_EMAIL."
        )
