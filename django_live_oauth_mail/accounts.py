"""Link and unlink mailboxes: the writes behind the views and commands."""

from __future__ import annotations

from typing import Any

from django.db import router, transaction
from django.views.decorators.debug import sensitive_variables

from . import signals
from .models import MailAccount
from .msal_client import LinkedIdentity


@sensitive_variables()
def link_mailbox(user: Any, identity: LinkedIdentity) -> tuple[MailAccount, bool]:
    """Create or renew ``user``'s link to the mailbox; return (account, created)."""
    using = router.db_for_write(MailAccount)
    with transaction.atomic(using=using):
        account = (
            MailAccount.objects.select_for_update()
            .filter(user=user, email=identity.email)
            .first()
        )
        created = account is None
        if account is None:
            account = MailAccount(user=user, email=identity.email)
        account.display_name = identity.display_name
        account.kind = (
            MailAccount.Kind.PERSONAL if identity.is_personal else MailAccount.Kind.WORK
        )
        account.tenant_id = identity.tenant_id
        account.home_account_id = identity.home_account_id
        account.public_client = identity.public_client
        account.status = MailAccount.Status.ACTIVE
        account.token_expires_at = identity.expires_at
        account.last_error = ""
        account.write_token_cache(identity.serialized_cache)
        account.save()
        transaction.on_commit(
            lambda: signals.account_connected.send(
                sender=MailAccount, user=user, account=account, created=created
            ),
            using=using,
        )
    return account, created


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
