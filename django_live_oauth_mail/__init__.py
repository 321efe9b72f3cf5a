"""Send Django mail through Microsoft mailboxes with OAuth 2.0 (SMTP XOAUTH2)."""

__version__ = "0.1.0"
