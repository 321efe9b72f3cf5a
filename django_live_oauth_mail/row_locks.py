"""The mailbox's row lock, as everything that paces or fails its mail takes it.

A worker holds it to take an SMTP session slot, to pace, and to mark a
message ``sending``, in one transaction; a disconnect holds it before it
fails the mailbox's waiting messages. Taking it first, always, is what keeps
the two from deadlocking (row before messages).
"""

from __future__ import annotations

from typing import TypeVar

from django.db import connections, models

_M = TypeVar("_M", bound=models.Model)


class SendingLocks(models.QuerySet[_M]):
    """For ``MailAccount``'s queryset (kept here: models.py is near its size limit)."""

    def lock_for_sending(self, pk: int) -> None:
        """Lock the mailbox's row ``pk`` until the transaction ends.

        ``SELECT ... FOR UPDATE`` where the database has row locks. SQLite has
        none and ignores ``select_for_update()``: there a no-op ``UPDATE``
        takes its database write lock at once, so workers queue for it
        (within the busy timeout) instead of each reading first and then
        failing to upgrade to a write with "database is locked".
        """
        locking = self.select_for_update().filter(pk=pk)
        if connections[locking.db].features.has_select_for_update:  # db for writes
            list(locking.values_list("pk", flat=True))
        else:
            # Any column would do; not a key, whose writes SQLite checks.
            self.filter(pk=pk).update(send_rate=models.F("send_rate"))
