"""Who may claim which address: the rules every writer of mailboxes calls.

Routing trusts what these rows say, so the rules are checked where rows are
written, not where mail is sent:

- a shared Send As entry lets any code on the site send as its address
  through the mailbox. For the site's own addresses (``DEFAULT_FROM_EMAIL``,
  ``SERVER_EMAIL``, ``DEFAULT_ACCOUNT``'s) or another mailbox's address,
  that would move password resets, or someone else's mail, into this
  mailbox, so only a superuser may make one;
- a personal (non-shared) entry never takes such an address, whoever asks:
  routing would ignore it anyway (see :func:`.routing.reserved_address`);
- sharing a person's whole mailbox hands its address to everyone, so only
  a user with the ``share_mailaccount`` permission (superusers have it) may
  turn it on; turning it off takes nothing from anyone;
- an address is either an app mailbox (the app's own credentials, for
  everyone) or linked by people, never both.

Who asks is a user, or :data:`OPERATOR` for code run on the server (a
management command, the shell), which already holds the database and the
settings and so is trusted like a superuser (no command writes Send As
entries yet; one that does passes it). A writer that knows no user passes
None, which is trusted like an ordinary user, as is an inactive superuser.
"""

from __future__ import annotations

import enum
from typing import Any

from django.conf import settings

from ..conf import conf
from ..models import MailAccount
from .routing import reserved_address, sender_address


class Requester(enum.Enum):
    """Who asks when no web user does."""

    OPERATOR = "operator"


#: A management command or the shell: trusted like a superuser.
OPERATOR = Requester.OPERATOR

#: Who may share a person's whole mailbox with the site.
SHARE_PERMISSION = "live_oauth_mail.share_mailaccount"


def site_addresses() -> set[str]:
    """``DEFAULT_FROM_EMAIL``, ``SERVER_EMAIL`` and ``DEFAULT_ACCOUNT``, normalized.

    Display-name forms ("Site <noreply@example.com>") count as their address.
    """
    values = [
        getattr(settings, "DEFAULT_FROM_EMAIL", ""),
        getattr(settings, "SERVER_EMAIL", ""),
        conf.DEFAULT_ACCOUNT,
    ]
    return {a for a in (sender_address(str(v or "")) for v in values) if a}


def send_as_problem(
    account: MailAccount, address: str, *, shared: bool, by: Any
) -> str | None:
    """Why ``account`` may not send as ``address`` for ``by``, or None."""
    if not shared:
        if reserved_address(address):
            return (
                f"{address} is the site's address or another mailbox's, so one "
                "user's mailbox cannot send as it. An administrator can add it "
                "as a shared Send As address."
            )
        return None
    if _is_superuser(by):
        return None
    why = _whose(account, address)
    if why is None:
        return None
    return (
        f"{address} is {why}. Only a superuser can make it a shared Send As "
        f"address of {account.email}: any code on the site would then send "
        "that address's mail through this mailbox."
    )


def share_mailbox_problem(account: MailAccount, *, by: Any) -> str | None:
    """Why ``by`` may not share ``account`` with the whole site, or None.

    A shared link sends for anyone whose mail is from its address: sharing a
    person's mailbox hands their address to every user and every piece of
    code on the site, so it takes its own permission, not only the right to
    change a mailbox. An app mailbox has no owner.
    """
    if account.is_app or by is OPERATOR:
        return None
    if getattr(by, "is_active", False) and by.has_perm(SHARE_PERMISSION):
        return None
    return (
        f"Sharing {account.email} lets anyone on the site send as that address "
        "through this mailbox. It takes the permission \"Can share a person's "
        f'mailbox with the site" ({SHARE_PERMISSION}), which you do not have.'
    )


def app_mailbox_problem(email: str) -> str | None:
    """Why ``email`` cannot be registered as an app mailbox, or None."""
    if MailAccount.objects.filter(email__iexact=email.strip()).exclude(
        kind=MailAccount.Kind.APP
    ):
        return (
            f"{email} is linked as a person's mailbox. An app mailbox sends "
            "for everyone with the app's own credentials, so it cannot share "
            "the address: disconnect those links first, or register another "
            "address."
        )
    return None


def link_problem(email: str) -> str | None:
    """Why a person cannot link the mailbox ``email``, or None."""
    if MailAccount.objects.filter(
        email__iexact=email.strip(), kind=MailAccount.Kind.APP
    ).exists():
        return (
            f"{email} is one of the site's app mailboxes, which send with the "
            "app's own credentials, so it cannot also be linked as your "
            "mailbox. Nothing was linked. Ask an administrator if you need "
            "to send from it."
        )
    return None


def _is_superuser(by: Any) -> bool:
    if by is OPERATOR:
        return True
    return bool(getattr(by, "is_active", False) and getattr(by, "is_superuser", False))


def _whose(account: MailAccount, address: str) -> str | None:
    """Whose ``address`` is, if not free for ``account`` to share."""
    normalized = address.strip().lower()
    if normalized in site_addresses():
        return (
            "one of the site's addresses (DEFAULT_FROM_EMAIL, SERVER_EMAIL or "
            "DEFAULT_ACCOUNT)"
        )
    # Any other link, whoever owns it and whatever its status: sharing even
    # the same person's other address hands that address to everyone. And an
    # address another mailbox already shares, which an older mailbox's new
    # entry would take over (routing prefers the oldest).
    others = MailAccount.objects.filter(email__iexact=normalized).exclude(pk=account.pk)
    if others.exists() or reserved_address(normalized):
        return "another mailbox's address, or one another mailbox shares"
    return None
