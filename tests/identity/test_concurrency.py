"""Many workers, one mailbox whose token is about to expire.

Every worker sends one message at the same moment. Exactly one of them may
redeem the refresh token (Microsoft rotates it, so two refreshes from the same
stale copy would lose one of the new ones); the others must wait for the row
lock and use the token it stored. Every message must arrive, and the stored
cache must end up holding the newest refresh token.

How the workers reach the database
----------------------------------
The workers always run in processes started with the ``spawn`` context, either
one process with N threads (each thread opens its own connection, as in a
threaded WSGI server) or N single-threaded processes (as with several gunicorn
workers). Each process configures Django from ``tests.settings`` with the
database replaced by the one the test uses. The stand-ins for Microsoft stay in
the pytest process; the workers get their addresses through ``LIVE_OAUTH_MAIL``.

* PostgreSQL: the workers use the test database pytest-django created (the
  test is transactional, so the linked account is committed and visible).
* SQLite: the test database is in memory (shared-cache mode), which other
  processes cannot open and whose table locks ignore the busy timeout, so it
  would not model a real deployment. The test copies it into a file with
  SQLite's backup API, the workers use that file (with SQLite's default 5 s
  busy timeout), and the file is copied back before the assertions. This needs
  nothing from tox or the environment and works whatever the test database is.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import socket
import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from django.db import connection

from ..helpers import refreshes, stored_refresh_token
from ..standins import IdentityPlatform

if TYPE_CHECKING:
    from django_live_oauth_mail.models import MailAccount
    from django_live_oauth_mail.testing import XOAuth2SMTPServer

# Nothing here may import Django models at module level: spawned workers import
# this module (to find their entry point) before they configure Django.

# Spawned processes, RUN_TIMEOUT to finish and 5 s each to join.
pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(120)]

# Threads are cheap; each process costs about a second of start-up CPU time.
WORKERS = {"threads": 8, "processes": 4}
MAILBOX = "alice@outlook.com"
RECIPIENT = "rcpt@example.org"
BARRIER_TIMEOUT = 15.0
RUN_TIMEOUT = 25.0


# -- which database ---------------------------------------------------------------


def _postgres_reachable() -> bool:
    host = os.environ.get("PGHOST", "127.0.0.1")
    port = int(os.environ.get("PGPORT", "5432"))
    try:
        socket.create_connection((host, port), timeout=2).close()
    except OSError:
        return False
    return True


def require_vendor(vendor: str) -> None:
    """Skip unless the test database is ``vendor``; fail where skipping would hide.

    A PostgreSQL test fails instead of skipping when the run was asked to use
    PostgreSQL but got something else, or when ``LIVE_OAUTH_MAIL_REQUIRE_POSTGRES=1``
    and PostgreSQL is not reachable. With PostgreSQL reachable, the SQLite
    environments skip it: the tox ``postgres`` environment runs it.
    """
    actual = connection.vendor
    if actual == vendor:
        return
    if vendor == "postgresql":
        from ..conftest import postgres_required

        if os.environ.get("LIVE_OAUTH_MAIL_TEST_DATABASE") == "postgres":
            pytest.fail(
                f"LIVE_OAUTH_MAIL_TEST_DATABASE=postgres, but the tests use {actual}."
            )
        if postgres_required() and not _postgres_reachable():
            pytest.fail(
                "LIVE_OAUTH_MAIL_REQUIRE_POSTGRES=1, but PostgreSQL is not reachable "
                "at PGHOST:PGPORT (default 127.0.0.1:5432)."
            )
    where = " (tox -e postgres runs it)" if vendor == "postgresql" else ""
    pytest.skip(f"needs {vendor}; this run uses {actual}{where}")


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgresql", id="postgres", marks=pytest.mark.postgres),
    ]
)
def vendor(request: pytest.FixtureRequest) -> str:
    require_vendor(request.param)
    return str(request.param)


class WorkerDatabase:
    """The database the workers use: the test database, or a file copy of it."""

    def __init__(self, tmp_path: Path) -> None:
        self.copy: Path | None = None
        if connection.vendor == "sqlite":
            self.copy = tmp_path / "workers.sqlite3"
            connection.ensure_connection()
            target = sqlite3.connect(self.copy)
            try:
                connection.connection.backup(target)
            finally:
                target.close()
            self.settings: dict[str, Any] = {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": str(self.copy),
            }
        else:
            keys = ("ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS")
            self.settings = {key: connection.settings_dict[key] for key in keys}

    def collect(self) -> None:
        """Make what the workers wrote visible to this process's connection."""
        if self.copy is not None:
            source = sqlite3.connect(self.copy)
            try:
                source.backup(connection.connection)
            finally:
                source.close()


# -- the workers (run in spawned processes) -----------------------------------------


def _setup_django(config: dict[str, Any]) -> None:
    os.environ["DJANGO_SETTINGS_MODULE"] = config["settings_module"]
    import django
    from django.conf import settings as worker_settings

    worker_settings.DATABASES = {"default": config["database"]}
    worker_settings.LIVE_OAUTH_MAIL = config["live_oauth_mail"]
    django.setup()


