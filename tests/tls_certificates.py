"""A trustme CA and a server certificate it issued for the loopback addresses, as PEM files
(the module-scoped ``certificates`` fixtures of the TLS tests)."""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

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
