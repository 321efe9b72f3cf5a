"""Queued sending: the request's cost, and what the workers then do.

Run it with ``make bench`` (or ``python -m benchmarks.queue`` from the
repository root, with the package's ``testing`` extra and django-tasks-db
installed). On the stand-ins of send_batch.py, with SQLite in a temporary
file, it:

1. times, inside one request-like transaction (commit and scheduling
   included), handing over 1 and 100 messages to (a) ``QueuedEmailBackend``,
   (b) our inline backend and (c) Django's SMTP backend with a password, in
   interleaved rounds;
2. queues ``--per-mailbox`` messages for each of 10 mailboxes at a raised
   ``SEND_RATE``, starts ``--workers`` ``db_worker`` processes, and reports the
   throughput and, per mailbox, the most messages the SMTP server received in
   any window of the rate's period: never more than the rate.

It exits 1 if a message is lost or a mailbox goes faster than its rate.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from benchmarks import send_batch

QUEUED = "django_live_oauth_mail.backends.QueuedEmailBackend"
TASKS = {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}}
ROOT = Path(__file__).resolve().parent.parent


def site_settings(db_path: str, env: send_batch.Env, rate: str) -> dict[str, Any]:
    settings = send_batch.django_settings(db_path, env)
    settings["INSTALLED_APPS"] = [*settings["INSTALLED_APPS"], "django_tasks_db"]
    settings["TASKS"] = TASKS
    middleware = "django_live_oauth_mail.middleware.SendingAsMiddleware"
    settings["MIDDLEWARE"] = [*settings["MIDDLEWARE"], middleware]
    # The site and the workers write to one SQLite file.
    settings["DATABASES"]["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE"}
    settings["LIVE_OAUTH_MAIL"] = {**settings["LIVE_OAUTH_MAIL"], "SEND_RATE": rate}
    return settings


def request_time(send: Callable[[], int], expected: int) -> float:
    """Wall time of one request-like transaction that sends (or queues)."""
    from django.db import transaction

    started = time.perf_counter()
    with transaction.atomic():
        handed_over = send()
    elapsed = time.perf_counter() - started  # on_commit work included
    if handed_over != expected:
        raise SystemExit(f"handed over {handed_over}, expected {expected}")
    return elapsed


def in_the_request(env: send_batch.Env, sizes: list[tuple[int, int]]) -> None:
    from django.core import mail

    from django_live_oauth_mail.models import OutboundMessage

    queued = mail.get_connection(QUEUED)
    print("\n1. Time in the request (median of the rounds; queueing includes")
    print("   the commit and scheduling the tasks; nothing is sent yet)")
    print(
        f"   {'messages':>8}  {'queued':>10}  {'ours inline':>12}  {'Django SMTP':>12}"
    )
    for n, rounds in sizes:
        batch = send_batch.build_batch(n, [send_batch.MAIN])
        backends = {
            "queued": lambda: queued,
            "ours": env.ours,
            "django": env.baseline,
        }
        samples: dict[str, list[float]] = {name: [] for name in backends}
        for _ in range(rounds):  # interleaved: each round tries each backend
            for name, backend in backends.items():
                send = backend().send_messages
                samples[name].append(request_time(lambda: send(batch), n))  # noqa: B023
        _forget_queued()
        if OutboundMessage.objects.exists():
            raise SystemExit("queued messages were left behind")
        row = [send_batch.fmt_ms(statistics.median(samples[k])) for k in samples]
        print(f"   {n:>8}  {row[0]:>10}  {row[1]:>12}  {row[2]:>12}")


def _forget_queued() -> None:
    from django_tasks_db.models import DBTaskResult

    from django_live_oauth_mail.models import OutboundMessage

    DBTaskResult.objects.all().delete()
    OutboundMessage.objects.all().delete()


def throughput(
    env: send_batch.Env, settings: dict[str, Any], tmp: str, args: argparse.Namespace
) -> bool:
    from django.core import mail

    from django_live_oauth_mail.conf import parse_rate

    mailboxes = env.k_mailboxes
    count, period = parse_rate(args.rate, "--rate")
    batch = send_batch.build_batch(args.per_mailbox * len(mailboxes), mailboxes)
    env.smtp.reset()
    mail.get_connection(QUEUED).send_messages(batch)
    as_json = json.dumps(json.dumps(settings))
    Path(tmp, "bench_worker_settings.py").write_text(
        f"import json\nglobals().update(json.loads({as_json}))\n"
    )
    workers_env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "bench_worker_settings",
        "PYTHONPATH": os.pathsep.join(
            [tmp, str(ROOT), os.environ.get("PYTHONPATH", "")]
        ),
    }
    command = [sys.executable, "-m", "django", "db_worker", "--interval", "0.05",
               "--no-startup-delay"]  # fmt: skip
    started = time.perf_counter()
    workers = [
        subprocess.Popen(command, env=workers_env, stdout=subprocess.DEVNULL)  # noqa: S603
        for _ in range(args.workers)
    ]
    try:
        env.smtp.wait_for_messages(len(batch), timeout=args.timeout)
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(10)
    elapsed = time.perf_counter() - started
    by_mailbox: dict[str, list[float]] = {}
    for message in env.smtp.messages:
        by_mailbox.setdefault(str(message.authenticated_as), []).append(
            message.received_at
        )
    busiest = {m: _most_in_a_window(times, period) for m, times in by_mailbox.items()}
    sessions = len({m.session_id for m in env.smtp.messages})
    print(
        f"\n2. Workers: {args.workers} db_worker processes, {len(mailboxes)} mailboxes"
    )
    print(f"   {len(batch)} messages, SEND_RATE {args.rate!r} per mailbox")
    print(f"   all sent in {elapsed:.2f} s: {len(batch) / elapsed:.1f} messages/s")
    print(f"   SMTP sessions: {sessions}")
    print(f"   most per mailbox in any {period:g} s window: {max(busiest.values())}"
          f" (limit {count})")  # fmt: skip
    ok = len(env.smtp.messages) == len(batch) and max(busiest.values()) <= count
    if not ok:
        print("   FAILED: a message was lost or a mailbox went faster than its rate")
    return ok


def _most_in_a_window(times: list[float], period: float) -> int:
    """The most arrivals within any half-open window of ``period`` seconds."""
    times, most, first = sorted(times), 0, 0
    for last, arrived in enumerate(times):
        while arrived - times[first] >= period:
            first += 1
        most = max(most, last - first + 1)
    return most


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.queue", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--sizes", default="1:15,100:5", help="N:rounds (%(default)s)")
    parser.add_argument("--per-mailbox", type=int, default=30, help="(%(default)s)")
    parser.add_argument("--rate", default="10/second", help="SEND_RATE (%(default)s)")
    parser.add_argument("--workers", type=int, default=3, help="(%(default)s)")
    parser.add_argument("--timeout", type=float, default=120, help="(%(default)s)")
    parser.add_argument("--quick", action="store_true", help="smoke run")
    args = parser.parse_args(argv)
    args.db = "file"  # for send_batch.environment_lines
    if args.quick:
        args.sizes, args.per_mailbox = "1:3,100:2", 10
    sizes = [tuple(map(int, s.split(":"))) for s in args.sizes.split(",")]

    import django
    from django.conf import settings as django_settings
    from django.core.management import call_command

    tmp = tempfile.mkdtemp(prefix="live-oauth-mail-queue-bench-")
    env = send_batch.start_env(10)
    try:
        settings = site_settings(f"{tmp}/bench.sqlite3", env, args.rate)
        django_settings.configure(**settings)
        django.setup()
        call_command("migrate", verbosity=0)
        owner = send_batch.link_mailboxes(env)
        from django_live_oauth_mail.acting import set_acting

        set_acting(lambda: owner)  # as a view behind SendingAsMiddleware
        print("django-live-oauth-mail queue benchmark")
        for line in send_batch.environment_lines(args):
            print("  " + line)
        in_the_request(env, sizes)  # type: ignore[arg-type]
        return 0 if throughput(env, settings, tmp, args) else 1
    finally:
        env.smtp.stop()
        env.platform.stop()


if __name__ == "__main__":
    sys.exit(main())
