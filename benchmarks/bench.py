"""Our backend against Django's own smtp.EmailBackend, side by side, in one run.

``make bench`` runs it (see docs/benchmarks.md). One STARTTLS stand-in takes
XOAUTH2 from our backend and a password from Django's; mailboxes are linked
through the app's views and msal. Tables: (a) a batch through one connection,
on loopback; (b) one ``send_mail()`` per call over a link with ``--rtt-ms`` of
round trip; (c) a request that queues or sends inline over that link, then
``db_worker`` processes draining a queue. Times only: tests/test_counts.py
guards the counts (queries, tokens, sessions).
"""

import argparse
import gc
import json
import os
import platform
import random
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from importlib.metadata import version
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import django

from benchmarks.latency import start_delay_line

MAIN = "sender@contoso.com"  # sends (a), (b) and (c)'s requests
TEAM = [f"team{i:02d}@fabrikam.com" for i in range(10)]  # the workers' mailboxes
PASSWORD = "bench-password-not-secret"  # noqa: S105 - the local stand-in's
ROOT = Path(__file__).resolve().parents[1]
A = (
    "(a) A batch through one connection on loopback, signing in each time "
    "(ours: SESSION_REUSE=False); ms per batch"
)
B = "(b) One send_mail() per call, a new backend each, %g ms round trip; ms per call"
C = (
    "(c) A request hands N messages over, same link: queued (sent later) or "
    "sent inline by ours or Django's; ms per request"
)
WORDS = ["your", "order", "has", "shipped", "and", "arrives", "in", "two", "days"]


def site_settings(db: str, idp: Any, smtp: tuple[str, int]) -> dict[str, Any]:
    """The site's settings as plain data: the workers load them from JSON."""
    apps = ["auth", "contenttypes", "sessions", "messages"]
    middleware = ["sessions.middleware.Session", "auth.middleware.Authentication"]
    return {
        "SECRET_KEY": "benchmark-only-not-secret",
        "ALLOWED_HOSTS": ["testserver"],
        "INSTALLED_APPS": [f"django.contrib.{app}" for app in apps]
        + ["django_tasks_db", "django_live_oauth_mail"],
        "MIDDLEWARE": [f"django.contrib.{m}Middleware" for m in middleware]
        + ["django_live_oauth_mail.middleware.SendingAsMiddleware"],
        "ROOT_URLCONF": "benchmarks.urls",
        "EMAIL_BACKEND": "django_live_oauth_mail.backends.EmailBackend",
        "DATABASES": {  # the site and its workers write to one SQLite file
            "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": db}
            | {"OPTIONS": {"transaction_mode": "IMMEDIATE"}}
        },
        "TASKS": {"default": {"BACKEND": "django_tasks_db.DatabaseBackend"}},
        "LIVE_OAUTH_MAIL": {
            "CLIENT_ID": idp.client_id,
            "CLIENT_SECRET": idp.client_secret,
            "AUTHORITY": idp.authority,
            "CA_BUNDLE": idp.ca_bundle,
            "SMTP_HOST": smtp[0],
            "SMTP_PORT": smtp[1],
            "SEND_RATE": "10/second",
            "ENCRYPTION_KEYS": ["kGnmMXuZv8uCP5bo0ZYPp1qGJZ2sGDlRDmL0cC8TpS8="],
        },
    }


def messages(n: int, senders: list[str] | None = None) -> list[Any]:
    """N order notices, text and HTML, 5 KB each; in a batch one has a 100 KB PDF."""
    from django.core.mail import EmailMultiAlternatives

    rng, senders, batch = random.Random(n), senders or [MAIN], []
    for i in range(n):
        text = " ".join(rng.choices(WORDS, k=400))
        sender = f"Contoso Shop <{senders[i % len(senders)]}>"
        message = EmailMultiAlternatives(
            f"Order {i}", text, sender, [f"{i}@example.org"]
        )
        message.attach_alternative(f"<html><p>{text}</p></html>", "text/html")
        if i == 0 and n > 1:
            message.attach("statement.pdf", rng.randbytes(100_000), "application/pdf")
        batch.append(message)
    return batch


