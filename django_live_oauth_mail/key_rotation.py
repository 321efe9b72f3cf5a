"""Re-encrypt what is stored encrypted with the newest key, after a key change.

The token caches and the queued messages are Fernet tokens (see crypto.py).
Once a new key is put first in ``LIVE_OAUTH_MAIL['ENCRYPTION_KEYS']``, the
old ones must stay until every row is rewritten with it; this rewrites them,
so the old keys can go. ``manage.py live_oauth_mail rotate-keys`` reports it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Generic, TypeVar

from django.db.models import QuerySet
from django.utils import timezone

from . import crypto
from .models import MailAccount, OutboundMessage

Row = TypeVar("Row", MailAccount, OutboundMessage)


@dataclasses.dataclass(frozen=True)
class Rotated(Generic[Row]):
    """Rows of one kind: how many were re-encrypted, and those no key reads."""

    count: int
    unreadable: list[Row]


def rotate_token_caches() -> Rotated[MailAccount]:
    """Re-encrypt every mailbox's token cache with the newest key."""
    return _rotate(
        MailAccount.objects.exclude(encrypted_token_cache=""), "encrypted_token_cache"
    )


def rotate_queued_messages() -> Rotated[OutboundMessage]:
    """Re-encrypt every queued message with the newest key."""
    return _rotate(
        OutboundMessage.objects.only("pk", "mailbox", "encrypted_message"),
        "encrypted_message",
    )


def _rotate(rows: QuerySet[Row], field: str) -> Rotated[Row]:
    """Re-encrypt ``field`` of ``rows`` with the newest key.

    A row no configured key fits is left for its old key to come back.
    A row is written only if it still holds what was read: a refresh that
    committed meanwhile stored a newer cache (with the newest key), which
    must not be replaced by the older one.
    """
    rotated, unreadable = 0, []
    for row in rows.order_by("pk").iterator():
        old = getattr(row, field)
        if not crypto.needs_rotation(old):
            continue
        try:
            new = crypto.rotate(old)
        except crypto.InvalidToken:
            unreadable.append(row)
            continue
        rotated += (
            type(row)
            ._default_manager.filter(pk=row.pk, **{field: old})
            .update(**{field: new, "updated_at": timezone.now()})
        )
    return Rotated(rotated, unreadable)


def unreadable_row(row: MailAccount | OutboundMessage) -> str:
    """Which row no configured key decrypts, and that it was left alone."""
    what = (
        f"{row.email}: its token cache"
        if isinstance(row, MailAccount)
        else f"Queued message {row.pk} from {row.mailbox}: it"
    )
    return f"{what} cannot be decrypted with any configured key; left as it was."


def left_unread(
    accounts: Sequence[MailAccount], messages: Sequence[OutboundMessage]
) -> str | None:
    """What a rotation could not decrypt and what to do about it; None if nothing."""
    if not accounts and not messages:
        return None
    unread, next_steps = [], []
    if accounts:
        unread.append(
            f"the token cache of {len(accounts)} mailbox(es): "
            f"{', '.join(account.email for account in accounts)}"
        )
        next_steps.append("have each mailbox linked again")
    if messages:
        unread.append(
            f"{len(messages)} queued message(s): "
            f"{', '.join(str(message.pk) for message in messages)}"
        )
        next_steps.append("delete the messages, which can never be sent")
    return (
        f"Could not decrypt {' and '.join(unread)}. Put the key they were "
        "written with back in LIVE_OAUTH_MAIL['ENCRYPTION_KEYS'] (after the "
        "newest key), or the old SECRET_KEY in SECRET_KEY_FALLBACKS, and run "
        f"rotate-keys again; or {', or '.join(next_steps)}."
    )
