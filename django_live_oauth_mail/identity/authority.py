"""Where the identity platform is: the configured authority and a tenant's.

Kept apart because the app objects, the error wording (admin-consent links)
and the management command all need these URLs, and none of them should
import another for it.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from ..conf import conf

#: The tenant id Entra gives every personal (Outlook.com) account.
PERSONAL_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

# Hosts for which msal's instance discovery is meaningful. Any other host
# (a sovereign proxy, our test stand-in) must be used with discovery off.
MICROSOFT_LOGIN_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "login.microsoftonline.us",
        "login.partner.microsoftonline.cn",
        "login.chinacloudapi.cn",
    }
)


def uses_instance_discovery(authority: str) -> bool:
    """Whether msal's instance discovery suits ``authority`` (a Microsoft host)."""
    return (urlsplit(authority).hostname or "").lower() in MICROSOFT_LOGIN_HOSTS


def tenant_authority(tenant: str) -> str:
    """The configured authority's host with ``tenant`` for its path."""
    parts = urlsplit(conf.AUTHORITY)
    return f"{parts.scheme}://{parts.netloc}/{tenant}"


def admin_consent_url(tenant: str) -> str:
    """Where a tenant's administrator grants the app its application permissions."""
    return f"{tenant_authority(tenant)}/adminconsent?client_id={conf.CLIENT_ID}"
