"""``manage.py demo``: everything needed to try the app, in one process.

1. migrates the database and makes sure the demo user exists;
2. without ``LIVE_OAUTH_MAIL_CLIENT_ID``, starts the local stand-ins for
   Microsoft on DEMO_IDENTITY_PORT / DEMO_SMTP_PORT (8001 / 8025);
3. serves the site with ``runserver`` (no autoreloader) until Ctrl-C or
   SIGTERM, then stops the stand-ins.

Running it again reuses the database, the demo user and linked mailboxes.
"""

from __future__ import annotations

import signal
import socket
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from demo import standins


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
        try:
            self._print_intro(addr, port, user_note, running)
            call_command(
                "runserver",
                f"{addr}:{port}",
                use_reloader=False,
                skip_checks=False,
                shutdown_message="Stopping the demo…\n",
            )
        finally:
            standins.stop()

    def _ensure_demo_user(self) -> str:
        username, password = settings.DEMO_USERNAME, settings.DEMO_PASSWORD
        user_model = get_user_model()
        user, created = user_model._default_manager.get_or_create(
            **{user_model.USERNAME_FIELD: username}
        )
        if created or not user.check_password(password):
            user.set_password(password)
            user.save()
            return "created" if created else "password reset"
        return "existing"

    def _start_standins(self) -> standins.StandIns:
        for port, what, variable in (
            (
                settings.DEMO_IDENTITY_PORT,
                "the identity stand-in",
                "DEMO_IDENTITY_PORT",
            ),
            (settings.DEMO_SMTP_PORT, "the SMTP stand-in", "DEMO_SMTP_PORT"),
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
        self, addr: str, port: int, user_note: str, running: standins.StandIns | None
    ) -> None:
        host = "127.0.0.1" if addr in {"0.0.0.0", "::"} else addr  # noqa: S104
        if running is None and host == "127.0.0.1":
            # Azure accepts http:// redirect URIs for localhost (its portal
            # refuses 127.0.0.1 for web apps), and the redirect URI follows
            # the host you browse to.
            host = "localhost"
        site = f"http://{host}:{port}"
        db = settings.DATABASES["default"]
        out, style = self.stdout.write, self.style
        out(style.MIGRATE_HEADING("\ndjango-live-oauth-mail example project"))
        out(f"  Site:       {site}/")
        out(f"  Database:   {db['NAME']}")
        out(
            f"  Sign in as: {settings.DEMO_USERNAME} / {settings.DEMO_PASSWORD}"
            f"  ({user_note} user)"
        )
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
            out(f"    TLS CA    {running.ca_bundle}")
            out("    Real Microsoft: see example_project/README.md")
            pick = "pick Ada (personal) or Grace (work)"
        else:
            config = settings.LIVE_OAUTH_MAIL
            out(style.WARNING("  Microsoft:  REAL (mail is really sent)"))
            out(f"    sign-in   {config['AUTHORITY']}")
            out("    SMTP      smtp.office365.com:587")
            out(f"    Redirect URI to register: {site}/mail/callback/")
            pick = "sign in with your Microsoft account"
        out(style.MIGRATE_HEADING("\nTry it:"))
        out(f"  1. Link a mailbox:  {site}/mail/   ({pick})")
        out(f"  2. Send a message:  {site}/compose/")
        if running is not None:
            out(f"  3. See it arrive:   {site}/dev/inbox/")
        else:
            out("  3. See it arrive:   in the recipient's real mailbox")
        out("\nPress Ctrl-C to stop.\n")


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
