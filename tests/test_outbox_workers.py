"""Queued mail sent by real worker processes of django-tasks-db on PostgreSQL.

The test queues through ``QueuedEmailBackend`` in this process and commits;
``db_worker`` processes (tests/worker_settings.py) pick the tasks up from the
same database and send to the stand-ins, which run in this process. The
assertions look at what the stand-ins received and what the rows say.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.mail import EmailMessage
from django.db import connection, transaction

from django_live_oauth_mail import outbox
from django_live_oauth_mail.backends import QueuedEmailBackend
from django_live_oauth_mail.models import OutboundMessage
from django_live_oauth_mail.testing import FakeGraphAPI, XOAuth2SMTPServer

from .test_concurrency import require_vendor

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]

Status = OutboundMessage.Status
ALICE = "alice@outlook.com"
ROOT = Path(__file__).resolve().parent.parent
DB_TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}


@pytest.fixture(autouse=True)
def _postgres_and_db_tasks(settings: Any) -> None:
    require_vendor("postgresql")
    settings.TASKS = DB_TASKS


class Workers:
    """``db_worker`` processes; stopped (and their output kept) at teardown."""

    def __init__(self, live_settings: dict[str, Any], tmp_path: Path) -> None:
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
            "LIVE_OAUTH_MAIL_WORKER_TASKS": json.dumps(DB_TASKS),
        }
        started = []
        for _ in range(count):
            log = self.tmp_path / f"worker-{len(self.processes)}.log"
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "django",
                    "db_worker",
                    "--interval",
                    "0.05",
                    "--no-startup-delay",
                ],
                env=env,
                cwd=ROOT,
                stdout=log.open("wb"),
                stderr=subprocess.STDOUT,
            )
            self.processes.append((process, log))
            started.append(process)
        return started

    def output(self) -> str:
        return "\n".join(
            log.read_text(errors="replace")[-3000:] for _, log in self.processes
        )

    def stop(self) -> None:
        for process, _ in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        for process, _ in self.processes:
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(5)


@pytest.fixture
def workers(live_settings: dict[str, Any], tmp_path: Path) -> Iterator[Workers]:
    live_settings.update(QUEUE_BACKOFF=0.5, SMTP_RETRIES=0)
    started = Workers(live_settings, tmp_path)
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
    from django_tasks_db.models import DBTaskResult

    with pytest.raises(RuntimeError), transaction.atomic():
        queue("rolled back")
        raise RuntimeError("the view failed")
    queue("committed")
    assert DBTaskResult.objects.count() == 1
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
    assert len({m.session_id for m in smtp_server.messages}) <= 3 * 3
    assert set(statuses().values()) == {Status.SENT}


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
    worker.kill()
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
