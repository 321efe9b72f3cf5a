"""Throwaway TLS certificates for the local test servers.

Microsoft only speaks TLS, so the stand-ins do too: clients under test keep
certificate verification switched on and trust a private, per-process CA
instead of turning verification off.
"""

from __future__ import annotations

import atexit
import datetime as dt
import ipaddress
import shutil
import ssl
import tempfile
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = [
    "DEFAULT_HOSTNAMES",
    "ClientCertificate",
    "TestCertificate",
    "make_client_certificate",
    "make_test_certificate",
]

DEFAULT_HOSTNAMES: tuple[str, ...] = ("127.0.0.1", "localhost")

_cache: dict[tuple[str, ...], TestCertificate] = {}
_cache_lock = threading.Lock()


@dataclass(frozen=True)
class TestCertificate:
    """PEM files of a private CA and a server certificate signed by it.

    ``ca_path`` is the CA bundle clients should trust; ``cert_path`` holds the
    server certificate followed by the CA certificate (the chain servers send).
    """

    # Keep pytest from collecting this class when a test module imports it.
    __test__: ClassVar[bool] = False

    ca_path: str
    cert_path: str
    key_path: str
    directory: str

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting the certificate chain."""
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.cert_path, self.key_path)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the test CA."""
        return ssl.create_default_context(cafile=self.ca_path)


def make_test_certificate(
    hostnames: Iterable[str] = DEFAULT_HOSTNAMES,
) -> TestCertificate:
    """Create (or reuse) a CA and a server certificate valid for ``hostnames``.

    Generating keys takes a noticeable fraction of a second, so each set of
    host names is generated once per process and the same object is returned
    afterwards. The files live in a temporary directory removed at exit.
    """
    names = tuple(hostnames)
    if not names:
        raise ValueError("make_test_certificate() needs at least one host name")
    with _cache_lock:
        certificate = _cache.get(names)
        if certificate is None:
            certificate = _generate(names)
            _cache[names] = certificate
        return certificate


def _generate(hostnames: tuple[str, ...]) -> TestCertificate:
    now = dt.datetime.now(dt.timezone.utc)
    not_before, not_after = now - dt.timedelta(days=1), now + dt.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name(
        [x509.NameAttribute(NameOID.COMMON_NAME, "django-live-oauth-mail test CA")]
    )
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(cert_sign=True), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    leaf_key = ec.generate_private_key(ec.SECP256R1())
    leaf_cert = (
        x509.CertificateBuilder()
        .subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])])
        )
        .issuer_name(ca_name)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), True)
        .add_extension(_key_usage(cert_sign=False), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.SubjectAlternativeName([_general_name(h) for h in hostnames]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )

    directory = Path(tempfile.mkdtemp(prefix="django-live-oauth-mail-tls-"))
    atexit.register(shutil.rmtree, directory, ignore_errors=True)
    ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)
    paths = {
        "ca.pem": ca_pem,
        "cert.pem": leaf_cert.public_bytes(serialization.Encoding.PEM) + ca_pem,
        "key.pem": leaf_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    }
    for name, content in paths.items():
        (directory / name).write_bytes(content)
    (directory / "key.pem").chmod(0o600)
    return TestCertificate(
        ca_path=str(directory / "ca.pem"),
        cert_path=str(directory / "cert.pem"),
        key_path=str(directory / "key.pem"),
        directory=str(directory),
    )


@dataclass(frozen=True)
class ClientCertificate:
    """An app registration's certificate credential, as PEM text.

    The app signs its client assertions with ``private_key_pem``; Entra knows
    only ``certificate_pem`` (see ``FakeIdentityPlatform.add_client_certificate``).
    ``thumbprint`` is the SHA-1 hex the Azure portal shows, and what msal's
    ``client_credential={"private_key": ..., "thumbprint": ...}`` takes.
    """

    private_key_pem: str
    certificate_pem: str
    thumbprint: str
    thumbprint_sha256: str


def make_client_certificate(
    name: str = "django-live-oauth-mail test app",
) -> ClientCertificate:
    """A new self-signed RSA certificate, as Entra accepts for app credentials.

    RSA because msal signs client assertions with RS256 or PS256.
    """
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = dt.datetime.now(dt.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=365))
        .sign(key, hashes.SHA256())
    )
    return ClientCertificate(
        private_key_pem=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii"),
        certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(
            "ascii"
        ),
        thumbprint=certificate.fingerprint(hashes.SHA1()).hex().upper(),  # noqa: S303
        thumbprint_sha256=certificate.fingerprint(hashes.SHA256()).hex().upper(),
    )


def _key_usage(*, cert_sign: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=cert_sign,
        crl_sign=cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_name(hostname: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(hostname))
    except ValueError:
        return x509.DNSName(hostname)
