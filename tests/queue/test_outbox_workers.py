"""Queued mail sent by real worker processes, on each engine, on PostgreSQL.

Every test runs three times: ``db_worker`` processes of django-tasks-db, RQ
workers (django-tasks-rq, with RQ's scheduler) on Redis, and Celery workers
on a Redis broker (``QUEUE = "celery"``). The test queues through
``QueuedEmailBackend`` in this process and commits; the workers
(tests/worker_settings.py) pick the tasks up and send to the stand-ins, which
run in this process. The assertions look at what the stand-ins received and
what the rows say.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import connection, transaction

from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.models import OutboundMessage
from django_live_oauth_mail.queue import outbox
from django_live_oauth_mail.testing import FakeGraphAPI, XOAuth2SMTPServer

from ..identity.test_concurrency import require_vendor

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
    # Starts worker processes, waits up to 60 s for them, and stops each with
    # up to 15 s of grace at teardown.
    pytest.mark.timeout(240),
]

Status = OutboundMessage.Status
ALICE = "alice@outlook.com"
# Where `tests` is importable from (tox: a directory with only a link to it).
# Not tests/ itself: its queue/ would shadow the standard library's queue.
ROOT = Path(__file__).absolute().parents[2]
REDIS = ("127.0.0.1", 6379)
RQ_DB, CELERY_DB = 13, 12
REDIS_URL = f"redis://{REDIS[0]}:{REDIS[1]}"


def _redis_reachable() -> bool:
    try:
        socket.create_connection(REDIS, timeout=2).close()
    except OSError:
        return False
    return True


def _flush_redis(db: int) -> None:
    import redis

    redis.Redis(host=REDIS[0], port=REDIS[1], db=db).flushdb()


class Engine:
    """How one engine is configured, and how its workers are started."""

    def __init__(
        self,
        name: str,
        tasks: dict[str, Any],
        command: list[str],
        *,
        settings: dict[str, Any] | None = None,
        redis_db: int | None = None,
    ) -> None:
        self.name, self.tasks, self.command = name, tasks, command
        self.live_settings = settings or {}
        self.redis_db = redis_db


ENGINES = {
    "db": Engine(
        "db",
        {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
        ["-m", "django", "db_worker", "--interval", "0.05", "--no-startup-delay"],
    ),
    "rq": Engine(
        "rq",
        {"default": {"BACKEND": "django_tasks_rq.RQBackend", "QUEUES": ["default"]}},
        [
            "-m",
            "django",
            "rqworker",
            "default",
            "--with-scheduler",
            "--job-class",
            "django_tasks_rq.Job",
            # Jobs run in the worker process, not a fork per job, so sessions
            # stay warm between messages (the README recommends it).
            "--worker-class",
            "rq.worker.SimpleWorker",
        ],
        redis_db=RQ_DB,
    ),
    "celery": Engine(
        "celery",
        {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
        [
            "-m",
            "celery",
            "-A",
            "tests.celery_app",
            "worker",
            "--pool",
            "solo",
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
            "--loglevel",
            "WARNING",
        ],
        settings={"QUEUE": "celery"},
        redis_db=CELERY_DB,
    ),
}


@pytest.fixture(params=sorted(ENGINES))
def engine(request: Any, settings: Any, live_settings: dict[str, Any]) -> Engine:
    require_vendor("postgresql")
    chosen = ENGINES[request.param]
    if chosen.redis_db is not None:
        if not _redis_reachable():
            if os.environ.get("CI"):
                pytest.fail(f"Redis is not reachable at {REDIS_URL}")
            pytest.skip(f"needs Redis at {REDIS_URL}")
        _flush_redis(chosen.redis_db)
    settings.TASKS = chosen.tasks
    settings.RQ_QUEUES = {"default": {"HOST": REDIS[0], "PORT": REDIS[1], "DB": RQ_DB}}
    live_settings.update(chosen.live_settings)
    if chosen.name == "celery":
        from .. import celery_app  # the Celery app this process enqueues with

        celery_app.app.set_current()
    return chosen


class Workers:
    """Worker processes; stopped (and their output kept) at teardown."""

    def __init__(
        self, engine: Engine, live_settings: dict[str, Any], tmp_path: Path
    ) -> None:
        self.engine = engine
        self.live_settings = live_settings
        self.tmp_path = tmp_path
        self.processes: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, count: int = 1) -> list[subprocess.Popen[bytes]]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.worker_settings",
            "PYTHONPATH": os.pathsep.join(
                p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p
            ),
            "LIVE_OAUTH_MAIL_WORKER_DB": str(connection.settings_dict["NAME"]),
            "LIVE_OAUTH_MAIL_WORKER_SETTINGS": json.dumps(dict(self.live_settings)),
            "LIVE_OAUTH_MAIL_WORKER_TASKS": json.dumps(self.engine.tasks),
            "LIVE_OAUTH_MAIL_WORKER_REDIS": f"{REDIS_URL}/{self.engine.redis_db}",
        }
        started = []
        for _ in range(count):
            log = self.tmp_path / f"worker-{len(self.processes)}.log"
            process = subprocess.Popen(
                [sys.executable, *self.engine.command],
                env=env,
                cwd=ROOT,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its children are stopped with it
            )
            self.processes.append((process, log))
            started.append(process)
        return started

    def output(self) -> str:
        return "\n".join(
            log.read_text(errors="replace")[-3000:] for _, log in self.processes
        )

    @staticmethod
    def kill(process: subprocess.Popen[bytes], sig: int = signal.SIGKILL) -> None:
        """Signal the worker and whatever it started (RQ's scheduler, say)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)

    def stop(self) -> None:
        for process, _ in self.processes:
            self.kill(process, signal.SIGTERM)
        for process, _ in self.processes:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(10)
            self.kill(process)
            process.wait(5)


@pytest.fixture
def workers(
    engine: Engine, live_settings: dict[str, Any], tmp_path: Path
) -> Iterator[Workers]:
    live_settings.update(QUEUE_BACKOFF=0.5, SMTP_RETRIES=0)
    started = Workers(engine, live_settings, tmp_path)
    yield started
    started.stop()


def wait_until(
    condition: Callable[[], bool], workers: Workers, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            rows = list(
                OutboundMessage.objects.values_list("subject", "status", "last_error")
            )
            pytest.fail(f"timed out; rows: {rows}\nworkers:\n{workers.output()}")
        time.sleep(0.05)


def statuses() -> dict[str, str]:
    return dict(OutboundMessage.objects.values_list("subject", "status"))


def queue(*subjects: str) -> int:
    return QueuedEmailBackend().send_messages(
        [EmailMessage(s, "Body", ALICE, ["to@example.org"]) for s in subjects]
    )


def test_each_queued_message_is_delivered_exactly_once_by_competing_workers(
    alice_account: Any,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    workers: Workers,
) -> None:
    subjects = [f"m{i}" for i in range(8)]
    assert queue(*subjects) == 8
    workers.start(2)
    wait_until(lambda: set(statuses().values()) == {Status.SENT}, workers)
    time.sleep(0.5)  # anything sent twice would have arrived by now
    received = sorted(str(m.message["Subject"]) for m in smtp_server.messages)
    assert received == subjects
    ids = {str(m.message["Message-ID"]) for m in smtp_server.messages}
    assert ids == set(OutboundMessage.objects.values_list("message_id", flat=True))


def test_a_rolled_back_request_queues_nothing_for_the_workers(
    alice_account: Any,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    workers: Workers,
) -> None:
    with pytest.raises(RuntimeError), transaction.atomic():
        queue("rolled back")
        raise RuntimeError("the view failed")
    queue("committed")
    assert list(OutboundMessage.objects.values_list("subject", flat=True)) == [
        "committed"
    ]
    workers.start(1)
    wait_until(lambda: statuses() == {"committed": Status.SENT}, workers)
    time.sleep(0.3)
    assert [str(m.message["Subject"]) for m in smtp_server.messages] == ["committed"]


def test_fifty_messages_at_ten_a_second_go_no_faster_across_three_workers(
    live_settings: dict[str, Any],
    alice_account: Any,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    workers: Workers,
) -> None:
    live_settings["SEND_RATE"] = "10/second"
    queue(*(f"m{i}" for i in range(50)))
    workers.start(3)
    wait_until(lambda: len(smtp_server.messages) == 50, workers, timeout=60)
    # What the pacing decided: no 11 attempts within one second.
    started = sorted(
        OutboundMessage.objects.values_list("started_at", flat=True)  # type: ignore[type-var]
    )
    gaps = [
        (b - a).total_seconds() for a, b in zip(started, started[10:], strict=False)
    ]
    assert min(gaps) >= 1.0, gaps
    # What the server saw, allowing for the time between deciding and arriving.
    arrived = sorted(m.received_at for m in smtp_server.messages)
    assert min(b - a for a, b in zip(arrived, arrived[10:], strict=False)) >= 0.75
    assert arrived[-1] - arrived[0] >= 3.75
    # Each worker kept its session warm, and none opened a second one.
    assert len({m.session_id for m in smtp_server.messages}) <= 3
    # The last rows are marked sent a moment after the server took them.
    wait_until(lambda: set(statuses().values()) == {Status.SENT}, workers)


def test_a_throttled_submission_is_deferred_then_delivered(
    alice_account: Any,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    workers: Workers,
) -> None:
    smtp_server.fail_next(
        stage="connect",
        reply="432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded",
    )
    queue("throttled once")
    workers.start(1)
    wait_until(lambda: statuses() == {"throttled once": Status.SENT}, workers)
    row = OutboundMessage.objects.get()
    assert row.attempts == 2
    assert len(smtp_server.messages) == 1


def test_a_revoked_mailbox_fails_its_queued_messages_with_the_reconnect_message(
    identity_platform: Any,
    alice_account: Any,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    workers: Workers,
) -> None:
    identity_platform.expire_access_tokens(ALICE)
    identity_platform.revoke(ALICE)
    queue("a", "b", "c")
    workers.start(1)
    wait_until(lambda: set(statuses().values()) == {Status.FAILED}, workers)
    for error in OutboundMessage.objects.values_list("last_error", flat=True):
        assert "Link the mailbox again" in error
    assert smtp_server.messages == []


def test_a_worker_killed_mid_send_leaves_a_truthful_status(
    live_settings: dict[str, Any],
    link: Any,
    user: Any,
    acting_user: Any,
    graph_server: FakeGraphAPI,
    smtp_server: XOAuth2SMTPServer,
    workers: Workers,
) -> None:
    live_settings["TRANSPORT"] = "graph"
    link(user, ALICE)
    graph_server.response_delay = 2.0
    queue("in flight")
    (worker,) = workers.start(1)
    wait_until(lambda: statuses() == {"in flight": Status.SENDING}, workers)
    time.sleep(0.5)  # the request is with Graph now
    workers.kill(worker)
    worker.wait(5)
    smtp_server.wait_for_messages(1, timeout=5)  # Graph took it, after all
    row = OutboundMessage.objects.get()
    assert row.status == Status.SENDING  # nobody knows better yet
    live_settings["SENDING_TIMEOUT"] = 1
    time.sleep(1.1)
    assert outbox.mark_stuck() == 1
    row.refresh_from_db()
    assert row.status == Status.UNKNOWN
    assert "may or may not have accepted it" in row.last_error
    assert len(smtp_server.messages) == 1


def test_workers_never_hold_more_sessions_to_a_mailbox_than_allowed(
    live_settings: dict[str, Any],
    alice_account: Any,
    acting_user: Any,
    smtp_server: XOAuth2SMTPServer,
    workers: Workers,
) -> None:
    live_settings["SESSIONS_PER_MAILBOX"] = 2
    queue(*(f"m{i}" for i in range(16)))
    workers.start(4)
    wait_until(lambda: set(statuses().values()) == {Status.SENT}, workers)
    assert len(smtp_server.messages) == 16
    assert len({m.session_id for m in smtp_server.messages}) <= 2
