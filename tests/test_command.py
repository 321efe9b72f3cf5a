"""manage.py live_oauth_mail: status, refresh, connect, test, rotate-keys."""

from __future__ import annotations

import argparse
import datetime
import io
import threading
import time
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.core.management import CommandError, call_command, load_command_class
from django.utils import timezone

from django_live_oauth_mail.models import MailAccount
from django_live_oauth_mail.testing import FakeGraphAPI, XOAuth2SMTPServer

from .standins import IdentityPlatform

pytestmark = pytest.mark.django_db(transaction=True)

LOST_KEY, OLD_KEY, NEW_KEY = (Fernet.generate_key().decode() for _ in range(3))


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("live_oauth_mail", *args, stdout=out, stderr=out)
    return out.getvalue()


def test_status_lists_every_account(
    alice_account: MailAccount, bob_account: MailAccount
) -> None:
    output = run("status")
    assert "MAILBOX" in output
    assert "alice@outlook.com" in output and "Personal (Outlook.com)" in output
    assert "bob@contoso.com" in output and "Work or school" in output


def test_status_shows_which_mailboxes_are_shared(
    alice_account: MailAccount, bob_account: MailAccount
) -> None:
    MailAccount.objects.filter(pk=bob_account.pk).update(shared=True)
    lines = run("status").splitlines()
    [alice] = [line for line in lines if "alice@outlook.com" in line]
    [bob] = [line for line in lines if "bob@contoso.com" in line]
    assert "SHARED" in lines[0]
    assert " shared " in bob and " shared " not in alice


def test_status_fails_when_a_mailbox_needs_reconnecting(
    alice_account: MailAccount, bob_account: MailAccount
) -> None:
    MailAccount.objects.filter(pk=bob_account.pk).update(
        status=MailAccount.Status.RECONNECT_REQUIRED, last_error="The sign-in expired."
    )
    with pytest.raises(CommandError, match=r"bob@contoso\.com") as caught:
        run("status")
    assert caught.value.returncode == 1


def test_refresh_touches_only_idle_accounts(
    alice_account: MailAccount,
    bob_account: MailAccount,
    identity_platform: IdentityPlatform,
) -> None:
    long_ago = timezone.now() - datetime.timedelta(days=45)
    MailAccount.objects.filter(pk=alice_account.pk).update(
        created_at=long_ago, last_refreshed_at=long_ago
    )
    identity_platform.reset()

    output = run("refresh", "--idle-days", "30")

    assert [r.email for r in identity_platform.token_requests] == ["alice@outlook.com"]
    assert "Refreshed 1 of 1" in output
    assert MailAccount.objects.get(pk=alice_account.pk).last_refreshed_at > long_ago


def test_refresh_fails_and_says_which(
    alice_account: MailAccount, identity_platform: IdentityPlatform
) -> None:
    MailAccount.objects.filter(pk=alice_account.pk).update(
        created_at=timezone.now() - datetime.timedelta(days=40)
    )
    identity_platform.revoke("alice@outlook.com", error_code=700082)
    with pytest.raises(CommandError, match=r"alice@outlook\.com"):
        run("refresh")
    assert MailAccount.objects.get(pk=alice_account.pk).status == "reconnect_required"


def test_refresh_goes_on_past_a_mailbox_whose_tokens_cannot_be_decrypted(
    alice_account: MailAccount,
    bob_account: MailAccount,
    identity_platform: IdentityPlatform,
) -> None:
    MailAccount.objects.update(created_at=timezone.now() - datetime.timedelta(days=40))
    MailAccount.objects.filter(pk=alice_account.pk).update(
        encrypted_token_cache=Fernet(LOST_KEY).encrypt(b"{}").decode()
    )
    identity_platform.reset()
    out = io.StringIO()

    with pytest.raises(CommandError, match=r"alice@outlook\.com") as caught:
        call_command("live_oauth_mail", "refresh", stdout=out)

    assert caught.value.returncode == 1
    assert "alice@outlook.com: The stored tokens" in out.getvalue()
    assert "Refreshed 1 of 2" in out.getvalue()
    assert [r.email for r in identity_platform.token_requests] == ["bob@contoso.com"]


