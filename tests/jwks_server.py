"""A real JWKS served over HTTP on 127.0.0.1 for the tests: it counts its fetches and can
answer with a redirect instead."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa

KEY_TYPES = {
    "RS256": lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048),
    "ES256": lambda: ec.generate_private_key(ec.SECP256R1()),
}


def jwks(*keys: tuple[str, Any]) -> bytes:
    """A JWKS of the RSA keys' public halves, each named by its ``kid``."""
    entries = []
    for kid, private in keys:
        entry = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(private.public_key()))
        entries.append({**entry, "kid": kid, "alg": "RS256", "use": "sig"})
    return json.dumps({"keys": entries}).encode()


class JWKSHandler(http.server.BaseHTTPRequestHandler):
    """Serves ``body``, or redirects to ``redirect`` when set; ``fetches`` counts the GETs;
    while ``held`` is set each answer waits for ``release`` (bounded)."""

    body = b""
    redirect: str | None = None
    fetches = 0
    url = ""
    held = False
    release = threading.Event()

    def do_GET(self) -> None:
        type(self).fetches += 1
        if self.held:
            self.release.wait(10)
        if self.redirect is not None:
            self.send_response(302)
            self.send_header("Location", self.redirect)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(self.body)))
        self.end_headers()
        self.wfile.write(self.body)

    def log_message(self, *args: Any) -> None:
        pass


@contextlib.contextmanager
def serving_jwks(body: bytes = b"") -> Iterator[type[JWKSHandler]]:
    """A JWKS server of its own; its handler class holds ``body``, ``fetches`` and ``url``."""
    handler = type(
        "Handler",
        (JWKSHandler,),
        {"body": body, "fetches": 0, "redirect": None, "held": False, "release": threading.Event()},
    )
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="jwks-http")
    thread.start()
    handler.url = f"http://127.0.0.1:{server.server_address[1]}/jwks.json"
    try:
        yield handler
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
