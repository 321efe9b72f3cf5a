"""``manage.py demo``: everything needed to try the app, in one process.

1. migrates the database and makes sure the demo user exists, as staff who
   may view and change linked mailboxes in the admin;
2. without ``LIVE_OAUTH_MAIL_CLIENT_ID``, starts the local stand-ins for
   Microsoft on DEMO_IDENTITY_PORT / DEMO_SMTP_PORT / DEMO_GRAPH_PORT (8001 /
   8025 / 8003), and links
   the site's shared mailbox (DEMO_SITE_MAILBOX) through them;
3. starts a task worker (``db_worker``) for queued mail, and serves the site
   with ``runserver`` (no autoreloader) until Ctrl-C or SIGTERM, then stops
   the worker and the stand-ins.

Running it again reuses the database, the demo user and linked mailboxes.
"""

from __future__ import annotations

import signal
import socket
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from demo import standins, worker
from django_live_oauth_mail.exceptions import LiveOAuthMailError
from django_live_oauth_mail.identity.accounts import link_mailbox
from django_live_oauth_mail.models import MailAccount

#: What the demo user may do in the admin: view linked mailboxes and mark them
#: shared (change), and manage their Send As addresses. Not a superuser, so
#: the admin shows only what the demo is about.
ADMIN_PERMISSIONS = (
    "view_outboundmessage",
    "change_outboundmessage",
    "view_outboundmessage_body",
    "view_mailaccount",
    "change_mailaccount",
    "share_mailaccount",
    "view_sendasaddress",
    "add_sendasaddress",
    "change_sendasaddress",
    "delete_sendasaddress",
)