def test_connect_with_a_device_code(
    user: Any, identity_platform: IdentityPlatform, smtp_server: XOAuth2SMTPServer
) -> None:
    identity_platform.device_code_interval = 1
    outcome: dict[str, Any] = {}

    def command() -> None:
        try:
            outcome["output"] = run("connect", "--device-code", "--user", user.username)
        except BaseException as error:  # reported below
            outcome["error"] = error

    worker = threading.Thread(target=command)
    try:
        worker.start()
        deadline = time.monotonic() + 10
        while not any(p.endswith("/devicecode") for _, p in identity_platform.requests):
            assert time.monotonic() < deadline, "the command never asked for a code"
            time.sleep(0.05)
        identity_platform.approve_device_code("bob@contoso.com")
        worker.join(15)
    finally:
        identity_platform.device_code_interval = 5
    assert "error" not in outcome, outcome.get("error")
    assert "enter the code" in outcome["output"]
    assert "Linked bob@contoso.com" in outcome["output"]
    account = MailAccount.objects.get(user=user)
    assert (account.email, account.public_client) == ("bob@contoso.com", True)
    # A device-code link refreshes as a public client and sends like any other.
    from django.core.mail import send_mail

    from django_live_oauth_mail import sending_as

    identity_platform.expire_access_tokens("bob@contoso.com")
    with sending_as(user):
        assert send_mail("s", "b", "bob@contoso.com", ["r@example.org"]) == 1
    assert smtp_server.messages[0].authenticated_as == "bob@contoso.com"


def test_connect_unknown_user() -> None:
    with pytest.raises(CommandError, match="No user named"):
        run("connect", "--device-code", "--user", "ghost")


