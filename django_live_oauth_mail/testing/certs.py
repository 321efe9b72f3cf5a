"""Throwaway certificates: the stand-ins' TLS (Microsoft only speaks TLS, so
clients under test keep verification on and trust a self-signed, per-process
certificate), and an app's certificate credential."""

from __future__ import annotations

import atexit
import datetime as dt
import functools
import ipaddress
import shutil
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

DEFAULT_HOSTNAMES: tuple[str, ...] = ("127.0.0.1", "localhost")
_Key = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class TestCertificate:
    """PEM files of a self-signed server certificate (clients trust it) and key."""

    __test__: ClassVar[bool] = False  # not a test class, whatever pytest thinks
    ca_path: str
    key_path: str

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.ca_path, self.key_path)
        return context


@functools.cache
def make_test_certificate(
    hostnames: tuple[str, ...] = DEFAULT_HOSTNAMES,
) -> TestCertificate:
    """A certificate for ``hostnames``, made once per process (keys take a
    while) in a temporary directory removed at exit."""
    key = ec.generate_private_key(ec.SECP256R1())
    names = [
        x509.IPAddress(ipaddress.ip_address(name))
        if name[0].isdigit() or ":" in name
        else x509.DNSName(name)
        for name in hostnames
    ]
    alternatives = x509.SubjectAlternativeName(names)
    certificate = _builder(hostnames[0], key).add_extension(alternatives, False)
    directory = Path(tempfile.mkdtemp(prefix="django-live-oauth-mail-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    cert, key_path = directory / "cert.pem", directory / "key.pem"
    cert.write_bytes(_pem(certificate.sign(key, hashes.SHA256())))
    key_path.write_bytes(_private_pem(key))
    return TestCertificate(str(cert), str(key_path))


@dataclass(frozen=True)
class ClientCertificate:
    """An app's certificate credential: msal signs with ``private_key_pem``
    and names it by ``thumbprint`` (SHA-1 hex, as the Azure portal shows);
    Entra knows ``certificate_pem``."""

    private_key_pem: str
    certificate_pem: str
    thumbprint: str


def make_client_certificate(
    name: str = "django-live-oauth-mail test app",
) -> ClientCertificate:
    """A new self-signed RSA certificate (msal signs assertions with RS256)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    certificate = _builder(name, key).sign(key, hashes.SHA256())
    sha1 = certificate.fingerprint(hashes.SHA1())  # noqa: S303 - Entra's thumbprint
    key_pem, certificate_pem = _private_pem(key).decode(), _pem(certificate).decode()
    return ClientCertificate(key_pem, certificate_pem, sha1.hex().upper())


def _builder(name: str, key: _Key) -> x509.CertificateBuilder:
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now, day = dt.datetime.now(dt.timezone.utc), dt.timedelta(days=1)
    serial, builder = x509.random_serial_number(), x509.CertificateBuilder()
    builder = builder.subject_name(subject).issuer_name(subject).serial_number(serial)
    builder = builder.not_valid_before(now - day).not_valid_after(now + 365 * day)
    return builder.public_key(key.public_key())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def _private_pem(key: _Key) -> bytes:
    encoding, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    return key.private_bytes(encoding, pkcs8, serialization.NoEncryption())
