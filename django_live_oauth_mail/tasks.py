"""The sending task, on Django's tasks framework or Celery (``QUEUE``).

``django.tasks`` on Django 6, the ``django-tasks`` backport on 5.2; the
site's ``TASKS`` setting picks the engine. The task's only argument is the
outbox row's primary key: task arguments must be JSON, and the message
itself stays encrypted in the database.
"""

from __future__ import annotations

import datetime
import importlib
from collections.abc import Iterable
from typing import Any

from django.db import transaction

from .conf import conf
from .exceptions import ConfigurationError

try:  # Django 6
    from django.tasks import task as _task
except ImportError:  # pragma: no cover - depends on the Django version
    try:
        from django_tasks import task as _task  # type: ignore[no-redef,import-not-found,unused-ignore]
    except ImportError:
        _task = None  # type: ignore[assignment]


send_queued_message: Any = None

if _task is not None:

    @_task()
    def send_queued_message(pk: int) -> None:
        """Send one queued message (or defer it, or record why it failed)."""
        from .worker import deliver

        deliver(pk)


def require_engine() -> None:
    """Raise ConfigurationError unless the configured queue can be used."""
    if conf.QUEUE == "celery":
        try:
            importlib.import_module("celery")
        except ImportError:
            raise ConfigurationError(
                "LIVE_OAUTH_MAIL['QUEUE'] is 'celery', but Celery is not "
                "installed: pip install celery."
            ) from None
    elif send_queued_message is None:
        raise ConfigurationError(
            "QueuedEmailBackend needs Django's tasks framework: on Django 5.2 "
            "install the backport (pip install django-tasks) and add it, with a "
            "TASKS setting, as its documentation says."
        )


def can_defer() -> bool:
    """Can the engine run a task later? Pacing needs it."""
    if conf.QUEUE == "celery":
        return True
    return bool(send_queued_message.get_backend().supports_defer)


def schedule(pk: int, run_after: datetime.datetime | None = None) -> None:
    """Have the message with ``pk`` sent, at ``run_after`` if the engine can wait."""
    if conf.QUEUE == "celery":
        from .celery_tasks import send_queued_message as celery_task

        celery_task.apply_async((pk,), eta=run_after)
        return
    task = send_queued_message
    if run_after is not None and can_defer():
        task = task.using(run_after=run_after)
    task.enqueue(pk)


def schedule_many(pks: Iterable[int]) -> None:
    # One transaction: a database engine then writes all its task rows with
    # one commit (on SQLite, one fsync instead of one per message).
    with transaction.atomic():
        for pk in pks:
            schedule(pk)
