"""key_rotation: what rotate-keys stores, row by row, with no server."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.db import connection

from django_live_oauth_mail import key_rotation
from django_live_oauth_mail.models import MailAccount, OutboundMessage

pytestmark = [pytest.mark.offline, pytest.mark.django_db]

LOST, OLD, NEW = (Fernet.generate_key().decode() for _ in range(3))


def sealed(key: str, plaintext: bytes) -> str:
    return Fernet(key).encrypt(plaintext).decode()


def opens_with(key: str, token: str) -> bytes | None:
    try:
        return Fernet(key).decrypt(token)
    except InvalidToken:
        return None


def account(email: str, cache: str, kind: str = MailAccount.Kind.WORK) -> MailAccount:
    return MailAccount.objects.create(
        email=email, kind=kind, encrypted_token_cache=cache
    )


def message(mailbox: str, body: str) -> OutboundMessage:
    return OutboundMessage.objects.create(
        mailbox=mailbox, from_email=mailbox, message_id="<m@x>", encrypted_message=body
    )


def stored_cache(row: MailAccount) -> str:
    return MailAccount.objects.get(pk=row.pk).encrypted_token_cache


def test_token_caches_are_rewritten_with_the_newest_key_and_unreadable_ones_kept(
    live_settings: dict[str, Any],
) -> None:
    live_settings["ENCRYPTION_KEYS"] = [NEW, OLD]
    old = account("old@contoso.com", sealed(OLD, b"old cache"))
    current = account("new@contoso.com", sealed(NEW, b"new cache"))
    lost = account("lost@contoso.com", sealed(LOST, b"lost cache"))
    app = account("app@contoso.com", "", kind=MailAccount.Kind.APP)
    before = {row.pk: stored_cache(row) for row in (current, lost)}
    was_updated = MailAccount.objects.get(pk=old.pk).updated_at

    rotated = key_rotation.rotate_token_caches()

    assert rotated.count == 1
    assert [row.email for row in rotated.unreadable] == ["lost@contoso.com"]
    assert opens_with(NEW, stored_cache(old)) == b"old cache"
    assert opens_with(OLD, stored_cache(old)) is None
    assert MailAccount.objects.get(pk=old.pk).updated_at > was_updated
    assert {row.pk: stored_cache(row) for row in (current, lost)} == before
    assert stored_cache(app) == ""


def test_queued_messages_are_rewritten_with_the_newest_key_and_unreadable_ones_kept(
    live_settings: dict[str, Any],
) -> None:
    live_settings["ENCRYPTION_KEYS"] = [NEW, OLD]
    old = message("alice@outlook.com", sealed(OLD, b"MIME 1"))
    lost_body = sealed(LOST, b"MIME 2")
    lost = message("alice@outlook.com", lost_body)

    rotated = key_rotation.rotate_queued_messages()

    assert rotated.count == 1
    assert [row.pk for row in rotated.unreadable] == [lost.pk]
    stored = OutboundMessage.objects.get(pk=old.pk).encrypted_message
    assert opens_with(NEW, stored) == b"MIME 1"
    assert OutboundMessage.objects.get(pk=lost.pk).encrypted_message == lost_body
    assert key_rotation.rotate_queued_messages().count == 0  # nothing left to do


def test_a_cache_stored_while_rotating_is_not_overwritten_with_the_older_one(
    live_settings: dict[str, Any],
) -> None:
    live_settings["ENCRYPTION_KEYS"] = [NEW, OLD]
    row = account("alice@outlook.com", sealed(OLD, b"read by the rotation"))
    refreshed = sealed(NEW, b"stored by a refresh")
    refresh_meanwhile = _before_first_update(
        lambda: MailAccount.objects.filter(pk=row.pk).update(
            encrypted_token_cache=refreshed
        )
    )

    with connection.execute_wrapper(refresh_meanwhile):
        rotated = key_rotation.rotate_token_caches()

    assert rotated.count == 0
    assert stored_cache(row) == refreshed


def _before_first_update(meanwhile: Callable[[], object]) -> Any:
    """A query wrapper that runs ``meanwhile`` just before the first UPDATE:
    the row was read, then another writer committed, then the rotation writes."""
    done = False

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        nonlocal done
        if not done and sql.lstrip().upper().startswith("UPDATE"):
            done = True
            meanwhile()
        return execute(sql, params, many, context)

    return wrapper


def test_what_could_not_be_decrypted_names_each_row_and_what_to_do() -> None:
    alice = MailAccount(email="alice@outlook.com")
    queued = OutboundMessage(pk=7, mailbox="bob@contoso.com")

    assert key_rotation.left_unread([], []) is None
    both = key_rotation.left_unread([alice], [queued])
    assert both is not None
    assert "token cache of 1 mailbox(es): alice@outlook.com" in both
    assert "1 queued message(s): 7" in both
    assert "ENCRYPTION_KEYS" in both and "SECRET_KEY_FALLBACKS" in both
    assert "linked again" in both and "delete the messages" in both
    only_messages = key_rotation.left_unread([], [queued])
    assert only_messages is not None and "token cache" not in only_messages
    assert key_rotation.unreadable_row(alice) == (
        "alice@outlook.com: its token cache cannot be decrypted with any "
        "configured key; left as it was."
    )
    assert key_rotation.unreadable_row(queued).startswith(
        "Queued message 7 from bob@contoso.com: it cannot be decrypted"
    )
