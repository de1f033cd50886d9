"""A webhook receiver on 127.0.0.1 for the example and the tests.

It accepts a delivery only with ``Authorization: Bearer <token>`` where the
token was issued by the given TokenServer to one of the allowed identities:
401 without a valid token, 403 for a valid token of another identity.
Deliveries are recorded (headers minus Authorization, and the JSON body).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackServer
from .tokenserver import TokenServer


@dataclass
class WebhookTarget(LoopbackServer):
    tokens: TokenServer
    allowed_identities: set[str] = field(default_factory=set)
    port: int = 0
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    def url(self, path: str = "/hooks/cellosign") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def decide(self, authorization: str | None) -> tuple[int, str]:
        if not authorization or not authorization.startswith("Bearer "):
            return 401, "missing Bearer token"
        identity = self.tokens.identity_for_token(authorization[len("Bearer "):])
        if identity is None:
            return 401, "unknown or expired token"
        if identity not in self.allowed_identities:
            return 403, "token belongs to an identity this endpoint does not accept"
        return 200, "accepted"


def _handler_for(owner: WebhookTarget) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, 1 << 20))
            status, reason = owner.decide(self.headers.get("Authorization"))
            if status == 200:
                try:
                    body = json.loads(raw or b"null")
                except json.JSONDecodeError:
                    body = None
                headers = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
                with owner._lock:
                    owner.deliveries.append({"path": self.path, "headers": headers, "body": body})
            data = json.dumps({"status": reason}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler
