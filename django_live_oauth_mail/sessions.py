"""Signed-in sessions kept warm between sends, per process and mailbox.

Connecting, TLS and XOAUTH2 cost about 7 round trips to Exchange before the
first message; a session kept from the last send skips all of them, so one
``send_mail()`` costs MAIL, RCPT, DATA and the body. The pool lends each
session to one backend at a time, so threads never share one. It keeps:

- at most :data:`MAX_IDLE_PER_MAILBOX` idle sessions per mailbox: Exchange
  allows 3 connections per mailbox and refuses a 4th (``432 4.3.2``);
- none idle longer than ``SESSION_IDLE_TIMEOUT``;
- none whose mailbox changed since it signed in (a refresh elsewhere, a
  re-link, a disconnect) or whose token is about to expire;
- none across ``fork()``: a child forgets its parent's sessions unclosed.

Sessions left at exit are closed then.
"""

from __future__ import annotations

import atexit
import datetime
import os
import threading
import time
from collections.abc import Hashable

from django.utils import timezone

from .conf import conf
from .models import MailAccount
from .transport import Session

MAX_IDLE_PER_MAILBOX = 2

#: A session is not lent out this close to its token's expiry.
TOKEN_MARGIN = datetime.timedelta(minutes=1)


class SessionPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        # (transport, mailbox pk) -> [(idle since, session)], oldest first
        self._idle: dict[tuple[Hashable, int], list[tuple[float, Session]]] = {}
        self._pid = os.getpid()

    def take(self, transport: Hashable, account: MailAccount) -> Session | None:
        """The freshest idle session for ``account`` that may still be used."""
        found: Session | None = None
        with self._lock:
            stale = self._expired()
            idle = self._idle.get((transport, account.pk), [])
            while idle and found is None:
                _, session = idle.pop()
                if _still_valid(session, account):
                    found = session
                    found.rested = True
                else:
                    stale.append(session)
        _close(stale)
        return found

    def give_back(self, transport: Hashable, session: Session) -> None:
        with self._lock:
            stale = self._expired()
            idle = self._idle.setdefault((transport, session.account.pk), [])
            idle.append((time.monotonic(), session))
            stale += [s for _, s in idle[:-MAX_IDLE_PER_MAILBOX]]
            del idle[:-MAX_IDLE_PER_MAILBOX]
        _close(stale)

    def drop(self, account: MailAccount) -> None:
        """Close ``account``'s idle sessions: Exchange has too many open."""
        with self._lock:
            stale = [
                session
                for key in [key for key in self._idle if key[1] == account.pk]
                for _, session in self._idle.pop(key)
            ]
        _close(stale)

    def close_all(self) -> None:
        with self._lock:
            self._forget_after_fork()
            stale = [s for idle in self._idle.values() for _, s in idle]
            self._idle.clear()
        _close(stale)

    def _expired(self) -> list[Session]:
        """Take out the sessions idle too long (call with the lock held)."""
        self._forget_after_fork()
        deadline = time.monotonic() - conf.SESSION_IDLE_TIMEOUT
        expired: list[Session] = []
        for idle in self._idle.values():
            while idle and idle[0][0] < deadline:
                expired.append(idle.pop(0)[1])
        return expired

    def _forget_after_fork(self) -> None:
        # The parent owns these connections: a QUIT from here would end its
        # sessions. Dropped unclosed, they only release this process's sockets.
        if os.getpid() != self._pid:
            self._idle = {}
            self._pid = os.getpid()


def _still_valid(session: Session, account: MailAccount) -> bool:
    signed_in = session.account
    # updated_at moves on every change to the link: refresh, re-link, status.
    if signed_in.updated_at != account.updated_at:
        return False
    expires = signed_in.token_expires_at
    return expires is not None and expires > timezone.now() + TOKEN_MARGIN


def _close(sessions: list[Session]) -> None:
    for session in sessions:
        session.close()


POOL = SessionPool()
atexit.register(POOL.close_all)
