"""msal's throttling memory, kept per connect flow and per mailbox.

msal's throttling client remembers 429, 5xx and Retry-After answers (and
OAuth 400s, for a minute) in its ``http_cache`` and answers a repeat of the
request from there without sending it. Its key is the URL, client id, scope
and a hash of ``data.get("refresh_token")``; it only falls back to the
authorization code when the body is not a dict, and msal always sends a dict
(``_extract_data`` in throttled_http_client.py). So refreshes are already
keyed per refresh token, but every code exchange shares one key: in a shared
cache, one user's 429 with Retry-After: 20 refused every other user's link
for 20 s without a request, and one 500 for 5 s. Hence one cache per flow
and per mailbox: one user's refusal never refuses another user's request,
while a retry of the same flow, or of the same mailbox's refresh, still waits
out Retry-After.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


class Refusals:
    """The ``http_cache`` of each connect flow (by ``state``) and mailbox
    (by ``home_account_id``).

    A call takes its cache out while it runs (two calls never share one, so
    msal's bookkeeping in it needs no lock) and puts it back only if the call
    failed: msal only remembers refusals, and a success means none applies.
    At most ``capacity`` are kept, the oldest dropped first, as msal bounds
    its own cache at 1024 entries.
    """

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._caches: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    @contextmanager
    def lend(self, key: str | None) -> Iterator[dict[str, Any]]:
        """The ``http_cache`` for one call about ``key`` (None: a fresh one)."""
        with self._lock:
            cache = self._caches.pop(key, None) if key else None
        cache = {} if cache is None else cache
        try:
            yield cache
        except BaseException:
            if key:
                with self._lock:
                    self._caches[key] = cache
                    while len(self._caches) > self.capacity:
                        self._caches.popitem(last=False)
            raise

    def clear(self) -> None:
        """Forget every refusal (for tests: as in a new process)."""
        with self._lock:
            self._caches.clear()


#: The process's throttling memory.
refusals = Refusals(capacity=1024)
