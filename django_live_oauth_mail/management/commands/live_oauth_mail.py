"""``manage.py live_oauth_mail``: status, refresh, connect, add-app, test,
transport, rotate-keys, and outbox (status, retry, resume, purge)."""

from __future__ import annotations

import datetime
from argparse import ArgumentParser
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db.models import Q
from django.utils import timezone

from ... import key_rotation
from ...diagnostics import Step, send_test_message
from ...exceptions import ConfigurationError, LiveOAuthMailError
from ...identity import authority, linking
from ...identity.accounts import add_app_mailbox, choose_transport, link_mailbox
from ...identity.tokens import get_access_token
from ...models import MailAccount, OutboundMessage
from ...queue import outbox, service
from ._arguments import add_arguments


class Command(BaseCommand):
    help = "Inspect and maintain linked Microsoft mailboxes."

    def add_arguments(self, parser: ArgumentParser) -> None:
        add_arguments(parser)

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        handler = getattr(self, "handle_" + subcommand.replace("-", "_"))
        handler(**options)

    # -- status ----------------------------------------------------------------------

    def handle_status(self, **options: Any) -> None:
        accounts = list(MailAccount.objects.select_related("user").order_by("email"))
        if not accounts:
            self.stdout.write("No mailbox is linked.")
            return
        header = (
            "USER",
            "MAILBOX",
            "KIND",
            "STATUS",
            "SHARED",
            "TRANSPORT",
            "LAST USED",
            "LAST REFRESHED",
            "TOKEN EXPIRES",
            "LAST ERROR",
        )
        rows = [
            (
                account.user.get_username() if account.user else "(app)",
                account.email,
                account.get_kind_display(),
                account.status,
                "shared" if account.shared else "-",
                account.transport or f"{account.protocol} (setting)",
                _when(account.last_used_at),
                _when(account.last_refreshed_at),
                _when(account.token_expires_at),
                _short(account.last_error),
            )
            for account in accounts
        ]
        widths = [
            max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))
        ]
        for number, row in enumerate([header, *rows]):
            line = "  ".join(
                str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)
            )
            style = (
                self.style.MIGRATE_HEADING
                if number == 0
                else (self.style.ERROR if row[3] != MailAccount.Status.ACTIVE else str)
            )
            self.stdout.write(style(line.rstrip()))
        broken = [a.email for a in accounts if not a.is_active]
        if broken:
            raise CommandError(
                f"{len(broken)} mailbox(es) must be linked again: {', '.join(broken)}.",
                returncode=1,
            )

    # -- add-app ---------------------------------------------------------------------

    def handle_add_app(self, *, mailbox: str, tenant: str, **options: Any) -> None:
        try:
            account, created = add_app_mailbox(mailbox, tenant)
        except ValueError as error:
            raise CommandError(str(error)) from None
        done = "Registered" if created else "Updated"
        self.stdout.write(
            self.style.SUCCESS(
                f"{done} {account.email} as an app mailbox in tenant "
                f"{account.tenant_id}. Any code on the site may send from it."
            )
        )
        self.stdout.write(
            "The tenant must grant the app SMTP.SendAsApp (for SMTP) or Mail.Send "
            "(for Graph, TRANSPORT 'graph') with admin consent "
            f"({authority.admin_consent_url(account.tenant_id)}), and Exchange "
            "access to the mailbox; see the README. Check it with "
            f"`live_oauth_mail test {account.email} --to you@example.com`."
        )

    # -- transport -------------------------------------------------------------------

    def handle_transport(self, *, mailbox: str, choice: str, **options: Any) -> None:
        if not choose_transport(mailbox, "" if choice == "setting" else choice):
            raise CommandError(f"No linked mailbox is {mailbox}.")
        how = "the TRANSPORT setting" if choice == "setting" else choice
        self.stdout.write(self.style.SUCCESS(f"{mailbox} now sends through {how}."))

    # -- refresh ---------------------------------------------------------------------

    def handle_refresh(self, idle_days: int, **options: Any) -> None:
        cutoff = timezone.now() - datetime.timedelta(days=idle_days)
        due = list(
            MailAccount.objects.active()
            .exclude(kind=MailAccount.Kind.APP)  # no refresh token to keep alive
            .filter(
                Q(last_refreshed_at__lt=cutoff)
                | Q(last_refreshed_at__isnull=True, created_at__lt=cutoff)
            )
            .order_by("email")
        )
        interactive = self.stdout.isatty()
        failures: list[str] = []
        for number, account in enumerate(due, start=1):
            prefix = f"[{number}/{len(due)}] {account.email}"
            if interactive:
                self.stdout.write(f"{prefix} ...", ending="\r")
            try:
                get_access_token(account, force_refresh=True)
            # ConfigurationError: this row's cache cannot be decrypted; the
            # other mailboxes are still worth refreshing.
            except (LiveOAuthMailError, ConfigurationError) as error:
                failures.append(account.email)
                self.stdout.write(self.style.ERROR(f"{prefix}: {error}"))
            else:
                self.stdout.write(f"{prefix}: refreshed")
        self.stdout.write(
            f"Refreshed {len(due) - len(failures)} of {len(due)} mailbox(es) idle for "
            f"{idle_days}+ days; {len(failures)} failed."
        )
        if failures:
            raise CommandError(
                f"Could not refresh: {', '.join(failures)}.", returncode=1
            )

    # -- connect ---------------------------------------------------------------------

    def handle_connect(self, user: str, **options: Any) -> None:
        User = get_user_model()
        try:
            owner = User.objects.get(**{User.USERNAME_FIELD: user})
        except User.DoesNotExist:
            raise CommandError(f"No user named {user!r}.") from None
        try:
            flow = linking.start_device_link()
            self.stdout.write(self.style.MIGRATE_HEADING(flow["message"]))
            self.stdout.write(
                "Waiting for the sign-in to finish (Ctrl-C to give up)..."
            )
            identity = linking.finish_device_link(flow)
            account, created = link_mailbox(owner, identity)
        except LiveOAuthMailError as error:
            raise CommandError(str(error)) from None
        verb = "Linked" if created else "Linked again"
        self.stdout.write(self.style.SUCCESS(f"{verb} {account.email} for {user}."))

    # -- test ------------------------------------------------------------------------

    def handle_test(self, mailbox: str, to: str, **options: Any) -> None:
        account = (
            MailAccount.objects.for_address(mailbox)
            .order_by("-shared", "created_at", "pk")  # as routing picks
            .first()
        )
        if account is None:
            raise CommandError(
                f"No linked mailbox {mailbox!r}. See `live_oauth_mail status`."
            )

        def report(step: Step) -> None:
            mark = self.style.SUCCESS("ok  ") if step.ok else self.style.ERROR("FAIL")
            self.stdout.write(f"{mark} {step.name:<8} {step.detail}")

        steps = send_test_message(account, to, report=report)
        if not steps[-1].ok:
            raise CommandError(
                f"Sending through {account.email} failed at {steps[-1].name}."
            )

    # -- rotate-keys -----------------------------------------------------------------

    def handle_rotate_keys(self, **options: Any) -> None:
        caches = key_rotation.rotate_token_caches()
        self._report_unreadable(caches.unreadable)
        self.stdout.write(
            f"Re-encrypted {caches.count} token cache(s) with the newest key."
        )
        messages = key_rotation.rotate_queued_messages()
        self._report_unreadable(messages.unreadable)
        self.stdout.write(
            f"Re-encrypted {messages.count} queued message(s) with the newest key."
        )
        problem = key_rotation.left_unread(caches.unreadable, messages.unreadable)
        if problem:
            raise CommandError(problem, returncode=1)

    def _report_unreadable(
        self, rows: list[MailAccount] | list[OutboundMessage]
    ) -> None:
        for row in rows:
            self.stdout.write(self.style.ERROR(key_rotation.unreadable_row(row)))

    # -- outbox ----------------------------------------------------------------------

    def handle_outbox(self, *, action: str, **options: Any) -> None:
        handler = getattr(self, "outbox_" + action)
        handler(**options)

    def outbox_status(self, **options: Any) -> None:
        stuck = outbox.mark_stuck()
        if stuck:
            self.stdout.write(
                self.style.WARNING(
                    f"{stuck} message(s) whose worker stopped mid-send are now "
                    "unknown: Microsoft may or may not have accepted them."
                )
            )
        counts = outbox.counts()
        width = max(len(status) for status in counts)
        self.stdout.write(self.style.MIGRATE_HEADING(f"{'STATUS':<{width}}  MESSAGES"))
        for status, count in counts.items():
            line = f"{status:<{width}}  {count}"
            needs_a_person = status in (
                OutboundMessage.Status.FAILED,
                OutboundMessage.Status.UNKNOWN,
            )
            self.stdout.write(
                self.style.ERROR(line) if count and needs_a_person else line
            )

    def outbox_retry(
        self,
        *,
        pks: list[int],
        statuses: list[str] | None,
        mailbox: str | None,
        **options: Any,
    ) -> None:
        _require_engine()
        chosen = OutboundMessage.objects.chosen_for_retry(pks, statuses or (), mailbox)
        found = list(chosen.order_by("pk").values_list("pk", flat=True))
        queued = service.retry(found)
        self.stdout.write(self.style.SUCCESS(f"Queued {queued} message(s) again."))
        skipped = sorted(set(pks) - set(found))
        if skipped:
            self.stdout.write(
                self.style.WARNING(
                    f"Not retried: {', '.join(map(str, skipped))} (no such message, "
                    "or not in a chosen status or mailbox)."
                )
            )

    def outbox_resume(self, *, grace: float, **options: Any) -> None:
        _require_engine()
        resumed = service.resume(grace)
        self.stdout.write(f"Scheduled {resumed} waiting message(s) again.")

    def outbox_purge(self, *, days: float, **options: Any) -> None:
        try:
            deleted = outbox.purge_sent(days)
        except OverflowError:  # the cutoff would fall before year 1
            raise CommandError(f"--days {days:g} reaches too far back.") from None
        self.stdout.write(
            f"Deleted {deleted} sent message(s) sent more than {days:g} day(s) ago."
        )


def _require_engine() -> None:
    """Stop before scheduling messages no task engine could run, saying why."""
    try:
        service.require_engine()
    except ConfigurationError as error:
        raise CommandError(str(error)) from None


def _when(value: datetime.datetime | None) -> str:
    return value.strftime("%Y-%m-%d %H:%M") if value else "-"


def _short(text: str, limit: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
