"""A local identity provider for the example, the tests and the benchmarks.

It answers both Cellosign conventions as a real OAuth2-style token endpoint
would, over real HTTP on 127.0.0.1 only:

- a JSON body (what Cellosign sends) or a form-encoded body;
- valid credentials get ``{"access_token", "token_type", "expires_in"}``;
- invalid ones get an OAuth2 error (``invalid_grant`` for a user's password,
  ``invalid_client`` with HTTP 401 for a client secret);
- malformed requests get ``invalid_request`` / ``unsupported_grant_type``.

Issued tokens are remembered (in memory) so that a webhook target in the same
process can check a Bearer token. Nothing here logs a credential or a token.
"""

from __future__ import annotations

import json
import secrets
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

from .loopback import LoopbackServer


@dataclass
class Account:
    """A credential the identity provider knows: a user or an application."""

    identity: str  # username or client_id
    secret: str  # password or client_secret
    grant_types: frozenset[str] = frozenset({"password", "client_credentials"})


@dataclass
class TokenServer(LoopbackServer):
    """Start with ``with TokenServer(accounts) as srv: srv.url``."""

    accounts: dict[str, Account] = field(default_factory=dict)
    expires_in: int = 3600
    latency_s: float = 0.0
    port: int = 0
    _tokens: dict[str, str] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    requests_seen: int = 0

    def handler(self) -> type[BaseHTTPRequestHandler]:
        return _handler_for(self)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/oauth2/token"

    # ------------------------------------------------------------- accounts
    def set_account(self, identity: str, secret: str) -> None:
        with self._lock:
            self.accounts[identity] = Account(identity, secret)

    def remove_account(self, identity: str) -> None:
        with self._lock:
            self.accounts.pop(identity, None)

    def identity_for_token(self, token: str) -> str | None:
        """Who a Bearer token was issued to, or None if it was never issued here."""
        with self._lock:
            return self._tokens.get(token)

    # -------------------------------------------------------------- answers
    def answer(self, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests_seen += 1
        if self.latency_s:
            time.sleep(self.latency_s)
        try:
            body = _parse_body(content_type, raw)
        except ValueError as exc:
            return 400, {"error": "invalid_request", "error_description": str(exc)}
        grant_type = body.get("grant_type")
        if not grant_type:
            return 400, {"error": "invalid_request", "error_description": "missing grant_type"}
        if "client_id" in body:
            identity, secret, client = body.get("client_id", ""), body.get("client_secret", ""), True
        elif "username" in body:
            identity, secret, client = body.get("username", ""), body.get("password", ""), False
        else:
            return 400, {"error": "invalid_request",
                         "error_description": "send username/password or client_id/client_secret"}
        with self._lock:
            account = self.accounts.get(identity)
        if account is None or not secrets.compare_digest(account.secret.encode(), secret.encode()):
            if client:
                return 401, {"error": "invalid_client", "error_description": "client authentication failed"}
            return 400, {"error": "invalid_grant", "error_description": "invalid username or password"}
        if grant_type not in account.grant_types:
            return 400, {"error": "unsupported_grant_type",
                         "error_description": f"grant_type {grant_type!r} is not allowed"}
        token = secrets.token_urlsafe(24)
        with self._lock:
            self._tokens[token] = identity
        return 200, {"access_token": token, "token_type": "Bearer", "expires_in": self.expires_in}


def _parse_body(content_type: str, raw: bytes) -> dict[str, str]:
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/json":
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError("body is not valid JSON") from exc
        if not isinstance(data, dict):
            raise ValueError("body must be a JSON object")
        return {str(k): str(v) for k, v in data.items()}
    if ctype == "application/x-www-form-urlencoded":
        return dict(urllib.parse.parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
    raise ValueError(f"unsupported content type {ctype or '(none)'}")


def _handler_for(owner: TokenServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:  # noqa: N802 (http.server naming)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, 1 << 20))
            status, payload = owner.answer(self.headers.get("Content-Type", ""), raw)
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Cache-Control", "no-store")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return  # never log requests: bodies carry credentials

    return Handler
