"""Link and unlink mailboxes: the writes behind the views and commands."""

from __future__ import annotations

from typing import Any

from django.db import router, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from . import crypto, durable, signals
from .models import MailAccount
from .msal_client import LinkedIdentity


@sensitive_variables()
def link_mailbox(user: Any, identity: LinkedIdentity) -> tuple[MailAccount, bool]:
    """Create or renew ``user``'s link to the mailbox; return (account, created)."""
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
        # update_or_create locks the row, and copes with two callbacks racing
        # to create the same link (the loser updates instead of failing).
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