def backend(kind: str) -> Any:
    """A new backend object, as ``send_mail()`` makes for each call.

    Django's gets our SMTP address and a password, and trusts the test CA by
    the call ours makes for CA_BUNDLE: the same chain, the same handshake.
    """
    from django.conf import settings
    from django.core.mail.backends import smtp

    from django_live_oauth_mail.backends import EmailBackend, QueuedEmailBackend

    if kind != "Django":
        return QueuedEmailBackend() if kind == "queued" else EmailBackend()
    conf = settings.LIVE_OAUTH_MAIL
    made = smtp.EmailBackend(host=conf["SMTP_HOST"], port=conf["SMTP_PORT"])
    made.username, made.password, made.use_tls = MAIN, PASSWORD, True
    made.ssl_context = ssl.create_default_context(cafile=conf["CA_BUNDLE"])
    return made


def sender(kind: str, n: int, request: bool = False, **conf: Any) -> Any:
    """``send_mail()``'s work for N messages: a new backend, one ``send_messages()``.

    ``request``: inside a transaction, whose commit schedules queued messages.
    ``conf`` overrides LIVE_OAUTH_MAIL around the call.
    """
    from django.conf import settings
    from django.db import transaction
    from django.test import override_settings

    batch = messages(n)  # built once: the same bytes every round

    def send() -> int:
        with ExitStack() as stack:
            if conf:
                live = {**settings.LIVE_OAUTH_MAIL, **conf}
                stack.enter_context(override_settings(LIVE_OAUTH_MAIL=live))
            if request:
                stack.enter_context(transaction.atomic())
            return int(backend(kind).send_messages(batch))

    return send


def side_by_side(smtp: Any, title: str, count: int, cases: dict[str, Any]) -> None:
    """Time each case's contenders; print medians in ms and ratios to Django.

    Each of ``count`` rounds runs every contender once, in an order that
    rotates, after an untimed warm-up round. A ratio is the median of the
    per-round ratios, so the machine's slow drifts cancel.
    """
    names = list(next(iter(cases.values())))  # Django's last
    heads = names + [f"{name} / Django" for name in names[:-1]]
    widths = [max(len(head), 7) + 3 for head in heads]
    print(f"\n{title}, median of {count}")
    print(" " * 14, *map(str.rjust, heads, widths), sep="")
    sessions = smtp.sessions
    for case, contenders in cases.items():
        times: dict[str, list[float]] = {name: [] for name in names}
        for r in range(count + 1):
            for name in names[r % len(names) :] + names[: r % len(names)]:
                gc.collect()
                started = time.perf_counter()
                contenders[name]()
                if r:
                    times[name].append(time.perf_counter() - started)
        ratios = [map(float.__truediv__, times[n], times["Django"]) for n in names[:-1]]
        cells = [f"{statistics.median(times[name]) * 1e3:.1f}" for name in names]
        cells += [f"{statistics.median(ratio):.3f}" for ratio in ratios]
        print(f"  {case:12}", *map(str.rjust, cells, widths), sep="")
    print(f"  SMTP sessions opened, warm-up included: {smtp.sessions - sessions}")


def wait_for_messages(smtp: Any, count: int, timeout: float = 600) -> float:
    """When the stand-in holds ``count`` messages (polled every millisecond)."""
    deadline = time.perf_counter() + timeout
    while len(smtp.messages) < count:
        if time.perf_counter() > deadline:
            raise TimeoutError(f"expected {count} message(s) within {timeout}s")
        time.sleep(0.001)
    return time.perf_counter()


def workers(smtp: Any, site: dict[str, Any], tmp: str, per_mailbox: int) -> None:
    """Queue messages from the TEAM mailboxes; time three ``db_worker`` to send them."""
    from django_tasks_db.models import DBTaskResult

    from django_live_oauth_mail.models import OutboundMessage

    DBTaskResult.objects.all().delete()  # what (c)'s requests queued
    OutboundMessage.objects.all().delete()
    queue = messages(per_mailbox * len(TEAM), TEAM)
    backend("queued").send_messages(queue)
    as_json = json.dumps(json.dumps(site))
    Path(tmp, "bench_site.py").write_text(
        f"import json\nglobals().update(json.loads({as_json}))"
    )
    # ``-m`` puts the working directory, the repository's root, on their path.
    env = os.environ | {"DJANGO_SETTINGS_MODULE": "bench_site", "PYTHONPATH": tmp}
    command = [sys.executable, "-m", "django", "db_worker", "--interval", "0.05"]
    smtp.reset()
    started = time.perf_counter()
    running = [
        subprocess.Popen(command, env=env, cwd=ROOT, stdout=subprocess.DEVNULL)  # noqa: S603
        for _ in range(3)
    ]
    try:
        first = wait_for_messages(smtp, 1)
        last = wait_for_messages(smtp, len(queue))
    finally:
        for process in running:
            process.terminate()
            process.wait(10)
    print(
        f"\n(c) Workers: 3 db_worker processes, {len(queue)} messages from "
        f"{len(TEAM)} mailboxes at 10/second each: first after {first - started:.1f}"
        f" s (start-up), then {(len(queue) - 1) / (last - first):.1f} a second"
    )


