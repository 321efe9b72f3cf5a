"""Send Django mail as linked Microsoft mailboxes with OAuth 2.0, by SMTP or Graph."""

from .ownership.acting import sending_as

__all__ = ["sending_as"]
__version__ = "0.2.0.dev0"