def test_test_subcommand_reports_each_step(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    output = run("test", "alice@outlook.com", "--to", "me@example.org")
    for step in ("token", "tcp", "starttls", "auth", "send"):
        assert f"ok   {step}" in output
    assert smtp_server.messages[0].rcpt_tos == ["me@example.org"]


def test_test_subcommand_shows_the_servers_reply_on_failure(
    alice_account: MailAccount, smtp_server: XOAuth2SMTPServer
) -> None:
    smtp_server.fail_next(
        stage="rcpt", reply="550 5.1.10 RESOLVER.ADR.RecipientNotFound"
    )
    out = io.StringIO()
    with pytest.raises(CommandError, match="failed at send"):
        call_command(
            "live_oauth_mail",
            "test",
            "alice@outlook.com",
            "--to",
            "x@y.org",
            stdout=out,
        )
    assert "550 5.1.10 RESOLVER.ADR.RecipientNotFound" in out.getvalue()
    assert smtp_server.messages == []


def decrypts_with_only(key: str, account: MailAccount) -> bool:
    stored = MailAccount.objects.get(pk=account.pk).encrypted_token_cache
    try:
        Fernet(key).decrypt(stored)
    except InvalidToken:
        return False
    return True


def test_rotate_keys_re_encrypts_every_row_it_can_and_names_the_others(
    link: Any, user: Any, live_settings: dict[str, Any]
) -> None:
    # alice's cache was written with a key nobody kept; it comes first.
    live_settings["ENCRYPTION_KEYS"] = [LOST_KEY]
    alice = link(user, "alice@outlook.com")
    live_settings["ENCRYPTION_KEYS"] = [OLD_KEY]
    bob, dave = link(user, "bob@contoso.com"), link(user, "dave@fabrikam.com")
    lost = MailAccount.objects.get(pk=alice.pk).encrypted_token_cache
    live_settings["ENCRYPTION_KEYS"] = [NEW_KEY, OLD_KEY]
    out = io.StringIO()

    with pytest.raises(CommandError) as caught:
        call_command("live_oauth_mail", "rotate-keys", stdout=out)

    assert caught.value.returncode == 1
    assert decrypts_with_only(NEW_KEY, bob) and decrypts_with_only(NEW_KEY, dave)
    assert MailAccount.objects.get(pk=alice.pk).encrypted_token_cache == lost
    output = out.getvalue()
    assert "alice@outlook.com: its token cache cannot be decrypted" in output
    assert "bob@contoso.com" not in output and "dave@fabrikam.com" not in output
    assert "Re-encrypted 2 token cache(s) with the newest key." in output
    message = str(caught.value)
    assert "alice@outlook.com" in message
    assert "ENCRYPTION_KEYS" in message and "SECRET_KEY_FALLBACKS" in message
    assert "linked again" in message
    # With the lost key back, the same command finishes the job.
    live_settings["ENCRYPTION_KEYS"] = [NEW_KEY, LOST_KEY]
    assert "Re-encrypted 1 token cache(s)" in run("rotate-keys")
    assert decrypts_with_only(NEW_KEY, alice)


def test_status_shows_each_mailboxs_transport(
    alice_account: MailAccount, bob_account: MailAccount
) -> None:
    MailAccount.objects.filter(pk=bob_account.pk).update(transport="graph")
    lines = run("status").splitlines()
    [alice] = [line for line in lines if "alice@outlook.com" in line]
    [bob] = [line for line in lines if "bob@contoso.com" in line]
    assert "TRANSPORT" in lines[0]
    assert " smtp (setting) " in alice
    assert " graph " in bob


def test_transport_sets_and_resets_a_mailboxs_choice(
    bob_account: MailAccount,
) -> None:
    assert "now sends through graph" in run("transport", "Bob@Contoso.com", "graph")
    assert MailAccount.objects.get(pk=bob_account.pk).transport == "graph"
    output = run("transport", "bob@contoso.com", "setting")
    assert "now sends through the TRANSPORT setting" in output
    assert MailAccount.objects.get(pk=bob_account.pk).transport == ""
    with pytest.raises(CommandError, match=r"No linked mailbox is nobody@x\.org"):
        run("transport", "nobody@x.org", "smtp")


def test_test_subcommand_tries_a_graph_mailbox_through_graph(
    live_settings: dict[str, Any],
    link: Any,
    user: Any,
    smtp_server: XOAuth2SMTPServer,
    graph_server: FakeGraphAPI,
) -> None:
    live_settings["TRANSPORT"] = "graph"
    link(user, "bob@contoso.com")

    output = run("test", "bob@contoso.com", "--to", "me@example.org")

    assert "ok   token" in output
    assert "ok   graph" in output and "Microsoft Graph accepted it" in output
    assert [m.rcpt_tos for m in graph_server.messages] == [["me@example.org"]]
    assert smtp_server.sessions == 0


def test_every_subcommand_and_option_has_a_help_line() -> None:
    command = load_command_class("django_live_oauth_mail", "live_oauth_mail")
    parser = command.create_parser("manage.py", "live_oauth_mail")
    missing: list[str] = []

    def walk(current: argparse.ArgumentParser, path: str) -> None:
        for action in current._actions:
            if isinstance(action, argparse._SubParsersAction):
                helps = {choice.dest: choice.help for choice in action._choices_actions}
                for name, subparser in action.choices.items():
                    if not helps.get(name):
                        missing.append(f"{path} {name}")
                    walk(subparser, f"{path} {name}")
            elif not action.help:
                missing.append(
                    f"{path} {'/'.join(action.option_strings) or action.dest}"
                )

    walk(parser, "live_oauth_mail")
    assert len(parser._subparsers._group_actions[0].choices) == 8  # type: ignore[union-attr]
    assert missing == []


def test_help_for_a_subcommand_describes_its_options() -> None:
    out = io.StringIO()
    command = load_command_class("django_live_oauth_mail", "live_oauth_mail")
    parser = command.create_parser("manage.py", "live_oauth_mail")
    refresh = parser._subparsers._group_actions[0].choices["refresh"]  # type: ignore[union-attr]
    refresh.print_help(out)
    assert "not refreshed for N days or more" in out.getvalue()
