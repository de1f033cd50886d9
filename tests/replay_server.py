"""A real HTTP(S) token endpoint on 127.0.0.1 that answers as a case says.

The case format is the one of ``shared/cases/token-endpoints.yaml`` (the
``server`` member of a case)::

    status, content_type, headers, body        the answer (defaults: 200, application/json, {}, "")
    when_json_body / when_form_body            answer overrides chosen by the request's Content-Type
    when_accept_json / otherwise               answer overrides chosen by the request's Accept header
    expects_exact_password: true               401 invalid_grant unless password / client_secret is
                                               exactly ``declared_password``
    tls: self-signed                           HTTPS with a certificate from a throwaway CA
                                               (``ca_bundle`` is the path of that CA's PEM)
    delay_s                                    wait before answering (ends at once on shutdown)

and, for the unit tests, a few more:

    sequence: [answer, ...]     the n-th request gets the n-th entry over the base (the last repeats)
    body_size: N                a body of N bytes ("x")
    no_content_length: true     no Content-Length: the body ends when the connection closes
    trickle_s: T                send the body one byte every T seconds
    endless: true               with trickle_s: keep sending bytes (no Content-Length) until the
                                client gives up
    trickle_headers_s: T        send the status line and headers one byte every T seconds
    close_without_answer: true  read the request, then close the connection

``<AT>`` in a body is replaced by ``access_token`` (the test's fake token).
Every request is recorded (method, path, headers, raw body) before it is answered.
"""

from __future__ import annotations

import http
import json
import shutil
import socket
import ssl
import tempfile
import threading
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any

_OVERRIDE_KEYS = frozenset({
    "sequence", "when_json_body", "when_form_body", "when_accept_json", "otherwise",
    "expects_exact_password", "tls",
})


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    headers: tuple[tuple[str, str], ...]
    body: bytes

    def header(self, name: str) -> str | None:
        values = self.header_all(name)
        return values[0] if values else None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k.lower() == name.lower()]

    @property
    def content_type(self) -> str:
        return (self.header("content-type") or "").split(";")[0].strip().lower()

    def members(self) -> list[tuple[str, str]]:
        """The body's members in wire order (JSON object or form-encoded)."""
        if self.content_type == "application/json":
            try:
                pairs = json.loads(self.body, object_pairs_hook=list)
            except ValueError:
                return []
            return [(str(k), v) for k, v in pairs] if isinstance(pairs, list) else []
        if self.content_type == "application/x-www-form-urlencoded":
            return urllib.parse.parse_qsl(self.body.decode("ascii", errors="replace"), keep_blank_values=True)
        return []


