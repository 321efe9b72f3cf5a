"""Send Django mail through Microsoft mailboxes with OAuth 2.0 (SMTP XOAUTH2)."""

from .ownership.acting import sending_as

__all__ = ["sending_as"]
__version__ = "0.2.0.dev0"
