"""Small helpers several test files share (no fixtures: those are in conftest)."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # spawned workers import this before Django is set up
    from django_live_oauth_mail.models import MailAccount
    from django_live_oauth_mail.testing import FakeIdentityPlatform


def refreshes(platform: FakeIdentityPlatform) -> int:
    """How many refresh tokens were redeemed at the identity stand-in."""
    return sum(1 for r in platform.token_requests if r.grant_type == "refresh_token")


def stored_refresh_token(account: MailAccount) -> str:
    """The one refresh token in the mailbox's stored (decrypted) cache."""
    [entry] = json.loads(account.read_token_cache())["RefreshToken"].values()
    return str(entry["secret"])
