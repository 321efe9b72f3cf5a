"""The sending task on Django's tasks framework or Celery (``QUEUE``); scheduling it.

The task runs :func:`.worker.deliver` and schedules what it says to run
again (a deferred message, at the time it may go): the worker and the
outbox never schedule, so nothing below imports this module.

``django.tasks`` on Django 6, the ``django-tasks`` backport on 5.2; the
site's ``TASKS`` setting picks the engine, ``TASK_BACKEND`` and
``TASK_QUEUE`` which of its backends and queues. The task's only argument is
the outbox row's primary key: task arguments must be JSON, and the message
itself stays encrypted in the database.

The task object is made when first asked for, not at import: Django checks
it against ``TASKS`` when it is made, and a site that only sends inline must
not fail to start over its queue settings.
"""

from __future__ import annotations

import datetime
import importlib
import logging
from collections.abc import Sequence
from typing import Any

from django.db import router, transaction

from ..conf import conf
from ..exceptions import ConfigurationError
from ..models import OutboundMessage
from .worker import deliver

logger = logging.getLogger(__name__)

try:  # Django 6
    from django.tasks import task as _task
except ImportError:  # pragma: no cover - depends on the Django version
    try:
        from django_tasks import task as _task  # type: ignore[no-redef,import-not-found,unused-ignore]
    except ImportError:
        _task = None  # type: ignore[assignment]


try:
    from celery import current_app as celery_app  # a proxy: the site's app when used
except ImportError:  # pragma: no cover - Celery is optional
    celery_app = None

#: The Celery task's name (:mod:`.celery_tasks` registers it; scheduling
#: finds it by name, so this module need not import that one).
CELERY_TASK_NAME = "django_live_oauth_mail.send_queued_message"


def send_queued_message(pk: int) -> None:
    """Send one queued message (or defer it, or record why it failed).

    A deferred message is scheduled again, for when it may go, once the
    worker's writes are committed (as the rows of :mod:`.service` are).
    """
    run_after = deliver(pk, paced=can_defer())
    if run_after is not None:
        transaction.on_commit(
            lambda: schedule([pk], run_after=run_after),
            using=router.db_for_write(OutboundMessage),
        )


# Task rows and RQ jobs store the task's import path, and workers import it.
# It stays ``django_live_oauth_mail.tasks.send_queued_message`` whatever module
# holds the code, so rows queued by one release are run by the next (and back):
# that module's attribute is the task made here.
send_queued_message.__module__ = "django_live_oauth_mail.tasks"


def _make_task(backend: str, queue: str) -> Any:
    if _task is None:
        raise ConfigurationError(
            "QueuedEmailBackend needs Django's tasks framework: on Django 5.2 "
            "install the backport (pip install django-tasks) and give it a TASKS "
            "setting, as its documentation says."
        )
    return _task(backend=backend, queue_name=queue)(send_queued_message)


def sending_task() -> Any:
    """The Django task that sends a queued message, for the configured engine.

    Made anew each time (it is cheap), so it follows changed settings.
    """
    return _make_task(conf.TASK_BACKEND, conf.TASK_QUEUE)


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
        return
    try:
        sending_task()
    except ConfigurationError:
        raise
    except Exception as error:  # Django's own: an unknown backend or queue
        raise ConfigurationError(
            f"QueuedEmailBackend cannot use its task backend: {error} Check TASKS "
            "and LIVE_OAUTH_MAIL['TASK_BACKEND'] / ['TASK_QUEUE']."
        ) from error


def can_defer() -> bool:
    """Can the engine run a task later? Pacing needs it."""
    if conf.QUEUE == "celery":
        return True
    return bool(sending_task().get_backend().supports_defer)


def schedule(pks: Sequence[int], run_after: datetime.datetime | None = None) -> None:
    """Have the messages sent (at ``run_after`` if the engine can wait).

    Called once the rows are committed. A failure is logged, not raised: the
    rows are safe in the outbox and the caller's request has succeeded;
    ``outbox resume`` schedules them again once the engine is back.
    """
    try:
        if conf.QUEUE == "celery":
            # By name, so this module need not import the task's. Where the
            # app registered it (apps.ready() does, for QUEUE = "celery"), its
            # own apply_async(), which keeps routing and eager mode; else sent
            # to the broker by name, for the workers that registered it.
            registered = celery_app.tasks.get(CELERY_TASK_NAME)
            for pk in pks:
                if registered is not None:
                    registered.apply_async((pk,), eta=run_after)
                else:
                    celery_app.send_task(CELERY_TASK_NAME, (pk,), eta=run_after)
            return
        task = sending_task()
        if run_after is not None and can_defer():
            task = task.using(run_after=run_after)
        # One transaction: a database engine writes all its task rows with
        # one commit (on SQLite, one fsync instead of one per message).
        with transaction.atomic():
            for pk in pks:
                task.enqueue(pk)
    except Exception:
        logger.exception(
            "Could not schedule %d queued message(s) (%s): they stay in the outbox, "
            "waiting. Once the task engine works again, run `manage.py "
            "live_oauth_mail outbox resume`.",
            len(pks),
            ", ".join(map(str, pks[:20])),
        )
