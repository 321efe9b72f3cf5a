"""The sending task's import path, which task rows and RQ jobs store.

``django_live_oauth_mail.tasks.send_queued_message`` is where workers find the
task, in every release: the code lives in :mod:`.queue.tasks`.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name == "send_queued_message":
        from .queue.tasks import sending_task

        return sending_task()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
