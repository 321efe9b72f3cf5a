"""The outbox: queued messages, the worker, pacing, session leases, and the task glue.

Django Tasks (:mod:`.tasks`) or Celery (:mod:`.celery_tasks`) run
:func:`.worker.deliver` for each queued message.
"""
