"""The grants the identity stand-in's token endpoint redeems (authorization
codes, refresh tokens, device codes), the checks Entra makes before it honours
one, and how it refuses: JSON whose ``error_codes`` clients branch on, so the
``AADSTSnnnn:`` texts are short. It is apart from the endpoints in
:mod:`.identity` so that the rules a grant must pass read in one place."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from ._http import Reply
from .tokens import b64


@dataclass
class Grant:
    """An authorization code, refresh token or device code: each works once."""

    email: str  # "" while a device code waits for its user
    scopes: tuple[str, ...]
    redirect_uri: str = ""
    challenge: str = ""  # PKCE's S256 code challenge (authorization codes)
    nonce: str = ""
    used: bool = False
    revoked: int = 0  # the AADSTS code a revoked refresh token fails with


class AADError(Exception):
    """An OAuth error answer: raised while redeeming, sent by the endpoint."""

    def __init__(
        self, error: str, code: int, *details: str, status: int = 400, email: str = ""
    ) -> None:
        super().__init__(describe(code, error, *details))
        self.error, self.code, self.status, self.email = error, code, status, email

    def reply(self) -> Reply:
        body = {"error": self.error, "error_description": str(self)}
        return Reply.json(self.status, body | {"error_codes": [self.code]})


def use(grant: Grant | None, form: Mapping[str, str], *, reused: int) -> Grant:
    """Use up ``grant`` (``None``: the request named none we issued), or raise
    Entra's refusal: pending, revoked, already used (``AADSTS<reused>``), or a
    PKCE verifier or redirect URI that is not the authorization request's.
    Call it holding the lock that guards the grant, so that it works once."""
    if grant is None:
        raise AADError("invalid_grant", 9002313)
    if not grant.email:
        raise AADError("authorization_pending", 70016)
    problem = grant.revoked or (reused if grant.used else 0)
    if grant.challenge and not problem:  # PKCE, and the same redirect URI
        digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
        if b64(digest) != grant.challenge:
            problem = 501481
        elif form.get("redirect_uri") != grant.redirect_uri:
            problem = 500112
    if problem:
        raise AADError("invalid_grant", problem, email=grant.email)
    grant.used = True
    return grant


def describe(code: int, what: str, *details: str) -> str:
    """Entra's ``AADSTS<code>: ...`` (clients branch on the code, not the text)."""
    return f"AADSTS{code}: {what}" + (f" ({', '.join(details)})" if details else "")
