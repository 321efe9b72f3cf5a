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


# Fakes of what must never be shown: an access token, a refresh token, the
# query of a Graph upload URL, an authorization code and a device code. Tests
# put them where a real input could carry one.
ACCESS_TOKEN = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.ZmFrZS1hY2Nlc3M.c2lnbmF0dXJl"
REFRESH_TOKEN = "1.AQEAfake-refresh-token-0123456789abcdef"
UPLOAD_SECRET = "tempauth=v1.fake-upload-grant-0123456789"
AUTH_CODE = "0.AXEAfake-authorization-code-abcdef"
DEVICE_CODE = "DAQABAAEAAADfake-device-code-0123"


def assert_tells_no_secret(error: BaseException) -> None:
    """None of the fakes above is in the error's str(), repr() or fields."""
    shown = f"{error}\n{error!r}\n{vars(error)!r}"
    for secret in (ACCESS_TOKEN, REFRESH_TOKEN, UPLOAD_SECRET, AUTH_CODE, DEVICE_CODE):
        assert secret not in shown


def assert_says(error: BaseException, *phrases: str) -> None:
    """Each phrase is in the error's message."""
    for phrase in phrases:
        assert phrase in str(error), phrase
