"""What every page needs to know: stand-ins or real Microsoft, and the nav."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from . import standins

NAV = [
    ("home", "Home"),
    ("live_oauth_mail:accounts", "Mailboxes"),
    ("compose", "Compose"),
    ("dev_inbox", "Dev inbox"),
    ("contact", "Contact"),
    ("admin:index", "Admin"),
]


def demo_site(request: HttpRequest) -> dict[str, Any]:
    match = getattr(request, "resolver_match", None)
    current = match.view_name if match else ""
    if current.startswith("live_oauth_mail:"):
        current = "live_oauth_mail:accounts"  # connect/callback belong to Mailboxes
    config = settings.LIVE_OAUTH_MAIL
    # Not "site": Django's auth views put the current Site under that name.
    return {
        "example": {
            "nav": [(name, label, name == current) for name, label in NAV],
            "use_standins": settings.USE_STANDINS,
            "standins_running": standins.running() is not None,
            "authority": config.get("AUTHORITY", ""),
            "smtp": f"{config.get('SMTP_HOST', 'smtp.office365.com')}:"
            f"{config.get('SMTP_PORT', 587)}",
            "demo_username": settings.DEMO_USERNAME,
            "demo_password": settings.DEMO_PASSWORD,
        }
    }