def _send_as_worker(
    config: dict[str, Any], number: int, barrier: Any, results: Any
) -> None:
    import django
    from django.core.mail import EmailMessage, send_mail
    from django.db import connection as worker_connection

    from django_live_oauth_mail import sending_as
    from django_live_oauth_mail.backends import EmailBackend
    from django_live_oauth_mail.models import MailAccount

    outcome = "ok"
    try:
        # Every worker holds a copy read before anyone refreshed.
        stale = MailAccount.objects.get(pk=config["account_pk"])
        barrier.wait(timeout=BARRIER_TIMEOUT)
        subject = f"worker {number}"
        if number % 2:
            # What applications do: a task sends as the mailbox's owner, and
            # the backend finds the mailbox by sender.
            with sending_as(stale.user_id):
                sent = send_mail(subject, "body", MAILBOX, [RECIPIENT])
        else:
            # The backend gets the stale copy itself. It is built the way
            # Django 6.1's mail.mailers builds one (with an alias).
            alias = {"alias": "default"} if django.VERSION >= (6, 1) else {}
            backend = EmailBackend(account=stale, **alias)
            message = EmailMessage(subject, "body", MAILBOX, [RECIPIENT])
            sent = backend.send_messages([message])
        if sent != 1:
            outcome = f"sent {sent} messages"
    except Exception as error:  # reported to the test; our messages hold no token
        outcome = f"{type(error).__name__}: {error}"
    finally:
        worker_connection.close()
    results.put((number, outcome))


def _worker_process(
    config: dict[str, Any], first: int, count: int, barrier: Any, results: Any
) -> None:
    """Entry point of a spawned process: ``count`` workers, one thread each."""
    try:
        _setup_django(config)
    except Exception as error:
        for number in range(first, first + count):
            results.put((number, f"Django setup failed: {error!r}"))
        return
    barrier = barrier or threading.Barrier(count)
    threads = [
        threading.Thread(
            target=_send_as_worker, args=(config, number, barrier, results)
        )
        for number in range(first, first + count)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()


def run_workers(config: dict[str, Any], mode: str) -> dict[int, str]:
    """Run the senders as threads of one process, or as processes."""
    workers = WORKERS[mode]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    if mode == "threads":
        processes = [
            context.Process(
                target=_worker_process, args=(config, 0, workers, None, results)
            )
        ]
    else:
        barrier = context.Barrier(workers)
        processes = [
            context.Process(
                target=_worker_process, args=(config, number, 1, barrier, results)
            )
            for number in range(workers)
        ]
    for process in processes:
        process.start()
    outcomes: dict[int, str] = {}
    deadline = time.monotonic() + RUN_TIMEOUT
    try:
        while len(outcomes) < workers and time.monotonic() < deadline:
            try:
                number, outcome = results.get(timeout=0.5)
            except queue.Empty:
                if not any(process.is_alive() for process in processes):
                    break
                continue
            outcomes[number] = outcome
    finally:
        for process in processes:
            process.join(timeout=5)
            if process.is_alive():
                process.kill()
                process.join()
    return outcomes


# -- the scenario ---------------------------------------------------------------------


def newest_refresh_token(platform: IdentityPlatform, email: str) -> str:
    """The refresh token the platform issued last for ``email``, still unused.

    The fake has no public accessor for issued tokens; its grant store keeps
    them in the order it issued them.
    """
    grants = platform._refresh  # test-only peek at the fake's state
    issued = [token for token, grant in grants.items() if grant.email == email]
    assert not grants[issued[-1]].used
    return issued[-1]


@pytest.fixture
def expiring_account(
    vendor: str, link: Any, user: Any, identity_platform: IdentityPlatform
) -> MailAccount:
    """Alice, linked with an access token msal already treats as expiring."""
    identity_platform.access_token_lifetime = 120  # under msal's 5-minute margin
    account: MailAccount = link(user, MAILBOX)
    identity_platform.access_token_lifetime = 3600  # the refreshed one stays fresh
    identity_platform.reset()
    return account


@pytest.mark.parametrize("mode", ["threads", "processes"])
def test_many_workers_refresh_an_expiring_token_once(
    mode: str,
    expiring_account: MailAccount,
    identity_platform: IdentityPlatform,
    smtp_server: XOAuth2SMTPServer,
    live_settings: dict[str, Any],
    tmp_path: Path,
) -> None:
    from django_live_oauth_mail.identity.tokens import get_access_token
    from django_live_oauth_mail.models import MailAccount

    linked_refresh_token = stored_refresh_token(expiring_account)
    database = WorkerDatabase(tmp_path)
    config = {
        "settings_module": os.environ.get("DJANGO_SETTINGS_MODULE", "tests.settings"),
        "database": database.settings,
        "live_oauth_mail": dict(live_settings),
        "account_pk": expiring_account.pk,
    }

    outcomes = run_workers(config, mode)  # gives up waiting after RUN_TIMEOUT
    database.collect()

    workers = WORKERS[mode]
    assert outcomes == dict.fromkeys(range(workers), "ok"), outcomes
    assert refreshes(identity_platform) == 1
    received = smtp_server.messages
    assert sorted(m.subject for m in received) == sorted(
        f"worker {n}" for n in range(workers)
    )
    assert {m.authenticated_as for m in received} == {MAILBOX}

    stored = MailAccount.objects.get(pk=expiring_account.pk)
    assert stored.status == MailAccount.Status.ACTIVE
    assert stored.last_refreshed_at is not None
    newest = stored_refresh_token(stored)
    assert newest != linked_refresh_token
    assert newest == newest_refresh_token(identity_platform, MAILBOX)

    # The stored cache really works: a forced refresh from it succeeds.
    token = get_access_token(stored, force_refresh=True)
    assert token.refreshed
    assert identity_platform.validate_access_token(token.value) == MAILBOX
    assert refreshes(identity_platform) == 2
    assert identity_platform.token_requests[-1].status == 200
