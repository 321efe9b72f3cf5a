"""One message per send_mail() call, over a link with round-trip time.

Run it with ``make bench`` (after ``benchmarks.send_batch``) or ``python -m
benchmarks.per_call`` from the repository root. It reuses send_batch's set-up
(stand-ins, Django settings, mailboxes linked through msal), but both
backends reach the SMTP stand-in through :class:`LatencyProxy`, which delays
every chunk by half of ``--rtt-ms`` in each direction (and a new connection by
TCP's three-way handshake). Then, in one warm process and
interleaved rounds, each contender makes M sequential calls of one message,
each with a new backend object, as ``send_mail()`` does:

(a) our backend, as configured (``SESSION_REUSE`` at its default);
(b) Django's ``smtp.EmailBackend`` with the mailbox's password;
(c) our backend with ``LIVE_OAUTH_MAIL["SESSION_REUSE"] = False``.

It prints the median time per call, the ratios to (b) (median of per-round
ratios), and per call the SMTP sessions, AUTH exchanges and token requests
the stand-ins saw. Times are reported, never asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import gc
import shutil
import smtplib
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import SimpleNamespace
from typing import Any

from benchmarks.latency_proxy import LatencyProxy
from benchmarks.send_batch import (
    MAIN,
    Env,
    bootstrap_median,
    configure_django,
    environment_lines,
    link_mailboxes,
    load_average,
    start_env,
)

A = "(a) our backend"
B = "(b) Django smtp.EmailBackend, password"
C = "(c) our backend, SESSION_REUSE=False"
TARGET_RATIO = 0.5
WARM_ROUND_TRIPS = 4  # MAIL, RCPT, DATA, the message: what a warm session needs
ISSUE_FLOOR = 4 / 11  # the issue's estimate: 11 round trips for a new session


@dataclasses.dataclass
class Row:
    """One contender's timed calls and what the stand-ins saw during them."""

    send: Callable[[], int]
    per_round: list[list[float]] = dataclasses.field(default_factory=list)
    sessions: int = 0
    auths: int = 0
    token_requests: int = 0

    @property
    def calls(self) -> list[float]:
        return [t for one_round in self.per_round for t in one_round]


def one_message() -> Any:
    """A contact-form reply, built per call as ``send_mail()`` builds it."""
    from django.core.mail import EmailMultiAlternatives

    return EmailMultiAlternatives(
        subject="We received your message",
        body="Thank you for writing to us. We will answer within two days.\n",
        from_email=f"Contoso <{MAIN}>",
        to=["customer@example.org"],
    )


def sender(make_backend: Callable[[], Any], **overrides: Any) -> Callable[[], int]:
    """``send_mail()``'s work: a new backend, one message, one ``send_messages()``."""

    def send() -> int:
        with live_oauth_mail(**overrides):
            return int(make_backend().send_messages([one_message()]))

    return send


@contextlib.contextmanager
def live_oauth_mail(**overrides: Any) -> Iterator[None]:
    if not overrides:
        yield
        return
    from django.conf import settings
    from django.test import override_settings

    with override_settings(LIVE_OAUTH_MAIL={**settings.LIVE_OAUTH_MAIL, **overrides}):
        yield


def timed_call(env: Env, row: Row) -> float:
    """One call's wall time; the stand-ins' counters are read outside it."""
    sessions, auths = env.smtp.sessions, len(env.smtp.auth_attempts)
    tokens, received = len(env.platform.token_requests), len(env.smtp.messages)
    started = time.perf_counter()
    sent = row.send()
    elapsed = time.perf_counter() - started
    if sent != 1 or len(env.smtp.messages) != received + 1:
        raise SystemExit(f"a call sent {sent}, the server got something else")
    row.sessions += env.smtp.sessions - sessions
    row.auths += len(env.smtp.auth_attempts) - auths
    row.token_requests += len(env.platform.token_requests) - tokens
    return elapsed


def interleaved(env: Env, rows: dict[str, Row], calls: int, rounds: int) -> None:
    """Rounds of M calls per contender, the order rotating from round to round."""
    names = list(rows)
    for r in range(rounds):
        shift = r % len(names)
        for name in names[shift:] + names[:shift]:
            gc.collect()
            rows[name].per_round.append(
                [timed_call(env, rows[name]) for _ in range(calls)]
            )


def measured_rtt(host: str, port: int, probes: int = 10) -> float:
    """The round trip through the proxy, as seen by an SMTP client (NOOP)."""
    with smtplib.SMTP(host, port, timeout=10) as client:
        client.ehlo()
        times = []
        for _ in range(probes):
            started = time.perf_counter()
            client.noop()
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def session_reuse_setting() -> str:
    from django.conf import settings

    from django_live_oauth_mail import conf

    default = getattr(conf, "DEFAULTS", {}).get("SESSION_REUSE", "absent")
    configured = settings.LIVE_OAUTH_MAIL.get("SESSION_REUSE", "unset")
    return f"SESSION_REUSE: default {default}, configured here {configured}"


