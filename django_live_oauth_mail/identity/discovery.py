"""The ``http_client`` msal gets: the shared session, discovery kept per process.

msal asks for the openid-configuration (and, on Microsoft's hosts, instance
metadata) whenever an application object is built. A long-lived object would
find the answers in its own ``http_cache``; ours live for one call (see
:mod:`.applications`), so the answers are kept here instead, and discovery
happens once per process. The session and its policy are the package's
(``django_live_oauth_mail.http``), shared with Graph.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Mapping
from typing import Any

import requests

from ..conf import conf
from ..http import session_for

# msal keeps a successful GET in its http_cache for a day
# (throttled_http_client.py); discovery answers are kept here as long.
_DISCOVERY_SECONDS = 24 * 3600


@dataclasses.dataclass(frozen=True)
class _Answer:
    """A remembered discovery answer: the parts of a response msal reads."""

    status_code: int
    text: str
    headers: Mapping[str, str]


class DiscoveringClient:
    """One session, with the successful JSON GET answers kept for a day.

    Only those: a proxy's HTML page answered with 200 must not stick for a
    day. Two cold calls at once may both ask; nothing waits for anyone
    else's request.
    """

    def __init__(self, session: requests.Session) -> None:
        self.session = session
        self._answers: dict[tuple[str, str], tuple[float, _Answer]] = {}
        self._lock = threading.Lock()

    def get(self, url: str, params: Any = None, **kwargs: Any) -> Any:
        key = (url, json.dumps(params, sort_keys=True, default=str))
        with self._lock:
            kept = self._answers.get(key)
        if kept is not None and time.monotonic() < kept[0]:
            return kept[1]
        response = self.session.get(url, params=params, **kwargs)
        if 200 <= response.status_code < 300 and _is_json(response.text):
            answer = _Answer(response.status_code, response.text, response.headers)
            with self._lock:
                self._answers[key] = (time.monotonic() + _DISCOVERY_SECONDS, answer)
        return response

    def post(self, url: str, **kwargs: Any) -> Any:
        return self.session.post(url, **kwargs)

    def close(self) -> None:
        """Leave the shared session open: other calls use it (``reset()`` closes)."""


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


_clients: dict[tuple[float, str | None], DiscoveringClient] = {}
_clients_lock = threading.Lock()


def http_client() -> DiscoveringClient:
    """The process's client for the current timeout and CA bundle."""
    key = (conf.HTTP_TIMEOUT, conf.CA_BUNDLE)
    with _clients_lock:
        if key not in _clients:
            _clients[key] = DiscoveringClient(session_for(*key))
        return _clients[key]


def forget() -> None:
    """Forget every discovery answer (for tests: as in a new process)."""
    with _clients_lock:
        _clients.clear()
