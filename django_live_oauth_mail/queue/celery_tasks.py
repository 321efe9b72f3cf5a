"""The sending task for sites on Celery (``LIVE_OAUTH_MAIL["QUEUE"] = "celery"``).

The same work as the Django task (:func:`.tasks.send_queued_message`);
Celery's ``eta`` does the deferring. The site's Celery app must find this
module: with ``app.autodiscover_tasks()`` it does, as for any installed
app's tasks. Scheduling finds the task by its name (:mod:`.tasks`).
"""

from __future__ import annotations

from celery import shared_task

from . import tasks


@shared_task(name=tasks.CELERY_TASK_NAME, ignore_result=True)  # type: ignore[untyped-decorator,unused-ignore]
def send_queued_message(pk: int) -> None:
    """Send one queued message (or defer it, or record why it failed)."""
    tasks.send_queued_message(pk)