def link_mailboxes(idp: Any, mailboxes: list[str]) -> Any:
    """Link each mailbox through the app's views, msal and the consent page."""
    from django.contrib.auth import get_user_model
    from django.test import Client

    owner = get_user_model().objects.create_user("bench")
    client = Client()
    client.force_login(owner)
    for mailbox in mailboxes:
        answer = idp.approve(client.post("/mail/connect/")["Location"], mailbox)
        linked = client.get(urlsplit(answer.url).path, dict(answer.params))
        assert linked.status_code == 302, linked.content[:500]
    return owner


def describe_machine() -> None:
    cpuinfo = Path("/proc/cpuinfo").read_text().split("\n")  # Linux, as documented
    cpu = next(line.split(": ")[1] for line in cpuinfo if "model name" in line)
    git = ["git", "-C", str(ROOT), "describe", "--always", "--dirty"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout.strip()  # noqa: S603
    packages = ", ".join(f"{p} {version(p)}" for p in ("django", "msal", "aiosmtpd"))
    load = os.getloadavg()[0]
    print(f"  {cpu}, {os.cpu_count()} CPUs, {platform.platform()}, load {load:.2f}")
    print(f"  git {commit}, Python {platform.python_version()}, {packages}")


def main() -> None:
    parser = argparse.ArgumentParser("python -m benchmarks.bench", description=__doc__)
    add = parser.add_argument
    add("--sizes", default="100,1000", help="batch sizes in (a) (%(default)s)")
    add("--rounds", type=int, default=5, help="rounds in (a) and (c) (%(default)s)")
    add("--calls", type=int, default=30, help="calls per backend in (b) (%(default)s)")
    add("--rtt-ms", type=float, default=30, help="round trip in (b), (c) (%(default)s)")
    add("--quick", action="store_true", help="smoke run: small sizes, few rounds")
    args = parser.parse_args()
    if args.quick:
        args.sizes, args.rounds, args.calls = "20,100", 2, 4
    from django.conf import settings
    from django.core.management import call_command

    from django_live_oauth_mail import sending_as, testing

    started = time.perf_counter()
    idp = testing.FakeIdentityPlatform([testing.FakeIdentity(m) for m in [MAIN, *TEAM]])
    passwords, certificate = {MAIN: PASSWORD}, idp.start().certificate
    smtp = testing.XOAuth2SMTPServer(idp, certificate=certificate, passwords=passwords)
    link = start_delay_line((smtp.start().host, smtp.port), args.rtt_ms / 2000)
    with tempfile.TemporaryDirectory() as tmp:
        site = site_settings(f"{tmp}/bench.sqlite3", idp, link)
        settings.configure(**site)
        django.setup()
        call_command("migrate", verbosity=0)
        owner = link_mailboxes(idp, [MAIN, *TEAM])
        print(f"Our backend and Django's, {time.strftime('%Y-%m-%d %H:%M %Z')}")
        describe_machine()
        off = {"SESSION_REUSE": False}
        loopback = {"SMTP_HOST": smtp.host, "SMTP_PORT": smtp.port, **off}
        a = {
            f"N = {n}": {k: sender(k, n, **loopback) for k in ("ours", "Django")}
            for n in map(int, args.sizes.split(","))
        }
        b = {"ours": sender("ours", 1), "ours, no reuse": sender("ours", 1, **off)}
        b["Django"] = sender("Django", 1)
        c = {
            f"N = {n}": {k: sender(k, n, True) for k in ("queued", "ours", "Django")}
            for n in (1, 10)
        }
        with sending_as(owner):  # as in a view behind SendingAsMiddleware
            side_by_side(smtp, A, args.rounds, a)
            side_by_side(smtp, B % args.rtt_ms, args.calls, {"N = 1": b})
            side_by_side(smtp, C, args.rounds, c)
            workers(smtp, site, tmp, per_mailbox=2 if args.quick else 10)
    print(
        f"\ntotal {time.perf_counter() - started:.0f} s, load {os.getloadavg()[0]:.2f}"
    )
    smtp.stop()
    idp.stop()


if __name__ == "__main__":
    main()
