"""How many worker processes may hold an SMTP session to one mailbox.

Exchange allows 3 connections per mailbox and refuses a 4th (``432 4.3.2``).
Each worker process keeps its session warm between messages (:mod:`.sessions`),
so a fourth worker would be refused, or push out nothing but its own mail.
Before a worker opens a session it takes a lease, a slot recorded on the
mailbox's row under its lock (``lock_for_sending``), so
``SESSIONS_PER_MAILBOX`` holds across every worker on every machine; a
worker reusing its warm session renews its lease in the transaction that
paces the message.

A lease lasts as long as an idle session may (twice ``SESSION_IDLE_TIMEOUT``,
the pool's timer included) and is renewed by each message, so a process that
died frees its slot when its session would have closed anyway.
"""

from __future__ import annotations

import datetime
import os
import socket

from django.db import router, transaction
from django.utils import timezone

from ..conf import conf
from ..models import MailAccount


def holder() -> str:
    """This process, as leases name it (after a fork, the child is another)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def take(account: MailAccount) -> datetime.datetime | None:
    """Take or renew this process's lease in a transaction of its own.

    Before connecting, when no session is warm (see :func:`.worker.deliver`).
    None, or when a slot may be free.
    """
    using = router.db_for_write(MailAccount)
    with transaction.atomic(using=using):
        MailAccount.objects.using(using).lock_for_sending(account.pk)
        return take_locked(account, using)


def take_locked(account: MailAccount, using: str) -> datetime.datetime | None:
    """:func:`take`, in the caller's transaction, the mailbox's row locked.

    The worker renews its lease so, with the pace, in one transaction.
    """
    now = timezone.now()
    rows = MailAccount.objects.using(using).filter(pk=account.pk)
    leases = rows.values_list("session_leases", flat=True).first() or {}
    live = {
        who: until
        for who, until in leases.items()
        if datetime.datetime.fromisoformat(until) > now
    }
    me = holder()
    if me not in live and len(live) >= conf.SESSIONS_PER_MAILBOX:
        return min(datetime.datetime.fromisoformat(t) for t in live.values())
    lasts = datetime.timedelta(seconds=2 * conf.SESSION_IDLE_TIMEOUT + 5)
    live[me] = (now + lasts).isoformat()
    rows.update(session_leases=live)
    return None
