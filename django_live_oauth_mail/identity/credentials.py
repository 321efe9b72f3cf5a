"""The app registration's credential: its client secret or its certificate.

Read from the settings on every call, so a rotated secret is used at once,
and handed on only as a :class:`Secret`: its repr is masked, so a frame on
a traceback that holds it shows nothing. The certificate's key may be a PEM
or a file's path; the checks use :func:`certificate_problem` to say what is
wrong with one before any request is made.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

from cryptography.hazmat.primitives import serialization
from django.views.decorators.debug import sensitive_variables

from ..conf import conf
from ..secret import Secret
from .wording import misconfigured


@sensitive_variables()
def credential() -> Secret[str | dict[str, str]]:
    """The app's credential: its certificate when one is set, else its secret."""
    certificate = conf.CLIENT_CERTIFICATE
    if certificate is None:
        if not conf.CLIENT_SECRET:
            raise misconfigured("no_client_secret")
        return Secret(conf.CLIENT_SECRET)
    return Secret(
        {
            "private_key": certificate_key(certificate.get("private_key", "")),
            "thumbprint": certificate.get("thumbprint", "").replace(":", ""),
        }
    )


@sensitive_variables()
def certificate_key(value: str) -> str:
    """The PEM itself, or read from the file ``value`` names."""
    if "-----BEGIN" in value:
        return value
    try:
        with open(value, encoding="ascii") as pem:
            return pem.read()
    except (OSError, ValueError) as error:
        raise misconfigured(
            "private_key_unreadable", failure=type(error).__name__
        ) from None


def certificate_problem(certificate: Mapping[str, str]) -> str | None:
    """What is wrong with a CLIENT_CERTIFICATE, or None (for the checks)."""
    thumbprint = certificate.get("thumbprint", "").replace(":", "")
    # msal puts it in the assertion's x5t header, which is SHA-1's.
    if len(thumbprint) != 40 or not _is_hex(thumbprint):
        return (
            "'thumbprint' must be the certificate's SHA-1 thumbprint (40 hex digits)."
        )
    key = certificate_key(certificate.get("private_key", ""))
    try:
        serialization.load_pem_private_key(key.encode(), password=None)
    except (ValueError, TypeError) as error:
        return f"'private_key' is not an unencrypted PEM private key ({error})."
    return None


def _is_hex(text: str) -> bool:
    try:
        int(text, 16)
    except ValueError:
        return False
    return True


@sensitive_variables()
def credential_hash() -> str:
    """The configured credential's hash, so a new secret or certificate gets a
    new token; the settings, not the key file, which is read only to build."""
    configured = repr((conf.CLIENT_SECRET, conf.CLIENT_CERTIFICATE))
    return hashlib.sha256(configured.encode()).hexdigest()
