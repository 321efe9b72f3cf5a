"""The arguments of ``manage.py live_oauth_mail``, apart from what they do.

Django lists no command for a module whose name starts with an underscore.
"""

from __future__ import annotations

import argparse
import math
from argparse import ArgumentParser

from ...models import OutboundMessage


def add_arguments(parser: ArgumentParser) -> None:
    """Every subcommand and option, each with its one-line help (a test checks)."""
    commands = parser.add_subparsers(dest="subcommand", required=True)
    commands.add_parser(
        "status",
        help="Show every linked mailbox; exit 1 if any needs reconnecting.",
    )
    refresh = commands.add_parser(
        "refresh",
        help="Refresh the grants of active mailboxes idle for N days, so they "
        "do not expire (Microsoft drops refresh tokens unused for 90 days).",
    )
    refresh.add_argument(
        "--idle-days",
        type=int,
        default=30,
        metavar="N",
        help="Refresh the mailboxes not refreshed for N days or more (default: 30).",
    )
    connect = commands.add_parser(
        "connect", help="Link a mailbox from a terminal with a device code."
    )
    connect.add_argument(
        "--device-code",
        action="store_true",
        required=True,
        help="Sign in on another device with a code (the only way from a terminal).",
    )
    connect.add_argument(
        "--user",
        required=True,
        metavar="USERNAME",
        help="The Django user who will own the linked mailbox.",
    )
    test = commands.add_parser("test", help="Send one message, reporting every step.")
    test.add_argument("mailbox", help="The linked mailbox to send from.")
    test.add_argument(
        "--to", required=True, metavar="ADDRESS", help="Where to send the message."
    )
    add_app = commands.add_parser(
        "add-app",
        help="Register a mailbox the app sends from with its own token "
        "(client credentials), such as noreply@: no person links it.",
    )
    add_app.add_argument("mailbox", help="The mailbox's address, e.g. noreply@...")
    add_app.add_argument(
        "--tenant",
        required=True,
        metavar="TENANT_ID",
        help="The directory (tenant) ID the mailbox and the app's consent are in.",
    )
    transport = commands.add_parser(
        "transport",
        help="Choose how a mailbox sends: smtp, graph, or setting (follow "
        "LIVE_OAUTH_MAIL['TRANSPORT'] again, e.g. once SMTP AUTH is back on).",
    )
    transport.add_argument("mailbox", help="The linked mailbox's address.")
    transport.add_argument(
        "choice",
        choices=["smtp", "graph", "setting"],
        help="smtp, graph, or setting (follow the TRANSPORT setting).",
    )
    commands.add_parser(
        "rotate-keys",
        help="Re-encrypt every token cache and queued message with the newest "
        "key; exit 1 if any cannot be decrypted.",
    )
    queue = commands.add_parser(
        "outbox", help="Inspect and maintain the messages QueuedEmailBackend sends."
    )
    actions = queue.add_subparsers(dest="action", required=True)
    actions.add_parser(
        "status",
        help="Count the messages in each status, after marking those whose "
        "worker stopped mid-send as unknown.",
    )
    retry = actions.add_parser(
        "retry",
        help="Queue messages again: the given PKs, or else every failed one "
        "(or every one in each --status).",
    )
    retry.add_argument(
        "pks", nargs="*", type=int, metavar="PK", help="The messages to retry."
    )
    retry.add_argument(
        "--status",
        action="append",
        dest="statuses",
        choices=OutboundMessage.RETRIABLE,
        help="Retry the messages in this status (repeatable; default: failed).",
    )
    retry.add_argument(
        "--mailbox", metavar="ADDRESS", help="Only messages from this mailbox."
    )
    resume = actions.add_parser(
        "resume",
        help="Schedule again the waiting messages overdue by --grace seconds "
        "(after the task engine lost or refused their tasks).",
    )
    resume.add_argument(
        "--grace",
        type=_days,
        default=300.0,
        metavar="SECONDS",
        help="How long past its time a message must be (default: 300).",
    )
    purge = actions.add_parser(
        "purge", help="Delete the sent messages sent more than N days ago."
    )
    purge.add_argument(
        "--days",
        type=_days,
        required=True,
        metavar="N",
        help="Delete sent messages older than N days (fractions allowed).",
    )


def _days(value: str) -> float:
    """A number >= 0 (of days, or of seconds for --grace)."""
    try:
        days = float(value)
    except ValueError:
        days = -1.0
    if not (math.isfinite(days) and days >= 0):
        raise argparse.ArgumentTypeError(f"expected a number >= 0, not {value!r}")
    return days
