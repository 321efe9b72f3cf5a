"""A database connection whose writes commit now, whatever the caller has open.

Token state must not depend on the caller's transaction: a rolled-back
request (``ATOMIC_REQUESTS``, an outer ``atomic()``) would otherwise undo a
rotated refresh token or a ``reconnect_required`` status that the identity
platform has already made true. So, inside a caller's transaction, token
state is written through a second connection to the same database, in
autocommit mode. So is ``last_used_at`` (:mod:`.delivery`): the mail went
out whatever the caller does next, and the caller's transaction must hold no
lock on our row, which a refresh later in that transaction would wait for.

Two cases keep the caller's connection:

* outside any transaction it already commits each statement;
* SQLite allows one writer at a time: a second connection could not commit
  while the caller's transaction holds the write lock, and under WAL the
  caller's next write would fail with ``SQLITE_BUSY_SNAPSHOT``. There the
  state lives and dies with the caller's transaction (documented).

A row the caller created in its still-open transaction is invisible to a
second connection; its state then follows the row, on the caller's
connection. So does a row the caller's transaction has locked (it wrote it),
which the second connection could otherwise wait for forever.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.db import connections, router
from django.db.models import Model
from django.db.utils import OperationalError

#: How long the second connection waits for a row lock before deciding the
#: caller's own transaction holds it. Our own locks last milliseconds.
LOCK_TIMEOUT_MS = 2000

_local = threading.local()


def needs_second_connection(alias: str) -> bool:
    connection = connections[alias]
    return connection.in_atomic_block and connection.vendor != "sqlite"


@contextmanager
def second_connection(alias: str) -> Iterator[str]:
    """A fresh autocommit connection to ``alias``'s database, as an alias.

    The connection is registered for this thread only, and closed on exit.
    """
    name = f"{alias}__live_oauth_mail_{threading.get_ident()}_{_depth()}"
    wrapper = connections.create_connection(alias)
    connections[name] = wrapper
    _local.depth = _depth() + 1
    try:
        if wrapper.vendor == "postgresql":
            with wrapper.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = {int(LOCK_TIMEOUT_MS)}")
        yield name
    finally:
        _local.depth = _depth() - 1
        del connections[name]
        wrapper.close()


def update(instance: Model, **fields: Any) -> None:
    """``UPDATE`` the instance's row and commit now where that is possible.

    Falls back to the caller's connection when the second one cannot see or
    lock the row (the caller created or wrote it in its open transaction).
    """
    model = type(instance)
    alias = router.db_for_write(model, instance=instance)
    update_rows(model, {instance.pk}, alias, **fields)


def update_rows(model: type[Model], pks: set[Any], alias: str, **fields: Any) -> None:
    """:func:`update` for the rows ``pks`` of ``model`` in ``alias``, at once.

    If the second connection cannot update every one of them, all are
    updated on the caller's connection: ``fields`` must be safe to write twice.
    """
    if needs_second_connection(alias):
        with second_connection(alias) as second:
            try:
                rows = model._default_manager.using(second).filter(pk__in=pks)
                if rows.update(**fields) == len(pks):
                    return
            except OperationalError as error:
                if not is_lock_timeout(error):
                    raise
    model._default_manager.using(alias).filter(pk__in=pks).update(**fields)


def _depth() -> int:
    return int(getattr(_local, "depth", 0))


def is_lock_timeout(error: OperationalError) -> bool:
    """True for PostgreSQL's ``lock_not_available`` (what ``lock_timeout`` raises)."""
    cause = error.__cause__
    code = getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)
    return code == "55P03" or "lock timeout" in str(error)