class ReplayServer:
    """``with ReplayServer(case["server"]) as srv: run_token_test(..., TokenRequest(url=srv.url, ...))``."""

    def __init__(
        self,
        spec: Mapping[str, Any] | None = None,
        *,
        declared_password: str | None = None,
        access_token: str = "<AT>",
        path: str = "/token",
    ) -> None:
        self.spec: dict[str, Any] = dict(spec or {})
        self.declared_password = declared_password
        self.access_token = access_token
        self.path = path
        self.requests: list[RecordedRequest] = []
        self.ca_bundle: str | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._tmpdir: str | None = None
        self._ssl_context: ssl.SSLContext | None = None
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @classmethod
    def for_case(cls, case: Mapping[str, Any], **kwargs: Any) -> ReplayServer:
        return cls(case.get("server") or {}, declared_password=case.get("declared_password"), **kwargs)

    # ------------------------------------------------------------ lifecycle
    @property
    def tls(self) -> bool:
        return self.spec.get("tls") is not None

    @property
    def port(self) -> int:
        assert self._server is not None, "server not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}{self.path}"

    def start(self) -> ReplayServer:
        if self.tls:
            self._ssl_context = self._make_tls()
        self._server = _Server(self)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.01}, name="replay-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()  # wakes every delay / trickle at once
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        if self._tmpdir is not None:
            shutil.rmtree(self._tmpdir, ignore_errors=True)
            self._tmpdir = None

    def __enter__(self) -> ReplayServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _make_tls(self) -> ssl.SSLContext:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "localhost")
        self._tmpdir = tempfile.mkdtemp(prefix="replay-ca-")
        ca_path = Path(self._tmpdir) / "ca.pem"
        ca.cert_pem.write_to_path(str(ca_path))
        self.ca_bundle = str(ca_path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return ctx

    # ------------------------------------------------------------ answering
    def _record(self, req: RecordedRequest) -> int:
        with self._lock:
            self.requests.append(req)
            return len(self.requests) - 1

    def choose(self, req: RecordedRequest, index: int) -> dict[str, Any]:
        """The answer for the index-th request, as a flat dict of answer keys."""
        answer = {k: v for k, v in self.spec.items() if k not in _OVERRIDE_KEYS}
        sequence = self.spec.get("sequence")
        if sequence:
            answer.update(sequence[min(index, len(sequence) - 1)])
        if "when_json_body" in self.spec or "when_form_body" in self.spec:
            key = {"application/json": "when_json_body",
                   "application/x-www-form-urlencoded": "when_form_body"}.get(req.content_type)
            if key is None or key not in self.spec:
                return {"status": 415, "content_type": "application/json",
                        "body": '{"error":"invalid_request","error_description":'
                                '"replay server: no answer configured for this body encoding"}'}
            answer.update(self.spec[key])
        if "when_accept_json" in self.spec or "otherwise" in self.spec:
            wants_json = "application/json" in (req.header("accept") or "").lower()
            answer.update(self.spec.get("when_accept_json" if wants_json else "otherwise") or {})
        if self.spec.get("expects_exact_password"):
            got = dict(req.members())
            secret = got.get("password", got.get("client_secret"))
            if secret != self.declared_password:
                return {"status": 401, "content_type": "application/json",
                        "body": '{"error":"invalid_grant","error_description":'
                                '"replay server: the password did not arrive exactly as declared"}'}
        return answer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, owner: ReplayServer) -> None:
        self.owner = owner
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        ctx = self.owner._ssl_context
        if ctx is None:
            super().finish_request(request, client_address)
            return
        try:
            request.settimeout(5)
            tls_sock = ctx.wrap_socket(request, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the client refused our certificate: nothing to answer
        try:
            super().finish_request(tls_sock, client_address)
        finally:
            tls_sock.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # clients that hang up early are what these tests are about


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 5
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        pass

    def _handle(self) -> None:
        self.close_connection = True
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(min(length, 1 << 20)) if length > 0 else b""
        owner = self.server.owner
        req = RecordedRequest(
            method=self.command,
            path=self.path,
            headers=tuple((k, v) for k, v in self.headers.items()),
            body=body,
        )
        index = owner._record(req)
        try:
            self._answer(owner, owner.choose(req, index))
        except (OSError, ssl.SSLError):
            pass  # the client went away

    do_POST = do_GET = do_PUT = do_PATCH = do_DELETE = _handle

    def _answer(self, owner: ReplayServer, answer: Mapping[str, Any]) -> None:
        stop = owner._stop
        delay = float(answer.get("delay_s") or 0)
        if delay and stop.wait(delay):
            return
        if answer.get("close_without_answer"):
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        status = int(answer.get("status", 200))
        if answer.get("body_size") is not None:
            body = b"x" * int(answer["body_size"])
        else:
            body = str(answer.get("body", "")).replace("<AT>", owner.access_token).encode("utf-8")
        try:
            reason = http.HTTPStatus(status).phrase
        except ValueError:
            reason = "Status"
        lines = [f"HTTP/1.1 {status} {reason}"]
        content_type = answer.get("content_type", "application/json")
        if content_type is not None:
            lines.append(f"Content-Type: {content_type}")
        for name, value in (answer.get("headers") or {}).items():
            lines.append(f"{name}: {value}")
        endless = bool(answer.get("endless"))
        if not endless and not answer.get("no_content_length"):
            lines.append(f"Content-Length: {len(body)}")
        lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

        header_pause = answer.get("trickle_headers_s")
        if header_pause:
            for i in range(len(head)):
                self.wfile.write(head[i:i + 1])
                self.wfile.flush()
                if stop.wait(float(header_pause)):
                    return
        else:
            self.wfile.write(head)
        pause = answer.get("trickle_s")
        if not pause:
            self.wfile.write(body)
            self.wfile.flush()
            return
        self.wfile.flush()
        i = 0
        while i < len(body) or endless:
            self.wfile.write(body[i:i + 1] if i < len(body) else b"x")
            self.wfile.flush()
            i += 1
            if stop.wait(float(pause)):
                return
