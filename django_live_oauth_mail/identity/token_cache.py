"""A mailbox's stored msal cache, checked before msal reads it.

msal trusts its cache: an entry without a field it needs surfaces as a
KeyError halfway through a refresh, naming nothing. So the stored JSON is
checked first, and a cache msal could not use is reported as such, in words
that quote nothing from it (it holds the tokens).
"""

from __future__ import annotations

import json
from typing import Any

import msal

# What msal and cached_access_token() read from each kind of cache entry with
# no default (token_cache.py search(), application.py _find_msal_accounts() and
# the refresh path), so a missing one would surface as a KeyError mid-refresh...
_REQUIRED_FIELDS = {
    "AccessToken": ("secret", "expires_on"),
    "RefreshToken": ("secret",),
    "Account": ("authority_type",),
}
# ...and what they pass to int().
_NUMERIC_FIELDS = ("expires_on", "refresh_on", "last_modification_time")


class UnreadableCache(Exception):
    """A stored cache msal could not use; the message quotes nothing from it."""


def load_cache(serialized: str) -> msal.SerializableTokenCache:
    """The mailbox's msal cache; raises ``UnreadableCache`` if msal can't use it."""
    cache = msal.SerializableTokenCache()
    if not serialized:
        return cache
    try:
        state = json.loads(serialized)
    except ValueError:
        raise UnreadableCache("it is not JSON") from None
    problem = _cache_problem(state)
    if problem:
        raise UnreadableCache(problem)
    cache.deserialize(serialized)
    return cache


def _cache_problem(state: Any) -> str | None:
    if not isinstance(state, dict):
        return "it is not a JSON object"
    for kind, entries in state.items():
        if not isinstance(entries, dict) or not all(
            isinstance(entry, dict) for entry in entries.values()
        ):
            return "one of its sections is not a JSON object of entries"
        required = _REQUIRED_FIELDS.get(kind, ())
        for entry in entries.values():
            for field in required:
                if field not in entry:
                    return f"one of its {kind} entries has no {field!r}"
            for field in _NUMERIC_FIELDS:
                if field in entry and not _is_integer(entry[field]):
                    return f"one of its entries has a non-numeric {field!r}"
    return None


def _is_integer(value: Any) -> bool:
    try:
        int(value)
    except (TypeError, ValueError):
        return False
    return True
