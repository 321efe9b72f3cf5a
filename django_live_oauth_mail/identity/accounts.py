"""Link and unlink mailboxes: the writes behind the views and commands."""

from __future__ import annotations

import re
from typing import Any

from django.db import router, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from .. import crypto, durable, signals
from ..exceptions import AddressTaken
from ..models import MailAccount, normalize_email
from ..ownership.claims import app_mailbox_problem, link_problem
from .linking import LinkedIdentity


@sensitive_variables()
def link_mailbox(user: Any, identity: LinkedIdentity) -> tuple[MailAccount, bool]:
    """Create or renew ``user``'s link to the mailbox; return (account, created).

    The link is ``user``'s own row: another user who links the same mailbox
    gets a row of their own and never renews (takes over) this one. Raises
    :class:`AddressTaken` if the address is an app mailbox's.
    """
    using = router.db_for_write(MailAccount)
    fields = {
        "display_name": identity.display_name,
        "kind": MailAccount.Kind.PERSONAL
        if identity.is_personal
        else MailAccount.Kind.WORK,
        "tenant_id": identity.tenant_id,
        "home_account_id": identity.home_account_id,
        "public_client": identity.public_client,
        "status": MailAccount.Status.ACTIVE,
        "token_expires_at": identity.expires_at,
        "last_error": "",
        "encrypted_token_cache": crypto.encrypt(identity.serialized_cache),
    }
    with transaction.atomic(using=using):
        problem = link_problem(identity.email)
        if problem:
            raise AddressTaken(problem, mailbox=identity.email)
        # update_or_create locks the row, and copes with two callbacks racing
        # to create the same link (the loser updates instead of failing).
        # Keyed on the user too: one user's sign-in must never renew, and so
        # take over, another user's link to the same mailbox.
        account, created = MailAccount.objects.using(using).update_or_create(
            user=user, email=identity.email, defaults=fields
        )
        transaction.on_commit(
            lambda: signals.account_connected.send(
                sender=MailAccount, user=user, account=account, created=created
            ),
            using=using,
        )
    return account, created


#: Multi-tenant authorities: an app-only token must name the mailbox's tenant.
NOT_A_TENANT = frozenset({"common", "organizations", "consumers"})


#: A tenant id (a GUID) or a domain name (contoso.onmicrosoft.com).
TENANT = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
    r"|(?:[a-z0-9](?:[a-z0-9-]*[a-z0-9])?\.)+[a-z]{2,}",
    re.IGNORECASE,
)


def tenant_problem(tenant: str) -> str | None:
    """Why ``tenant`` cannot be an app mailbox's tenant, or None."""
    if tenant.lower() in NOT_A_TENANT or not TENANT.fullmatch(tenant):
        return (
            f"{tenant!r} is not a tenant: give the tenant id (a GUID) or a "
            "verified domain of the organisation that owns the mailbox."
        )
    return None


def add_app_mailbox(email: str, tenant: str) -> tuple[MailAccount, bool]:
    """Register ``email`` to send with the app's own token (client credentials).

    No one links it: a tenant administrator grants the app access to the
    mailbox. It is shared, so any code on the site may send from it. Returns
    (account, created); registering it again updates its tenant. Raises
    ValueError for a bad tenant, and :class:`AddressTaken` (a ValueError) if a
    person has linked the address.
    """
    tenant = tenant.strip()
    problem = tenant_problem(tenant)
    if problem:
        raise ValueError(problem)
    email = normalize_email(email)
    problem = app_mailbox_problem(email)
    if problem:
        raise AddressTaken(problem, mailbox=email)
    fields = {
        "kind": MailAccount.Kind.APP,
        "tenant_id": tenant,
        "home_account_id": "",
        "status": MailAccount.Status.ACTIVE,
        "shared": True,
        "last_error": "",
        "encrypted_token_cache": "",
    }
    using = router.db_for_write(MailAccount)
    with transaction.atomic(using=using):
        account, created = MailAccount.objects.using(using).update_or_create(
            user=None, email=email, kind=MailAccount.Kind.APP, defaults=fields
        )
        transaction.on_commit(
            lambda: signals.account_connected.send(
                sender=MailAccount, user=None, account=account, created=created
            ),
            using=using,
        )
    return account, created


def remember_transport(account: MailAccount, transport: str) -> None:
    """Store the mailbox's transport now, whatever transaction the caller has.

    What Exchange told us stays true if the caller's request is rolled back.
    """
    account.transport = transport
    durable.update(account, transport=transport)


def choose_transport(mailbox: str, transport: str) -> int:
    """Set how every link to ``mailbox`` sends ("" follows the setting).

    Returns how many links there were. ``updated_at`` moves, so no session
    signed in before the change is lent out again.
    """
    links = MailAccount.objects.filter(email__iexact=mailbox.strip())
    return links.update(transport=transport, updated_at=timezone.now())


def unlink_mailbox(account: MailAccount) -> None:
    """Delete the link and its token cache."""
    using = router.db_for_write(MailAccount, instance=account)
    user = account.user
    with transaction.atomic(using=using):
        account.delete()
        transaction.on_commit(
            lambda: signals.account_disconnected.send(
                sender=MailAccount, user=user, account=account
            ),
            using=using,
        )