class Command(BaseCommand):
    help = "Migrate, create the demo user, start the stand-ins and serve the site."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--addr", default="127.0.0.1", help="Address to serve on (127.0.0.1)."
        )
        parser.add_argument(
            "--port", type=int, default=8000, help="Port to serve on (8000)."
        )
        parser.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Accepted for symmetry with other commands; demo never prompts.",
        )

    def handle(self, *args: Any, addr: str, port: int, **options: Any) -> None:
        _ensure_free(addr, port, "the site", "--port")
        call_command("migrate", interactive=False, verbosity=0)
        user_note = self._ensure_demo_user()

        # Ctrl-C and SIGTERM both stop cleanly: runserver turns the
        # KeyboardInterrupt into SystemExit, and `finally` stops the stand-ins.
        # (SIGINT is set too, as a shell's background jobs inherit it ignored.)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        running = None
        if settings.USE_STANDINS:
            running = self._start_standins()
        site = _site_url(addr, port, use_standins=running is not None)
        tasks = None
        try:
            tasks = worker.start(running.ca_bundle if running else None)
            site_mailbox_note = ""
            if running is not None:
                site_mailbox_note = self._link_site_mailbox(site)
            self._print_intro(site, user_note, site_mailbox_note, running)
            call_command(
                "runserver",
                f"{addr}:{port}",
                use_reloader=False,
                skip_checks=False,
                shutdown_message="Stopping the demo…\n",
            )
        finally:
            worker.stop(tasks)
            standins.stop()

    def _ensure_demo_user(self) -> str:
        username, password = settings.DEMO_USERNAME, settings.DEMO_PASSWORD
        user_model = get_user_model()
        user, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username}
        )
        note = "existing"
        if created or not user.check_password(password):
            user.set_password(password)
            note = "created" if created else "password reset"
        user.is_staff = True
        user.save()
        user.user_permissions.add(
            *Permission.objects.filter(
                content_type__app_label="live_oauth_mail",
                codename__in=ADMIN_PERMISSIONS,
            )
        )
        return note

    def _link_site_mailbox(self, site: str) -> str:
        """Link DEMO_SITE_MAILBOX through the stand-ins; shared when first linked.

        It is linked again on every start: the stand-ins keep their tokens in
        memory, so the previous run's are worthless. An administrator's later
        choice to un-share it is kept.
        """
        user_model = get_user_model()
        owner, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: settings.DEMO_SITE_MAILBOX_OWNER}
        )
        if created:
            owner.set_unusable_password()  # it only owns the site's mailbox
            owner.save()
        redirect_uri = site + reverse("live_oauth_mail:callback")
        try:
            identity = standins.sign_in(settings.DEMO_SITE_MAILBOX, redirect_uri)
        except LiveOAuthMailError as error:
            raise CommandError(
                f"Could not link {settings.DEMO_SITE_MAILBOX} through the "
                f"stand-ins: {error}"
            ) from error
        account, first_link = link_mailbox(owner, identity)
        if first_link:
            account.shared = True
            account.save(update_fields=["shared"])
        if account.shared:
            return "shared"
        return "NOT shared: tick Shared on it in the admin"

    def _start_standins(self) -> standins.StandIns:
        for port, what, variable in (
            (
                settings.DEMO_IDENTITY_PORT,
                "the identity stand-in",
                "DEMO_IDENTITY_PORT",
            ),
            (settings.DEMO_SMTP_PORT, "the SMTP stand-in", "DEMO_SMTP_PORT"),
            (settings.DEMO_GRAPH_PORT, "the Graph stand-in", "DEMO_GRAPH_PORT"),
            (settings.DEMO_PAGES_PORT, "the sign-in pages", "DEMO_PAGES_PORT"),
        ):
            _ensure_free(settings.DEMO_STANDIN_HOST, port, what, variable)
        try:
            return standins.start()
        except ImportError as error:
            raise CommandError(
                f"{error}. The stand-ins need the testing extra: "
                "pip install -e '.[testing,example]'"
            ) from error

    def _print_intro(
        self,
        site: str,
        user_note: str,
        site_mailbox_note: str,
        running: standins.StandIns | None,
    ) -> None:
        db = settings.DATABASES["default"]
        out, style = self.stdout.write, self.style
        out(style.MIGRATE_HEADING("\ndjango-live-oauth-mail example project"))
        out(f"  Site:       {site}/")
        out(f"  Database:   {db['NAME']}")
        out(
            f"  Sign in as: {settings.DEMO_USERNAME} / {settings.DEMO_PASSWORD}"
            f"  ({user_note} user; staff, also for the admin)"
        )
        out(f"  Admin:      {site}/admin/  (linked mailboxes, Shared, Send As)")
        if running is not None:
            out(
                style.WARNING(
                    "  Microsoft:  LOCAL STAND-INS (no mail leaves this machine)"
                )
            )
            out(
                f"    sign-in   {running.identity.pages_url} (token endpoint: "
                f"{running.identity.authority})"
            )
            smtp = f"{running.smtp.host}:{running.smtp.port}"
            out(f"    SMTP      {smtp} (STARTTLS, XOAUTH2)")
            out(
                f"    Graph     {running.graph.endpoint} (sendMail; TRANSPORT "
                "'auto' uses it once SMTP AUTH is off, see the Dev inbox)"
            )
            out(f"    TLS CA    {running.ca_bundle}")
            owner = settings.DEMO_SITE_MAILBOX_OWNER
            out(
                f"    Shared    {settings.DEMO_SITE_MAILBOX} (the site's mailbox, "
                f"linked for user {owner!r}; {site_mailbox_note})"
            )
            out("    Real Microsoft: see example_project/README.md")
            pick = "pick Ada (personal) or Grace (work)"
        else:
            config = settings.LIVE_OAUTH_MAIL
            out(style.WARNING("  Microsoft:  REAL (mail is really sent)"))
            out(f"    sign-in   {config['AUTHORITY']}")
            out("    SMTP      smtp.office365.com:587")
            out(f"    Redirect URI to register: {site}/mail/callback/")
            shared = MailAccount.objects.active().filter(shared=True)
            out(
                f"    Shared    {', '.join(shared.values_list('email', flat=True))}"
                if shared.exists()
                else "    Shared    none yet: link the site's mailbox, then tick "
                "Shared on it in the admin"
            )
            pick = "sign in with your Microsoft account"
        out(style.MIGRATE_HEADING("\nTry it:"))
        out(f"  1. Link a mailbox:  {site}/mail/   ({pick})")
        out(f"  2. Send a message:  {site}/compose/")
        if running is not None:
            out(f"  3. See it arrive:   {site}/dev/inbox/")
        else:
            out("  3. See it arrive:   in the recipient's real mailbox")
        out(
            f"  4. Contact form:    {site}/contact/   (queued, sent by the worker "
            "from a shared mailbox; the Outbox is in the admin)"
        )
        out("\nPress Ctrl-C to stop.\n")


def _site_url(addr: str, port: int, *, use_standins: bool) -> str:
    host = "127.0.0.1" if addr in {"0.0.0.0", "::"} else addr  # noqa: S104
    if not use_standins and host == "127.0.0.1":
        # Azure accepts http:// redirect URIs for localhost (its portal
        # refuses 127.0.0.1 for web apps), and the redirect URI follows
        # the host you browse to.
        host = "localhost"
    return f"http://{host}:{port}"


def _ensure_free(host: str, port: int, what: str, option: str) -> None:
    """Fail early and clearly if ``port`` is taken (before starting anything)."""
    try:
        with socket.create_server((host, port)):
            pass
    except OSError as error:
        raise CommandError(
            f"Cannot use {host}:{port} for {what}: {error.strerror or error}. "
            f"Choose another port with {option}."
        ) from None
