"""The identity stand-in as our own suite drives it: the public one plus the
faults and peeks only our tests need, so the package keeps just what users
testing their own flows use."""

from __future__ import annotations

from collections import deque
from dataclasses import replace
from typing import Any

from django_live_oauth_mail.testing import FakeIdentityPlatform
from django_live_oauth_mail.testing._grants import OUTLOOK_AUDIENCES, AADError
from django_live_oauth_mail.testing._http import Reply


class _Fault(AADError):
    """A canned answer of the token endpoint: Entra's JSON error, or a page."""

    def __init__(
        self,
        status: int,
        error: str,
        code: int,
        body: str | None,
        headers: dict[str, str],
    ) -> None:
        super().__init__(error, code, status=status)
        self.body, self.headers = body, headers

    def reply(self) -> Reply:
        if self.body is None:
            reply = super().reply()
            reply.headers.update(self.headers)
            return reply
        return Reply(self.status, self.body.encode(), "text/html", dict(self.headers))


class IdentityPlatform(FakeIdentityPlatform):
    """:class:`FakeIdentityPlatform` with fault injection and token checks."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._faults: deque[_Fault] = deque()

    def reset(self) -> None:
        """Forget recorded requests and queued faults (identities, tokens stay)."""
        super().reset()
        self._faults.clear()

    def fail_next_token_requests(
        self,
        count: int = 1,
        *,
        status: int = 500,
        error: str = "temporarily_unavailable",
        error_code: int = 90033,
        body: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Answer the next ``count`` token requests with Entra's JSON error, or
        with ``body`` as HTML; ``headers`` such as ``{"Retry-After": "1"}``."""
        fault = _Fault(status, error, error_code, body, dict(headers or {}))
        self._faults.extend([fault] * count)

    def _redeem(self, tenant: str, form: dict[str, str]) -> Any:
        if self._faults:
            raise self._faults.popleft()
        return super()._redeem(tenant, form)

    def expire_access_tokens(self, email: str | None = None) -> None:
        """Invalidate issued access tokens server-side (clients still trust them)."""
        for token, issued in list(self._access.items()):
            if email is None or issued.mailbox.casefold() == email.casefold():
                self._access[token] = replace(issued, expires_at=0.0)

    def validate_access_token(self, token: str) -> str | None:
        """The mailbox of an unexpired user's token for Exchange's SMTP, else
        ``None``: Exchange refuses Graph's tokens and app-only ones here."""
        issued = self.introspect(token)
        if issued is None or issued.app or issued.audience not in OUTLOOK_AUDIENCES:
            return None
        return issued.mailbox
