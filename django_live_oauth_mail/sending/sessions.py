"""Signed-in sessions kept warm between sends, per process and mailbox.

Connecting, TLS and XOAUTH2 cost about 7 round trips to Exchange before the
first message; a session kept from the last send skips all of them, so one
``send_mail()`` costs MAIL, RCPT, DATA and the body. The pool lends each
session to one backend at a time, so threads never share one, and only to a
backend with the same transport (host, port, timeout, TLS). It keeps:

- at most :data:`MAX_IDLE_PER_MAILBOX` idle sessions per mailbox: Exchange
  allows 3 connections per mailbox and refuses a 4th (``432 4.3.2``);
- none idle longer than ``SESSION_IDLE_TIMEOUT`` (a timer closes them even
  when nothing else is sent);
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

from ..conf import conf
from ..models import MailAccount
from ..transports.base import Session

MAX_IDLE_PER_MAILBOX = 2

#: A session is not lent out this close to its token's expiry.
TOKEN_MARGIN = datetime.timedelta(minutes=1)

_Idle = tuple[float, Hashable, Session]  # (idle since, transport, session)


class SessionPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._idle: dict[int, list[_Idle]] = {}  # by mailbox pk, oldest first
        self._pid = os.getpid()
        self._reaper: threading.Timer | None = None

    def take(self, transport: Hashable, account: MailAccount) -> Session | None:
        """The freshest idle session for ``account`` over ``transport``, if any."""
        found: Session | None = None
        with self._lock:
            stale = self._expired()
            idle = self._idle.get(account.pk, [])
            for entry in reversed(idle):
                if entry[1] != transport:
                    continue
                idle.remove(entry)
                if _still_valid(entry[2], account):
                    found = entry[2]
                    found.rested = True
                    break
                stale.append(entry[2])
            self._forget_empty(account.pk)
        _close(stale)
        return found

    def has_idle(self, transport: Hashable, account: MailAccount) -> bool:
        """Is a session for ``account`` over ``transport`` idle here, unexpired?

        Then signing in opens no connection (or replaces one): the queue's
        worker asks, to know whether it must take a session slot first.
        """
        with self._lock:
            self._forget_after_fork()
            deadline = time.monotonic() - conf.SESSION_IDLE_TIMEOUT
            idle = self._idle.get(account.pk, [])
            return any(t == transport and since >= deadline for since, t, _ in idle)

    def give_back(self, transport: Hashable, session: Session) -> None:
        if session.pid != os.getpid():
            return  # a parent's: dropped unclosed (see _forget_after_fork)
        with self._lock:
            stale = self._expired()
            idle = self._idle.setdefault(session.account.pk, [])
            idle.append((time.monotonic(), transport, session))
            stale += [s for _, _, s in idle[:-MAX_IDLE_PER_MAILBOX]]
            del idle[:-MAX_IDLE_PER_MAILBOX]
            self._reap_later()
        _close(stale)

    def drop(self, account: MailAccount) -> None:
        """Close ``account``'s idle sessions: Exchange has too many open."""
        with self._lock:
            self._forget_after_fork()
            stale = [s for _, _, s in self._idle.pop(account.pk, [])]
        _close(stale)

    def close_all(self) -> None:
        with self._lock:
            self._forget_after_fork()
            stale = [s for idle in self._idle.values() for _, _, s in idle]
            self._idle.clear()
            if self._reaper is not None:
                self._reaper.cancel()
                self._reaper = None
        _close(stale)

    def _reap(self) -> None:
        """The timer's work: close what waited too long, and come back if needed."""
        with self._lock:
            self._reaper = None
            stale = self._expired()
            self._reap_later()
        _close(stale)

    def _reap_later(self) -> None:
        """Make sure a timer will expire the idle sessions (call with the lock)."""
        if self._idle and (self._reaper is None or not self._reaper.is_alive()):
            self._reaper = threading.Timer(conf.SESSION_IDLE_TIMEOUT + 1, self._reap)
            self._reaper.daemon = True
            self._reaper.start()

    def _expired(self) -> list[Session]:
        """Take out the sessions idle too long (call with the lock held)."""
        self._forget_after_fork()
        deadline = time.monotonic() - conf.SESSION_IDLE_TIMEOUT
        expired: list[Session] = []
        for pk, idle in list(self._idle.items()):
            while idle and idle[0][0] < deadline:
                expired.append(idle.pop(0)[2])
            self._forget_empty(pk)
        return expired

    def _forget_empty(self, pk: int) -> None:
        if not self._idle.get(pk, True):
            del self._idle[pk]

    def _forget_after_fork(self) -> None:
        # The parent owns these connections: a QUIT from here would end its
        # sessions. Dropped unclosed, they only release this process's sockets.
        if os.getpid() != self._pid:
            self._idle, self._reaper = {}, None
            self._lock = threading.Lock()
            self._pid = os.getpid()


def _still_valid(session: Session, account: MailAccount) -> bool:
    # updated_at moves on every change to the link: refresh, re-link, status.
    if session.account.updated_at != account.updated_at:
        return False
    expires = session.expires_at  # None: it holds no token that could expire
    return expires is None or expires > timezone.now() + TOKEN_MARGIN


def _close(sessions: list[Session]) -> None:
    for session in sessions:
        session.close()


POOL = SessionPool()
atexit.register(POOL.close_all)
if hasattr(os, "register_at_fork"):  # POSIX; the pid checks cover the rest
    # At once in the child, before any thread there can find the lock held.
    os.register_at_fork(after_in_child=POOL._forget_after_fork)
