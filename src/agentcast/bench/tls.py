"""A throwaway TLS identity for benchmarking ``wss://``: a private CA and a certificate for
the bench's host, made in memory when the server starts and gone when it stops.

The receivers trust only that CA (``ca_pem``); nothing is read from or written to the
system's trust store. trustme comes with ``pip install ".[bench]"``.
"""

from __future__ import annotations

import ssl

import trustme


class ThrowawayTLS:
    """A new CA and a server certificate it issued for ``host``."""

    def __init__(self, host: str) -> None:
        self._ca = trustme.CA()
        self._certificate = self._ca.issue_cert(host)
        self.ca_pem = self._ca.cert_pem.bytes().decode()

    def server_context(self) -> ssl.SSLContext:
        """Python's defaults for a TLS server (TLS 1.2+, the usual AEAD ciphers)."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._certificate.configure_cert(context)
        return context
