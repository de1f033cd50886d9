"""Servers on 127.0.0.x that misbehave on purpose, and one that holds requests in flight.

Every loop here is bounded in count and in time, and every server ends its
threads when stopped.
"""

from __future__ import annotations

import socket
import ssl
import struct
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from resources.tokenserver import TokenServer

OK_BODY = b'{"access_token":"at-reliability-0c1d","token_type":"Bearer","expires_in":3600}'
MAX_SECONDS = 60.0  # no behaviour keeps a connection longer than this
MAX_REQUEST_BYTES = 1 << 20


@dataclass(frozen=True)
class Seen:
    """One request as it arrived: which server (host:port) and its raw bytes."""

    where: str
    raw: bytes

    @property
    def path(self) -> str:
        first = self.raw.split(b"\r\n", 1)[0].decode("latin-1")
        parts = first.split(" ")
        return parts[1] if len(parts) > 1 else ""


Behaviour = Callable[["Conn"], None]


@dataclass
class Conn:
    """What a behaviour gets: the socket, and a stop event that ends any wait at once."""

    sock: socket.socket
    stop: threading.Event

    def send(self, data: bytes) -> bool:
        try:
            self.sock.sendall(data)
            return True
        except OSError:
            return False

    def pause(self, seconds: float) -> bool:
        """Wait; False when the server is stopping."""
        return not self.stop.wait(seconds)

    def reset(self) -> None:
        """Close with a TCP RST (SO_LINGER 0) instead of an orderly FIN."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.sock.close()


def head(status: int = 200, reason: str = "OK", headers: dict[str, str] | None = None,
         length: int | None = None) -> bytes:
    lines = [f"HTTP/1.1 {status} {reason}", "Content-Type: application/json", "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (headers or {}).items()]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


# --------------------------------------------------------------------------- behaviours


def ok(conn: Conn) -> None:
    conn.send(head(length=len(OK_BODY)) + OK_BODY)


def trickle(pause: float) -> Behaviour:
    """A complete, valid answer (status line, headers, body) sent one byte at a time."""

    def run(conn: Conn) -> None:
        data = head(length=len(OK_BODY)) + OK_BODY
        for i in range(len(data)):
            if not conn.send(data[i:i + 1]) or not conn.pause(pause):
                return

    return run


def endless_body(pause: float, chunk: bytes = b"x", chunked: bool = False) -> Behaviour:
    """Headers, then a body that never ends (close-delimited, or chunked without the last chunk)."""

    def run(conn: Conn) -> None:
        extra = {"Transfer-Encoding": "chunked"} if chunked else {}
        if not conn.send(head(headers=extra)):
            return
        piece = f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n" if chunked else chunk
        started = time.monotonic()
        while time.monotonic() - started < MAX_SECONDS:
            if not conn.send(piece) or not conn.pause(pause):
                return

    return run


def reset_mid_answer(conn: Conn) -> None:
    conn.send(head(length=len(OK_BODY)) + OK_BODY[:12])
    time.sleep(0.05)
    conn.reset()


def reset_mid_headers(conn: Conn) -> None:
    conn.send(head(length=len(OK_BODY))[:20])
    time.sleep(0.05)
    conn.reset()


def reset_before_answer(conn: Conn) -> None:
    conn.reset()


def redirect(location: str, status: int = 307) -> Behaviour:
    def run(conn: Conn) -> None:
        body = b'{"moved": true}'
        conn.send(head(status, "Redirect", {"Location": location}, length=len(body)) + body)

    return run


# --------------------------------------------------------------------------- the raw server


class RawServer:
    """``with RawServer(behaviour, host="127.0.0.2") as srv: srv.url``: records every request."""

    def __init__(self, behaviour: Behaviour, *, host: str = "127.0.0.1", tls: bool = False,
                 path: str = "/oauth2/token") -> None:
        self.behaviour = behaviour
        self.host = host
        self.path = path
        self.seen: list[Seen] = []
        self.ca_bundle: str | None = None
        self._tls_ctx: ssl.SSLContext | None = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if tls:
            self._tls_ctx = self._make_tls()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sock = socket.create_server((host, 0))
        self._sock.settimeout(0.2)
        self.port = self._sock.getsockname()[1]
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(target=self._accept, name="raw-server", daemon=True)

    @property
    def url(self) -> str:
        return f"{'https' if self._tls_ctx else 'http'}://{self.host}:{self.port}{self.path}"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def _make_tls(self) -> ssl.SSLContext:
        import trustme

        ca = trustme.CA()
        cert = ca.issue_cert("127.0.0.1", "127.0.0.2", "localhost")
        self._tmp = tempfile.TemporaryDirectory(prefix="reliability-ca-")
        path = Path(self._tmp.name) / "ca.pem"
        ca.cert_pem.write_to_path(str(path))
        self.ca_bundle = str(path)
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        cert.configure_cert(ctx)
        return ctx

    def __enter__(self) -> RawServer:
        self._acceptor.start()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        self._stop.set()
        self._acceptor.join(timeout=5)
        self._sock.close()
        for thread in self._threads:
            thread.join(timeout=5)
        if self._tmp is not None:
            self._tmp.cleanup()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, raw_conn: socket.socket) -> None:
        conn: socket.socket = raw_conn
        try:
            conn.settimeout(5)
            if self._tls_ctx is not None:
                conn = self._tls_ctx.wrap_socket(raw_conn, server_side=True)
            request = _read_request(conn)
            if request is None:
                return
            with self._lock:
                self.seen.append(Seen(self.where, request))
            self.behaviour(Conn(conn, self._stop))
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                conn.close()
            except OSError:
                pass


def _read_request(conn: socket.socket) -> bytes | None:
    data = b""
    deadline = time.monotonic() + 5
    while b"\r\n\r\n" not in data:
        if time.monotonic() > deadline or len(data) > MAX_REQUEST_BYTES:
            return None
        chunk = conn.recv(65536)
        if not chunk:
            return None
        data += chunk
    head_part, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head_part.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = min(int(value.strip() or b"0"), MAX_REQUEST_BYTES)
    while len(body) < length and time.monotonic() < deadline:
        chunk = conn.recv(65536)
        if not chunk:
            break
        body += chunk
    return head_part + b"\r\n\r\n" + body


# --------------------------------------------------------------------------- requests held in flight


@dataclass
class GatedTokenServer(TokenServer):
    """A TokenServer whose answers wait until ``release()`` (at most ``hold_s``): requests stay in flight."""

    hold_s: float = 60.0
    gate: threading.Event = field(default_factory=threading.Event)
    arrived: threading.Event = field(default_factory=threading.Event)
    held: int = 0  # requests that reached the gate (in flight until released)

    def answer(self, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.held += 1
        self.arrived.set()
        self.gate.wait(self.hold_s)
        return super().answer(content_type, raw)

    def release(self) -> None:
        self.gate.set()

    def stop(self) -> None:
        self.release()
        super().stop()


def wait_for(condition: Callable[[], bool], timeout: float, step: float = 0.05) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(step)
    return condition()
