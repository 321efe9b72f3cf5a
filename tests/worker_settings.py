"""Settings for task workers that the outbox tests start as processes.

The test passes its database name and its LIVE_OAUTH_MAIL (the stand-ins'
addresses) through the environment; the engine is django-tasks-db, or RQ.
"""

from __future__ import annotations

import json
import os

from .settings import *  # noqa: F403
from .settings import DATABASES, INSTALLED_APPS

DATABASES["default"]["NAME"] = os.environ["LIVE_OAUTH_MAIL_WORKER_DB"]
LIVE_OAUTH_MAIL = json.loads(os.environ["LIVE_OAUTH_MAIL_WORKER_SETTINGS"])
TASKS = json.loads(os.environ["LIVE_OAUTH_MAIL_WORKER_TASKS"])
if "django_tasks_db" not in INSTALLED_APPS:
    INSTALLED_APPS.append("django_tasks_db")
if "RQBackend" in json.dumps(TASKS):
    INSTALLED_APPS += ["django_rq", "django_tasks_rq"]
    host, port, db = (
        os.environ["LIVE_OAUTH_MAIL_WORKER_REDIS"][8:].replace("/", ":").split(":")
    )
    RQ_QUEUES = {"default": {"HOST": host, "PORT": int(port), "DB": int(db)}}
LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": "WARNING"},
}
