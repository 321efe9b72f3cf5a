"""Encryption keys: newest encrypts, all decrypt, SECRET_KEY-derived as fallback."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.fernet import Fernet, InvalidToken

from django_live_oauth_mail import crypto
from django_live_oauth_mail.exceptions import ConfigurationError

pytestmark = pytest.mark.offline

OLD, NEW = Fernet.generate_key().decode(), Fernet.generate_key().decode()


def test_round_trip(live_settings: dict[str, Any]) -> None:
    assert crypto.decrypt(crypto.encrypt("cache")) == "cache"


def test_rotation_keeps_old_rows_readable_and_writes_with_the_newest(
    live_settings: dict[str, Any],
) -> None:
    live_settings["ENCRYPTION_KEYS"] = [OLD]
    old_row = crypto.encrypt("cache")
    live_settings["ENCRYPTION_KEYS"] = [NEW, OLD]
    assert crypto.decrypt(old_row) == "cache"
    assert crypto.needs_rotation(old_row)
    rotated = crypto.rotate(old_row)
    assert not crypto.needs_rotation(rotated)
    assert Fernet(NEW.encode()).decrypt(rotated.encode()) == b"cache"
    assert Fernet(NEW.encode()).decrypt(crypto.encrypt("x").encode()) == b"x"


def test_without_keys_a_secret_key_derived_key_is_used(
    live_settings: dict[str, Any], settings: Any
) -> None:
    live_settings["ENCRYPTION_KEYS"] = []
    row = crypto.encrypt("cache")
    derived = crypto.derive_key(settings.SECRET_KEY)
    assert Fernet(derived.encode()).decrypt(row.encode()) == b"cache"
    # Adding keys later keeps those rows readable.
    live_settings["ENCRYPTION_KEYS"] = [NEW]
    assert crypto.decrypt(row) == "cache"


def test_rotated_secret_key_in_fallbacks_still_decrypts(
    live_settings: dict[str, Any], settings: Any
) -> None:
    live_settings["ENCRYPTION_KEYS"] = []
    row = crypto.encrypt("cache")
    settings.SECRET_KEY_FALLBACKS = [settings.SECRET_KEY]
    settings.SECRET_KEY = "a-brand-new-secret-key"
    assert crypto.decrypt(row) == "cache"
    settings.SECRET_KEY_FALLBACKS = []
    with pytest.raises(InvalidToken):
        crypto.decrypt(row)


def test_invalid_key_names_its_position(live_settings: dict[str, Any]) -> None:
    live_settings["ENCRYPTION_KEYS"] = [NEW, "not-a-key"]
    with pytest.raises(ConfigurationError, match=r"ENCRYPTION_KEYS'\]\[1\]"):
        crypto.encrypt("x")
