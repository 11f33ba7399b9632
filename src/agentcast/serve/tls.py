"""TLS contexts for ``agentcast serve --certfile/--keyfile`` and ``agentcast client --cafile``.

OpenSSL's own errors name neither the file nor the fault ("PEM lib"), so each
file is checked first and every failure is a ``ValueError`` with one line that
says which file is wrong and how.
"""

from __future__ import annotations

import ssl
from pathlib import Path

__all__ = ["client_context", "server_context"]


def _read(path: str, what: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        raise ValueError(f"cannot read the {what} {path}: {exc.strerror or exc}") from None


def server_context(certfile: str, keyfile: str | None = None) -> ssl.SSLContext:
    """A server context with Python's defaults (TLS 1.2 and later) presenting ``certfile``'s
    chain, with the private key from ``keyfile`` or, without it, from ``certfile`` too."""
    if "-----BEGIN CERTIFICATE-----" not in _read(certfile, "certificate file"):
        raise ValueError(f"no PEM certificate in {certfile}")
    key_source = certfile if keyfile is None else keyfile
    if "PRIVATE KEY-----" not in _read(key_source, "key file"):
        raise ValueError(f"no PEM private key in {key_source} (give it with --keyfile)")

    def refuse_password() -> str:  # else OpenSSL would prompt on the terminal
        raise ValueError(f"the private key in {key_source} is encrypted; give an unencrypted key")

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile, password=refuse_password)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ValueError(
                f"the private key in {key_source} does not match the certificate in {certfile}"
            ) from None
        raise ValueError(f"cannot load {certfile} and {key_source}: {exc.reason or exc}") from None
    return context


def client_context(cafile: str) -> ssl.SSLContext:
    """A client context that verifies the server against the CA certificates in ``cafile``
    (instead of the system's), host name included."""
    if "-----BEGIN CERTIFICATE-----" not in _read(cafile, "CA file"):
        raise ValueError(f"no PEM certificate in {cafile}")
    return ssl.create_default_context(cafile=cafile)
