"""The process's HTTP policy, shared by msal's requests and Graph's.

One ``requests`` session per process (per timeout and CA bundle), so the
identity platform and Graph share one connection pool and one set of rules:
the ``HTTP_TIMEOUT`` on every request, certificates checked against
``CA_BUNDLE``, one retry of a failed connection, and no cookies kept. It
lives on the ground floor so transports need nothing of msal's to use it.
"""

from __future__ import annotations

import functools
import http.cookiejar
import threading

import requests

from .conf import conf

_sessions: dict[tuple[float, str | None], requests.Session] = {}
_sessions_lock = threading.Lock()


def http_session() -> requests.Session:
    """The process's ``requests`` session, which Graph requests share with msal.

    One connection pool per process; the timeout is ``HTTP_TIMEOUT`` and
    certificates are checked against ``CA_BUNDLE``, as for the identity
    platform. It retries a failed connection once, but never a request that
    was sent (urllib3 retries no POST after a read error).
    """
    return session_for(conf.HTTP_TIMEOUT, conf.CA_BUNDLE)


def session_for(timeout: float, ca_bundle: str | None) -> requests.Session:
    """The process's session for this timeout and CA bundle, made on first use."""
    key = (timeout, ca_bundle)
    with _sessions_lock:
        if key not in _sessions:
            _sessions[key] = _new_session(timeout, ca_bundle)
        return _sessions[key]


def _new_session(timeout: float, ca_bundle: str | None) -> requests.Session:
    session = requests.Session()
    # requests lets REQUESTS_CA_BUNDLE and CURL_CA_BUNDLE override a session's
    # `verify`, but not a per-request one; pass it per request so CA_BUNDLE wins.
    session.request = functools.partial(  # type: ignore[method-assign]
        session.request, timeout=timeout, verify=ca_bundle or True
    )
    adapter = requests.adapters.HTTPAdapter(max_retries=1)
    session.mount("https://", adapter)
    # One session serves every user's calls: keep no cookie from one for another.
    session.cookies.set_policy(http.cookiejar.DefaultCookiePolicy(allowed_domains=[]))
    return session


def reset() -> None:
    """Close and forget every session (for tests: as in a new process)."""
    with _sessions_lock:
        sessions = list(_sessions.values())
        _sessions.clear()
    for session in sessions:
        session.close()
