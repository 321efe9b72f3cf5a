"""The Celery app of the outbox tests' Celery workers (and of the test process).

The broker is the Redis database the test chose; Celery's Django fix-up sets
Django up in the worker from DJANGO_SETTINGS_MODULE, and the app's ready()
registers the task because LIVE_OAUTH_MAIL["QUEUE"] is "celery".
"""

from __future__ import annotations

import os

from celery import Celery

app = Celery("live_oauth_mail_tests")
app.conf.update(
    broker_url=os.environ.get(
        "LIVE_OAUTH_MAIL_WORKER_REDIS", "redis://127.0.0.1:6379/12"
    ),
    task_ignore_result=True,
    broker_connection_retry_on_startup=True,
    worker_hijack_root_logger=False,
)
