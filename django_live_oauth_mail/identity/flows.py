"""Pending connect flows, kept server-side in the user's session.

Each flow is stored under its ``state``, bound to the user who started it, and
removed on first use, so a state cannot be replayed, shared between sessions,
or completed by another user. Old and surplus flows are pruned. Each remembers
the sign-in provider that started it, which alone can finish it.
"""

from __future__ import annotations

import time
from typing import Any

from django.http import HttpRequest

SESSION_KEY = "live_oauth_mail_flows"
MAX_PENDING = 5
MAX_AGE_SECONDS = 15 * 60


def remember(
    request: HttpRequest,
    flow: dict[str, Any],
    *,
    next_url: str | None,
    provider: str,
) -> None:
    """Store a flow ``provider`` just started, for this session and user."""
    pending = _pending(request)
    pending[flow["state"]] = {
        "flow": flow,
        "provider": provider,
        "user": str(request.user.pk),
        "started": time.time(),
        "next": next_url,
    }
    newest = sorted(pending.items(), key=lambda item: item[1]["started"])[-MAX_PENDING:]
    request.session[SESSION_KEY] = dict(newest)


def take(request: HttpRequest, state: str) -> dict[str, Any] | None:
    """Remove and return the flow for ``state`` if this user started it here."""
    pending = _pending(request)
    entry = pending.pop(state, None)
    request.session[SESSION_KEY] = pending
    if not isinstance(entry, dict) or entry.get("user") != str(request.user.pk):
        return None
    return entry


def _pending(request: HttpRequest) -> dict[str, Any]:
    stored = request.session.get(SESSION_KEY)
    if not isinstance(stored, dict):
        return {}
    cutoff = time.time() - MAX_AGE_SECONDS
    return {
        state: entry
        for state, entry in stored.items()
        if isinstance(entry, dict) and entry.get("started", 0) >= cutoff
    }
