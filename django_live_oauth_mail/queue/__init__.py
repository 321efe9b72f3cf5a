"""The outbox: queued messages, the worker, pacing, session leases, and the task glue.

Code above the queue asks :mod:`.service`. Django Tasks (:mod:`.tasks`) or
Celery (:mod:`.celery_tasks`) run :func:`.worker.deliver` for each queued
message and schedule what it deferred; below them, nothing schedules.
"""
