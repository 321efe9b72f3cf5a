"""Mailbox owners known to the fake identity platform."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Literal

__all__ = ["PERSONAL_TENANT_ID", "FakeIdentity"]

#: Tenant id Microsoft uses for every personal (Outlook.com, Hotmail) account.
PERSONAL_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

_NAMESPACE = uuid.UUID("5f0c3c1e-7f0e-4a43-9a1b-6c2b8f4e0d11")


@dataclass(frozen=True)
class FakeIdentity:
    """A user who can sign in at the fake identity platform.

    Ids left empty are derived from the e-mail address, so the same address
    always gets the same ids across test runs (like a real account would).
    Personal accounts live in Microsoft's fixed consumer tenant; work accounts
    get one tenant per e-mail domain. Set ``email_claim=False`` to mimic
    tenants whose ID tokens carry no ``email`` claim.
    """

    email: str
    name: str = ""
    kind: Literal["personal", "work"] = "work"
    tenant_id: str | None = None
    object_id: str | None = None
    preferred_username: str | None = None
    email_claim: bool = True

    def __post_init__(self) -> None:
        if "@" not in self.email:
            raise ValueError(f"FakeIdentity needs an e-mail, got {self.email!r}")
        if self.kind not in ("personal", "work"):
            raise ValueError(f"kind must be 'personal' or 'work', got {self.kind!r}")
        if self.kind == "personal":
            if self.tenant_id not in (None, PERSONAL_TENANT_ID):
                raise ValueError("personal accounts always use PERSONAL_TENANT_ID")
            tenant_id = PERSONAL_TENANT_ID
        else:
            domain = self.email.rsplit("@", 1)[1].lower()
            tenant_id = self.tenant_id or str(uuid.uuid5(_NAMESPACE, f"tid:{domain}"))
        local_part = self.email.split("@", 1)[0]
        defaults = {
            "name": self.name or local_part.replace(".", " ").title(),
            "tenant_id": tenant_id,
            "object_id": self.object_id or self._default_object_id(),
            "preferred_username": self.preferred_username or self.email,
        }
        for field_name, value in defaults.items():
            object.__setattr__(self, field_name, value)

    @property
    def tid(self) -> str:
        """The home tenant id (never ``None`` after construction)."""
        return str(self.tenant_id)

    @property
    def oid(self) -> str:
        """The object id (never ``None`` after construction)."""
        return str(self.object_id)

    @property
    def username(self) -> str:
        """The ``preferred_username`` claim (never ``None`` after construction)."""
        return str(self.preferred_username)

    @property
    def account_label(self) -> str:
        """How Microsoft's account picker describes this kind of account."""
        if self.kind == "personal":
            return "Personal account (Outlook.com)"
        return "Work or school account"

    def _default_object_id(self) -> str:
        stable = uuid.uuid5(_NAMESPACE, f"oid:{self.email.lower()}").hex
        if self.kind == "personal":
            # Personal accounts' object ids are a zero-padded 64-bit id.
            return f"00000000-0000-0000-{stable[:4]}-{stable[4:16]}"
        return str(uuid.UUID(stable))
