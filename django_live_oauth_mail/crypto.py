"""Encryption at rest for the token caches, with Fernet keys that rotate.

The newest key encrypts; every key decrypts. Keys derived from ``SECRET_KEY``
and ``SECRET_KEY_FALLBACKS`` always take part in decryption, so a site can
start without ``ENCRYPTION_KEYS`` and add them later without re-linking.
"""

from __future__ import annotations

import base64
import functools

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

from .conf import conf
from .exceptions import ConfigurationError

_HKDF_INFO = b"django-live-oauth-mail token cache v1"


def derive_key(secret: str) -> str:
    """A Fernet key derived from a Django secret with HKDF-SHA256."""
    raw = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_HKDF_INFO).derive(
        secret.encode()
    )
    return base64.urlsafe_b64encode(raw).decode()


def _keys() -> tuple[str, ...]:
    secrets = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return (*conf.ENCRYPTION_KEYS, *(derive_key(s) for s in secrets if s))


@functools.lru_cache(maxsize=8)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError) as error:
            raise ConfigurationError(
                f"LIVE_OAUTH_MAIL['ENCRYPTION_KEYS'][{position}] is not a valid "
                "Fernet key (32 url-safe base64-encoded bytes). Generate one with "
                "`python -c 'from cryptography.fernet import Fernet; "
                "print(Fernet.generate_key().decode())'`."
            ) from error
    return MultiFernet(fernets)


def encrypt(plaintext: str) -> str:
    """Encrypt with the newest key."""
    return _fernet(_keys()).encrypt(plaintext.encode()).decode("ascii")


class Plaintext(str):
    """Decrypted text whose ``repr()`` (debug pages, error reports) hides it."""

    def __repr__(self) -> str:
        return "'<decrypted, hidden>'"


def decrypt(ciphertext: str) -> Plaintext:
    """Decrypt with any configured key; ``InvalidToken`` if none fits."""
    return Plaintext(_fernet(_keys()).decrypt(ciphertext.encode("ascii")).decode())


def encrypt_bytes(data: bytes) -> str:
    """Encrypt bytes (a rendered message) with the newest key."""
    return _fernet(_keys()).encrypt(data).decode("ascii")


def decrypt_bytes(ciphertext: str) -> bytes:
    """Decrypt bytes with any configured key; ``InvalidToken`` if none fits."""
    return _fernet(_keys()).decrypt(ciphertext.encode("ascii"))


def needs_rotation(ciphertext: str) -> bool:
    """True when the newest key cannot decrypt it alone."""
    newest = _fernet(_keys()[:1])
    try:
        newest.decrypt(ciphertext.encode("ascii"))
    except InvalidToken:
        return True
    return False


def rotate(ciphertext: str) -> str:
    """Re-encrypt with the newest key."""
    return _fernet(_keys()).rotate(ciphertext.encode("ascii")).decode("ascii")


__all__ = [
    "InvalidToken",
    "Plaintext",
    "decrypt",
    "decrypt_bytes",
    "derive_key",
    "encrypt",
    "encrypt_bytes",
    "needs_rotation",
    "rotate",
]
