"""Check a certificate credential's client assertion the way Entra does.

msal signs the JWT with the app's private key: RS256 naming the certificate by
its SHA-1 thumbprint (``x5t``) when given one, else PS256 with ``x5t#S256``.
Entra finds the registered certificate by that thumbprint and checks the
signature, the audience (its token endpoint), ``iss``/``sub`` and lifetime.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Iterable
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ._aad_errors import AADError

__all__ = ["JWT_BEARER", "check_client_assertion"]

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: Entra tolerates this much clock skew on ``nbf`` (seconds).
_SKEW = 300
_PADDINGS: dict[Any, padding.AsymmetricPadding] = {
    "RS256": padding.PKCS1v15(),
    "PS256": padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32),
}
_BAD_SIGNATURE = (
    "The provided signature value did not match the expected signature value."
)


def check_client_assertion(
    assertion: str,
    *,
    client_id: str,
    audience: str,
    certificates: Iterable[x509.Certificate],
) -> None:
    """Raise :class:`AADError` (``invalid_client``) unless ``assertion`` holds."""
    try:
        header_part, claims_part, signature_part = assertion.split(".")
        header, claims = _json(header_part), _json(claims_part)
        signature = _b64(signature_part)
        sha1 = _b64(str(header.get("x5t", "")))
        sha256 = _b64(str(header.get("x5t#S256", "")))
    except (ValueError, binascii.Error):  # JSONDecodeError is a ValueError
        raise AADError("invalid_client", 50027, status=401) from None
    thumbprint = (sha1 or sha256).hex().upper()
    certificate = next(
        (
            c
            for c in certificates
            if c.fingerprint(hashes.SHA1()) == sha1  # noqa: S303 - Entra's x5t
            or c.fingerprint(hashes.SHA256()) == sha256
        ),
        None,
    )
    if certificate is None:
        reason = "The key was not found."
        raise AADError(
            "invalid_client", 700027, reason, thumbprint, client_id, status=401
        )
    key, scheme = certificate.public_key(), _PADDINGS.get(header.get("alg"))
    try:
        if scheme is None or not isinstance(key, rsa.RSAPublicKey):
            raise InvalidSignature
        signed = f"{header_part}.{claims_part}".encode("ascii")
        key.verify(signature, signed, scheme, hashes.SHA256())
    except InvalidSignature:
        raise AADError(
            "invalid_client",
            700027,
            _BAD_SIGNATURE,
            thumbprint,
            client_id,
            status=401,
        ) from None
    if str(claims.get("aud", "")).casefold() != audience.casefold():
        raise AADError("invalid_client", 700023, status=401)
    if claims.get("iss") != client_id or claims.get("sub") != client_id:
        raise AADError("invalid_client", 700021, status=401)
    now, exp, nbf = time.time(), claims.get("exp"), claims.get("nbf", 0)
    numbers = (int, float)
    if not (
        isinstance(exp, numbers)
        and isinstance(nbf, numbers)
        and nbf - _SKEW <= now < exp
    ):
        raise AADError("invalid_client", 700024, status=401)


def _b64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(part: str) -> dict[str, Any]:
    value = json.loads(_b64(part))
    if not isinstance(value, dict):
        raise ValueError("not a JSON object")
    return value
