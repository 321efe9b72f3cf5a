"""The demo's task worker: django-tasks-db's ``db_worker``, as a child process.

The contact form queues its mail (QueuedEmailBackend); this worker sends it,
as a deployment's worker would, so the demo shows queued mail really flowing.
It gets the stand-ins' CA file through the environment: the stand-ins make a
new one each time they start.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

MANAGE = Path(__file__).resolve().parent.parent / "manage.py"


def start(ca_bundle: str | None) -> subprocess.Popen[bytes]:
    env = dict(os.environ)
    if ca_bundle:
        env["DEMO_CA_BUNDLE"] = ca_bundle
    return subprocess.Popen(  # noqa: S603 - our own manage.py, fixed arguments
        # No autoreloader (the site runs without one too): one process to stop.
        [sys.executable, str(MANAGE), "db_worker", "--interval", "0.2", "--no-reload"],
        env=env,
    )


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)