def report(rows: dict[str, Row], rtt: float, baseline: str) -> dict[str, float]:
    """Print the table and the ratios to ``baseline``; return those ratios."""
    print(
        f"\n  {'backend':<44} {'median ms':>9} {'p10':>7} {'p90':>7} {'RTTs':>5}"
        f"  per call: {'sessions':>8} {'AUTHs':>5} {'tokens':>6}"
    )
    for name, row in rows.items():
        calls = row.calls
        deciles = statistics.quantiles(calls, n=10)
        median = statistics.median(calls)
        print(
            f"  {name:<44} {median * 1e3:9.1f} {deciles[0] * 1e3:7.1f}"
            f" {deciles[-1] * 1e3:7.1f} {median / rtt:5.1f}            "
            f"{row.sessions / len(calls):8.2f} {row.auths / len(calls):5.2f}"
            f" {row.token_requests / len(calls):6.2f}"
        )
    b = [statistics.median(r) for r in rows[baseline].per_round]
    medians: dict[str, float] = {}
    for name, row in rows.items():
        if name == baseline:
            continue
        x = [statistics.median(r) for r in row.per_round]
        ratios = [p / q for p, q in zip(x, b, strict=True)]
        ratio, (low, high) = statistics.median(ratios), bootstrap_median(ratios)
        medians[name] = ratio
        print(
            f"  ratio {name[:3]}/{baseline[:3]}: {ratio:.3f}, median of "
            f"{len(ratios)} per-round ratios (95% CI {low:.3f}-{high:.3f})"
        )
    return medians


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.per_call", description=__doc__.split("\n")[0]
    )
    parser.add_argument(
        "--rtt-ms", type=float, default=30, help="round-trip time (default 30)"
    )
    parser.add_argument(
        "--calls", type=int, default=10, help="M calls per round (default 10)"
    )
    parser.add_argument("--rounds", type=int, default=10, help="(default 10)")
    parser.add_argument(
        "--warmup", type=int, default=3, help="untimed calls first (default 3)"
    )
    parser.add_argument(
        "--no-reuse-row",
        action="store_true",
        help="leave out (c), our backend with SESSION_REUSE=False",
    )
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 4 calls, 3 rounds"
    )
    args = parser.parse_args(argv)
    args.db = "file"  # for send_batch's configure_django()
    if args.quick:
        args.calls, args.rounds, args.warmup = 4, 3, 2

    started = time.perf_counter()
    tmp = tempfile.mkdtemp(prefix="live-oauth-mail-bench-")
    env = start_env(0)
    proxy = LatencyProxy((env.smtp.host, env.smtp.port), args.rtt_ms / 2000).start()
    try:
        # Both backends are configured to reach the server through the proxy;
        # the counters are read on the server itself.
        at_proxy = SimpleNamespace(
            host=proxy.host, port=proxy.port, ca_bundle=env.smtp.ca_bundle
        )
        via_proxy = dataclasses.replace(env, smtp=at_proxy)
        configure_django(args, f"{tmp}/bench.sqlite3", via_proxy)
        env = dataclasses.replace(via_proxy, smtp=env.smtp)
        warnings.simplefilter("ignore", ResourceWarning)
        owner = link_mailboxes(env)
        from django_live_oauth_mail.acting import set_acting

        set_acting(lambda: owner)
        rtt = measured_rtt(proxy.host, proxy.port)
        print("django-live-oauth-mail per-call benchmark")
        for line in environment_lines(args):
            print("  " + line)
        print(
            f"  link: proxy with {args.rtt_ms / 2:g} ms each way; measured SMTP "
            f"NOOP round trip {rtt * 1e3:.1f} ms\n  {session_reuse_setting()}"
        )
        rows = {A: Row(sender(env.ours)), B: Row(sender(env.baseline))}
        if not args.no_reuse_row:
            rows[C] = Row(sender(env.ours, SESSION_REUSE=False))
        for row in rows.values():  # a warm process: imports, msal, TLS, DB
            for _ in range(args.warmup):
                row.send()
        interleaved(env, rows, args.calls, args.rounds)
        print(
            f"\nOne message per call, {args.calls} sequential calls per round, "
            f"{args.rounds} rounds, a new backend per call (times per call)"
        )
        ratio = report(rows, rtt, B)[A]
        verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
        floor = WARM_ROUND_TRIPS * rtt / statistics.median(rows[B].calls)
        print(
            f"\ntarget (a)/(b) <= {TARGET_RATIO}: {verdict} ({ratio:.3f}); floor "
            f"here {floor:.3f} ({WARM_ROUND_TRIPS} round trips / (b)'s median), "
            f"the issue's estimate {ISSUE_FLOOR:.2f}"
        )
        per_call = rows[A].sessions / len(rows[A].calls)
        print(
            "our backend opened an SMTP session per call: no session reuse"
            if per_call >= 0.9
            else f"our backend reused warm sessions: {per_call:.2f} sessions per call"
        )
        print(
            f"total run time {time.perf_counter() - started:.0f} s, "
            f"load average at end: {load_average()}"
        )
        return 0
    finally:
        proxy.stop()
        env.smtp.stop()
        env.platform.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
