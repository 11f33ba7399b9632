"""A trustme CA and a server certificate it issued for the loopback addresses, as PEM files
(the module-scoped ``certificates`` fixtures of the TLS tests)."""

from __future__ import annotations

import datetime
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from agentcast.serve.tls import client_context, server_context


@dataclass(frozen=True)
class Certificates:
    """A trustme CA and a certificate it issued for 127.0.0.1 and ::1, as PEM files."""

    ca: trustme.CA
    cafile: Path
    certfile: Path
    keyfile: Path

    def server(self) -> ssl.SSLContext:
        return server_context(str(self.certfile), str(self.keyfile))

    def client(self) -> ssl.SSLContext:
        return client_context(str(self.cafile))


def issue(directory: Path) -> Certificates:
    """A new CA and its certificate for 127.0.0.1 and ::1, written to ``directory``."""
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1", "::1")
    files = Certificates(ca, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.cafile))
    issued.private_key_pem.write_to_path(str(files.keyfile))
    for pem in issued.cert_chain_pems:
        pem.write_to_path(str(files.certfile), append=True)
    return files


def issue_cn_only(directory: Path) -> Certificates:
    """A new CA and a certificate naming 127.0.0.1 in its CN only, as older tools issue
    them (no subjectAltName at all: trustme cannot make one, and cryptography 51 refuses an
    empty one), written to ``directory``."""
    ca = trustme.CA()
    ca_key = serialization.load_pem_private_key(ca.private_key_pem.bytes(), None)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey)
    ca_cert = x509.load_pem_x509_certificate(ca.cert_pem.bytes())
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    files = Certificates(ca, directory / "ca.pem", directory / "cert.pem", directory / "key.pem")
    ca.cert_pem.write_to_path(str(files.cafile))
    files.certfile.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    files.keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return files
