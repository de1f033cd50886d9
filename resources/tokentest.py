"""The live token test: send exactly what Cellosign sends, judge the answer.

A secret may only reach Cellosign when its token endpoint, asked the way
Cellosign asks, returns an answer Cellosign can use: HTTP 2xx, a JSON object
with a non-empty ``access_token`` and a positive ``expires_in``.

Every outcome is one documented *kind* (see ``KINDS`` and the README)
with a specific, operator-friendly message. Messages, hints and warnings never
contain a credential (``TokenRequest.secret_values``, in any usual encoding)
nor the access token; the token itself is never kept.

Threading: the provider process runs up to four calls at once. HTTP clients
(and with them their TLS contexts) are cached per (ca_bundle, timeouts) in a
module-level dict behind a lock, created lazily on first use, never at import
time and never on a picklable object.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import socket
import ssl
import threading
import time
import unicodedata
import urllib.parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from http.cookiejar import CookieJar, DefaultCookiePolicy
from typing import Any

import httpx

__all__ = [
    "KINDS",
    "MAX_PLAUSIBLE_EXPIRES_IN",
    "TokenRequest",
    "TokenTestResult",
    "close_clients",
    "run_token_test",
]

# --------------------------------------------------------------------------- kinds

#: Every kind a token test can end in: code -> (meaning, ok?). Stable: other
#: code and the documentation rely on these codes.
KINDS: Mapping[str, tuple[str, bool]] = {
    "ok": ("HTTP 2xx with a JSON object holding a usable access_token and a positive expires_in; "
           "warnings list anything non-standard", True),
    "bad_config": ("the token request itself is unusable (request_format, timeouts, max_body_bytes, "
                   "body values); nothing was sent", False),
    "invalid_url": ("url is not an absolute http(s) URL with a host, or carries user:password; "
                    "nothing was sent", False),
    "invalid_ca_bundle": ("ca_bundle cannot be read as a PEM bundle of CA certificates; nothing was sent", False),
    "connection_failed": ("no HTTP answer: DNS failure, connection refused or reset, proxy failure, "
                          "server closed the connection without answering", False),
    "tls_error": ("TLS failed: the server certificate is not trusted or does not match the host, "
                  "or the handshake failed", False),
    "timeout": ("no complete answer within connect_timeout / read_timeout, or within their sum "
                "for the whole exchange (slow or trickling servers)", False),
    "redirect": ("HTTP 3xx: redirects are never followed (credentials never go elsewhere); "
                 "status and Location are reported", False),
    "response_too_large": ("the answer body is larger than max_body_bytes", False),
    "protocol_error": ("the server broke HTTP: malformed answer, connection cut mid-body, "
                       "undecodable content encoding", False),
    "rate_limited": ("HTTP 429 (after at most one retry when Retry-After <= 5 s)", False),
    "oauth_error": ("the answer carries an `error` member (any status, also HTTP 200); error and "
                    "error_description are quoted verbatim", False),
    "http_error": ("HTTP 4xx/5xx without an `error` member (HTML error pages, plain text, other JSON)", False),
    "not_json": ("HTTP 2xx but the body is not JSON (empty, HTML, form-encoded, text)", False),
    "not_json_object": ("HTTP 2xx with JSON that is not an object (array, string, number)", False),
    "missing_access_token": ("HTTP 2xx JSON object without access_token; a message-like member "
                             "(msg, message, detail, ...) is quoted", False),
    "invalid_access_token": ("access_token is not a usable string: empty, blank, the text "
                             "null/undefined/none/nil, not a string, or with control characters", False),
    "missing_expires_in": ("access_token is fine but expires_in is absent or null", False),
    "invalid_expires_in": ("expires_in is zero, negative, boolean, non-numeric, not finite, "
                           "or below one second", False),
    "unexpected_error": ("a bug in the token test itself; the message names the exception", False),
}

#: Longest token lifetime taken without a warning: one year (365 days).
MAX_PLAUSIBLE_EXPIRES_IN = 365 * 24 * 3600
#: Pause before retrying after a connection failure or a 5xx without Retry-After.
RETRY_DELAY_S = 0.5
#: Longest Retry-After honoured with a retry (429 and 5xx).
MAX_RETRY_AFTER_S = 5.0
USER_AGENT = "cellosign-iac-tokentest/1"

_MESSAGE_LIMIT = 300  # characters kept from any server-provided text
_SNIPPET_LIMIT = 160  # characters kept from a non-JSON body
_MESSAGE_MEMBERS = ("error_description", "msg", "message", "error_message", "errorMessage",
                    "detail", "details", "description", "title", "reason")
_TOKEN_MEMBERS = ("access_token", "refresh_token", "id_token")
_PLACEHOLDER_TOKENS = frozenset({"null", "undefined", "none", "nil"})
_FORM_HINT = "the server seems to read only form-encoded bodies: set request_format: form"


# --------------------------------------------------------------------------- API


@dataclass(frozen=True)
class TokenRequest:
    url: str
    body: Mapping[str, str]  # from conventions.Convention.wire_body(...), member order kept
    secret_values: tuple[str, ...]  # password/client_secret values: never in any message
    request_format: str = "json"  # "json" (what Cellosign sends) or "form"
    connect_timeout: float = 5.0
    read_timeout: float = 15.0
    ca_bundle: str | None = None  # PEM bundle trusted instead of the system store
    max_body_bytes: int = 64 * 1024


@dataclass(frozen=True)
class TokenTestResult:
    secret: str  # declaration name
    ok: bool
    kind: str  # one of KINDS
    message: str  # specific, operator-friendly, no secret, no token
    warnings: tuple[str, ...]
    status: int | None
    expires_in: int | None
    content_type: str | None
    hint: str | None  # likely cause on our side, if any
    tested_at: str  # ISO-8601 UTC, e.g. 2025-01-31T12:00:00Z
    elapsed_ms: int

    def to_json(self) -> dict[str, Any]:
        return {
            "secret": self.secret,
            "ok": self.ok,
            "kind": self.kind,
            "message": self.message,
            "warnings": list(self.warnings),
            "status": self.status,
            "expires_in": self.expires_in,
            "content_type": self.content_type,
            "hint": self.hint,
            "tested_at": self.tested_at,
            "elapsed_ms": self.elapsed_ms,
        }


def run_token_test(name: str, request: TokenRequest) -> TokenTestResult:
    """POST ``request`` the way Cellosign does and decide whether Cellosign could use the answer.

    Never raises (a bug ends as kind ``unexpected_error``); thread-safe.
    """
    return obtain_token(name, request)[0]


def obtain_token(name: str, request: TokenRequest) -> tuple[TokenTestResult, str | None]:
    """Like run_token_test, and also hand back the access token when the test passed.

    For webhook test deliveries only: the caller keeps the token in memory for
    one request and never stores, logs or returns it.
    """
    started = time.monotonic()
    tested_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    redactor = _Redactor(_str_values(getattr(request, "secret_values", ())))
    try:
        outcome = _run(request, redactor)
    except Exception as exc:  # noqa: BLE001 - the contract is: never raise
        outcome = _Outcome(
            "unexpected_error",
            f"the token test failed unexpectedly ({type(exc).__name__}: "
            f"{_clean(str(exc), redactor, _MESSAGE_LIMIT)})",
        )
    final = redactor.extended(outcome.hidden)
    result = TokenTestResult(
        secret=name,
        ok=outcome.kind == "ok",
        kind=outcome.kind,
        message=final(outcome.message),
        warnings=tuple(final(w) for w in outcome.warnings),
        status=outcome.status,
        expires_in=outcome.expires_in if outcome.kind == "ok" else None,
        content_type=final(outcome.content_type) if outcome.content_type is not None else None,
        hint=final(outcome.hint) if outcome.hint is not None else None,
        tested_at=tested_at,
        elapsed_ms=int((time.monotonic() - started) * 1000),
    )
    return result, (outcome.token if result.ok else None)


def close_clients() -> None:
    """Close and forget every cached HTTP client (provider shutdown, tests)."""
    with _clients_lock:
        entries = list(_clients.values())
        _clients.clear()
    for _sig, client in entries:
        client.close()


# --------------------------------------------------------------------------- outcome


@dataclass
class _Outcome:
    kind: str
    message: str
    hint: str | None = None
    status: int | None = None
    content_type: str | None = None
    expires_in: int | None = None
    warnings: list[str] = field(default_factory=list)
    hidden: list[str] = field(default_factory=list)  # token values to redact from the output
    token: str | None = field(default=None, repr=False)  # only for obtain_token; never in a result


class _Failure(Exception):
    """One attempt ended without a usable HTTP answer."""

    def __init__(self, kind: str, message: str, hint: str | None = None, retryable: bool = False) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.hint = hint
        self.retryable = retryable


@dataclass
class _Answer:
    status: int
    reason: str
    headers: httpx.Headers
    body: bytes


# --------------------------------------------------------------------------- redaction


def _str_values(values: Iterable[Any]) -> list[str]:
    try:
        return [v for v in values if isinstance(v, str) and v]
    except TypeError:
        return []


_WS_CATEGORIES = frozenset({"Zl", "Zp"})
_DROP_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co"})


def _normalize(text: str) -> str:
    """Control and format characters removed, whitespace runs collapsed to one space."""
    out: list[str] = []
    for ch in text:
        if ch.isspace() or unicodedata.category(ch) in _WS_CATEGORIES:
            out.append(" ")
        elif unicodedata.category(ch) in _DROP_CATEGORIES:
            continue
        else:
            out.append(ch)
    return re.sub(r" {2,}", " ", "".join(out)).strip()


def _percent_pattern(text: str) -> str:
    """A regex for URL-encoded text whose %XX escapes match in either letter case."""
    parts = re.split(r"(%[0-9A-Fa-f]{2})", text)
    out: list[str] = []
    for part in parts:
        if re.fullmatch(r"%[0-9A-Fa-f]{2}", part):
            out.append("%" + "".join(f"[{c.upper()}{c.lower()}]" if c.isalpha() else c for c in part[1:]))
        elif part:
            out.append(re.escape(part))
    return "".join(out)


class _Redactor:
    """Replaces every occurrence of the given values, in their usual encodings, by [redacted]."""

    def __init__(self, values: Iterable[str]) -> None:
        self._values = [v for v in values if v]
        patterns: set[str] = set()
        for value in self._values:
            for variant in self._variants(value):
                if variant:
                    patterns.add(re.escape(variant))
            for encoded in {urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value),
                            urllib.parse.quote(value)}:
                patterns.add(_percent_pattern(encoded))
        ordered = sorted(patterns, key=len, reverse=True)
        self._regex = re.compile("|".join(ordered)) if ordered else None

    @staticmethod
    def _variants(value: str) -> set[str]:
        variants = {
            value,
            _normalize(value),
            json.dumps(value)[1:-1],
            json.dumps(value, ensure_ascii=False)[1:-1],
            repr(value)[1:-1],
            html.escape(value),
            html.escape(value, quote=False),
        }
        return variants | {_normalize(v) for v in variants}

    def __call__(self, text: str) -> str:
        if self._regex is None:
            return text
        return self._regex.sub("[redacted]", text)

    def extended(self, more: Iterable[str]) -> _Redactor:
        extra = [m for m in more if m and m not in self._values]
        return _Redactor(self._values + extra) if extra else self


_TOKEN_TEXT = re.compile(
    r"""(?ix)
    (\b(?:access|refresh|id)_token["']?\s*[:=]\s*["']?)  # the member name and separator
    [^&"'\s,;}<]+                                        # its value
    |(\bbearer\s+)[A-Za-z0-9\-._~+/]+=*                  # an Authorization value
    """
)


def _hide_tokens(text: str) -> str:
    return _TOKEN_TEXT.sub(lambda m: (m.group(1) or m.group(2) or "") + "[redacted]", text)


def _clean(text: str, redactor: _Redactor, limit: int) -> str:
    """Server-provided text made safe to print: no controls, no secret, no token, bounded."""
    cleaned = redactor(_hide_tokens(_normalize(text)))
    if len(cleaned) > limit:
        cleaned = cleaned[: limit - 1].rstrip() + "…"
    return cleaned


def _q(text: str) -> str:
    return f'"{text}"'


def _secs(value: float) -> str:
    return f"{value:g} s"


# --------------------------------------------------------------------------- HTTP clients

_ClientKey = tuple[str | None, float, float]
_clients: dict[_ClientKey, tuple[tuple[int, int] | None, httpx.Client]] = {}
_clients_lock = threading.Lock()


def _reset_after_fork() -> None:
    global _clients_lock
    _clients_lock = threading.Lock()
    _clients.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_after_fork)


class _CaBundleError(Exception):
    pass


def _bundle_signature(path: str | None) -> tuple[int, int] | None:
    if path is None:
        return None
    try:
        st = os.stat(path)
    except OSError as exc:
        raise _CaBundleError(f"cannot read ca_bundle {_q(path)}: {exc.strerror or exc}") from exc
    if not os.path.isfile(path):
        raise _CaBundleError(f"ca_bundle {_q(path)} is not a file; give the path of a PEM file")
    return (st.st_mtime_ns, st.st_size)


def _ssl_context(ca_bundle: str | None) -> ssl.SSLContext:
    if ca_bundle is None:
        ctx = ssl.create_default_context()  # the system store (honours SSL_CERT_FILE / SSL_CERT_DIR)
        if ctx.cert_store_stats().get("x509_ca", 0) == 0:
            import certifi  # httpx's own dependency; used when the system store looks empty

            ctx.load_verify_locations(cafile=certifi.where())
        return ctx
    try:
        return ssl.create_default_context(cafile=ca_bundle)
    except (OSError, ssl.SSLError, ValueError) as exc:
        raise _CaBundleError(
            f"ca_bundle {_q(ca_bundle)} holds no usable PEM CA certificate ({exc})"
        ) from exc


def _client_for(request: TokenRequest) -> httpx.Client:
    return shared_client(request.ca_bundle, request.connect_timeout, request.read_timeout)


def shared_client(ca_bundle: str | None, connect_timeout: float, read_timeout: float) -> httpx.Client:
    """The process-wide client for these settings (one TLS context each; never follows redirects).

    Also used for webhook test deliveries. Raises _CaBundleError for an unusable bundle.
    """
    key: _ClientKey = (ca_bundle, float(connect_timeout), float(read_timeout))
    signature = _bundle_signature(ca_bundle)
    with _clients_lock:
        entry = _clients.get(key)
        if entry is not None and entry[0] == signature:
            return entry[1]
        client = httpx.Client(
            verify=_ssl_context(ca_bundle),
            timeout=httpx.Timeout(
                connect=connect_timeout,
                read=read_timeout,
                write=read_timeout,
                pool=connect_timeout,
            ),
            follow_redirects=False,
            # A fresh connection per test: the total deadline can always reach the socket,
            # and no stale pooled connection is ever mistaken for a failing endpoint.
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=0),
            # Cookies are neither kept nor sent: Cellosign's request carries none.
            cookies=CookieJar(policy=DefaultCookiePolicy(allowed_domains=[])),
            trust_env=True,  # HTTP(S)_PROXY / NO_PROXY, as any client on the operator's machine
        )
        # A bundle that changed on disk gets a new client; the old one is left to the GC
        # because another thread may still be using it.
        _clients[key] = (signature, client)
        return client


# --------------------------------------------------------------------------- one attempt


class _Deadline:
    """Ends an exchange that outlives connect_timeout + read_timeout, even a trickling one.

    The socket is captured through httpcore's trace hook as soon as it is connected; at
    the deadline a timer thread shuts it down, which wakes any blocked read.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expires = time.monotonic() + seconds
        self.fired = False
        self._lock = threading.Lock()
        self._done = False
        self._stream: Any = None
        self._timer = threading.Timer(seconds, self._fire)
        self._timer.daemon = True

    def __enter__(self) -> _Deadline:
        self._timer.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        with self._lock:
            self._done = True
        self._timer.cancel()

    def trace(self, event: str, info: Mapping[str, Any]) -> None:
        if event.endswith((".connect_tcp.complete", ".start_tls.complete")):
            with self._lock:
                self._stream = info.get("return_value")
                late = self.fired and not self._done
            if late:
                self._shutdown()

    def expired(self) -> bool:
        return self.fired or time.monotonic() >= self.expires

    def _fire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.fired = True
        self._shutdown()

    def _shutdown(self) -> None:
        stream = self._stream
        try:
            sock = stream.get_extra_info("socket") if stream is not None else None
            if isinstance(sock, socket.socket):
                # The plain socket method, also on an SSLSocket: it acts on the descriptor.
                socket.socket.shutdown(sock, socket.SHUT_RDWR)
        except Exception:  # noqa: BLE001 - already closed: nothing to do
            pass


def _exception_chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 10:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _describe_connect_error(exc: httpx.HTTPError, request: TokenRequest, where: str,
                            redactor: _Redactor) -> _Failure:
    chain = _exception_chain(exc)
    for err in chain:
        if isinstance(err, ssl.SSLCertVerificationError):
            detail = _clean(str(err.verify_message or err.reason or err), redactor, 120)
            trusted = (f"by ca_bundle {_q(request.ca_bundle)}" if request.ca_bundle
                       else "by the system certificate store")
            return _Failure(
                "tls_error",
                f"TLS certificate of {where} is not trusted {trusted} ({detail}); a private or "
                f"intercepting CA can be trusted with the ca_bundle option",
                hint=("if the endpoint uses a private CA or sits behind a TLS-intercepting proxy, set "
                      "ca_bundle to a PEM file with that CA certificate"
                      if not request.ca_bundle else
                      "check that ca_bundle holds the CA that issued the server certificate and that "
                      "the certificate names the host of url"),
            )
    for err in chain:
        if isinstance(err, ssl.SSLError):
            detail = _clean(str(getattr(err, "reason", None) or err), redactor, 120)
            hint = "check that url uses https only if the server speaks TLS on that port"
            if "WRONG_VERSION_NUMBER" in str(err).upper():
                hint = "the server does not seem to speak TLS on this port: check the scheme and port of url"
            return _Failure(
                "tls_error",
                f"TLS handshake with {where} failed ({detail}); no certificate could be verified. "
                f"A private CA can be trusted with ca_bundle",
                hint=hint,
            )
    for err in chain:
        if isinstance(err, socket.gaierror):
            return _Failure(
                "connection_failed",
                f"could not resolve the host of {where} ({_clean(str(err), redactor, 120)})",
                hint="check the host name in url and the DNS of the machine running the deployment",
                retryable=True,
            )
    for err in chain:
        if isinstance(err, ConnectionRefusedError):
            return _Failure(
                "connection_failed",
                f"connection refused by {where}",
                hint="check the host and port in url, and that the endpoint is reachable from here",
                retryable=True,
            )
    if isinstance(exc, httpx.ProxyError):
        return _Failure("connection_failed",
                        f"the HTTP proxy failed to reach {where} ({_clean(str(exc), redactor, 160)})",
                        hint="check HTTPS_PROXY / HTTP_PROXY / NO_PROXY", retryable=True)
    return _Failure(
        "connection_failed",
        f"could not connect to {where} ({_clean(str(exc) or type(exc).__name__, redactor, 160)})",
        hint="check the host and port in url, and that the endpoint is reachable from here",
        retryable=True,
    )


def _attempt(client: httpx.Client, request: TokenRequest, url: httpx.URL, content: bytes,
             headers: Mapping[str, str], redactor: _Redactor) -> _Answer:
    where = _where(url)
    total = request.connect_timeout + request.read_timeout
    got_headers = False
    with _Deadline(total) as deadline:
        try:
            http_request = client.build_request(
                "POST", url, content=content, headers=headers, extensions={"trace": deadline.trace}
            )
            response = client.send(http_request, stream=True, follow_redirects=False)
            got_headers = True
            try:
                status = response.status_code
                reason = response.reason_phrase
                if 300 <= status < 400:
                    return _Answer(status, reason, response.headers, b"")
                declared = response.headers.get("content-length", "").strip()
                if declared.isdigit() and int(declared) > request.max_body_bytes:
                    raise _too_large(request, status, declared=int(declared))
                chunks: list[bytes] = []
                size = 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > request.max_body_bytes:
                        raise _too_large(request, status)
                    chunks.append(chunk)
                    if deadline.expired():
                        raise httpx.ReadTimeout("total deadline")
                if deadline.fired:  # our shutdown may read as the end of a close-delimited body
                    raise httpx.ReadTimeout("total deadline")
                return _Answer(status, reason, response.headers, b"".join(chunks))
            finally:
                response.close()
        except _Failure:
            raise
        except httpx.HTTPError as exc:
            if deadline.expired() and not isinstance(exc, httpx.ConnectTimeout):
                raise _Failure(
                    "timeout",
                    f"{where} did not complete its answer within the total timeout of "
                    f"{_secs(total)} (connect_timeout {_secs(request.connect_timeout)} + "
                    f"read_timeout {_secs(request.read_timeout)})"
                    + ("; it sends its answer too slowly" if got_headers else ""),
                    hint="a server that trickles its answer is probably overloaded or misconfigured",
                ) from exc
            if isinstance(exc, httpx.ConnectTimeout):
                raise _Failure(
                    "timeout",
                    f"could not connect to {where} within the connect timeout of "
                    f"{_secs(request.connect_timeout)}",
                    hint="check that the endpoint is reachable from here (firewall, proxy); "
                         "raise connect_timeout only if the network is known to be slow",
                ) from exc
            if isinstance(exc, (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout)):
                raise _Failure(
                    "timeout",
                    f"{where} did not answer within the read timeout of {_secs(request.read_timeout)}",
                    hint="raise read_timeout if the endpoint is known to be slow; "
                         "Cellosign will not wait forever either",
                ) from exc
            if isinstance(exc, httpx.ConnectError):
                raise _describe_connect_error(exc, request, where, redactor) from exc
            if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
                if not got_headers:
                    raise _Failure(
                        "connection_failed",
                        f"{where} closed the connection without answering "
                        f"({_clean(str(exc) or type(exc).__name__, redactor, 120)})",
                        hint="check that url points at an HTTP(S) token endpoint",
                        retryable=True,
                    ) from exc
                raise _Failure(
                    "protocol_error",
                    f"the connection to {where} broke while reading the answer "
                    f"({_clean(str(exc) or type(exc).__name__, redactor, 120)})",
                ) from exc
            if isinstance(exc, (httpx.DecodingError, httpx.ProtocolError)):
                raise _Failure(
                    "protocol_error",
                    f"{where} sent an answer that is not valid HTTP "
                    f"({_clean(str(exc) or type(exc).__name__, redactor, 120)})",
                ) from exc
            if isinstance(exc, (httpx.UnsupportedProtocol, httpx.InvalidURL)):
                raise _Failure("invalid_url", f"url cannot be used ({_clean(str(exc), redactor, 120)})") from exc
            if isinstance(exc, httpx.ProxyError):
                raise _describe_connect_error(exc, request, where, redactor) from exc
            raise _Failure(
                "connection_failed",
                f"the request to {where} failed ({type(exc).__name__}: "
                f"{_clean(str(exc), redactor, 120)})",
            ) from exc


def _too_large(request: TokenRequest, status: int, declared: int | None = None) -> _Failure:
    size = f" (Content-Length {declared})" if declared is not None else ""
    return _Failure(
        "response_too_large",
        f"HTTP {status}: the answer is larger than max_body_bytes ({request.max_body_bytes} bytes){size}; "
        "a token answer is a small JSON object",
        hint="check that url is the token endpoint itself, not a page or an API listing",
    )


def _where(url: httpx.URL) -> str:
    port = f":{url.port}" if url.port is not None else ""
    return f"{url.scheme}://{url.host}{port}{url.path}"


# --------------------------------------------------------------------------- the test


def _validate(request: TokenRequest) -> tuple[_Outcome | None, httpx.URL | None]:
    def bad(message: str) -> tuple[_Outcome, None]:
        return _Outcome("bad_config", message), None

    if request.request_format not in ("json", "form"):
        return bad(f"request_format must be \"json\" or \"form\", not {_q(str(request.request_format)[:20])}")
    for name in ("connect_timeout", "read_timeout"):
        value = getattr(request, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or value <= 0:
            return bad(f"{name} must be a positive number of seconds")
    if isinstance(request.max_body_bytes, bool) or not isinstance(request.max_body_bytes, int) \
            or request.max_body_bytes <= 0:
        return bad("max_body_bytes must be a positive integer")
    if request.ca_bundle is not None and not isinstance(request.ca_bundle, str):
        return bad("ca_bundle must be a path")
    try:
        items = list(request.body.items())
    except AttributeError:
        return bad("body must be a mapping of member names to strings")
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in items):
        return bad("body members and values must all be strings")
    if not isinstance(request.url, str) or not request.url.strip():
        return _Outcome("invalid_url", "url is empty"), None
    if request.url != request.url.strip() or any(ch.isspace() or ord(ch) < 32 for ch in request.url):
        return _Outcome("invalid_url", "url contains whitespace or control characters"), None
    try:
        url = httpx.URL(request.url)
    except Exception:  # noqa: BLE001 - any parse failure is the same verdict
        return _Outcome("invalid_url", "url is not a valid URL"), None
    if url.scheme not in ("http", "https") or not url.host:
        return _Outcome("invalid_url", "url must be an absolute http:// or https:// URL with a host"), None
    if url.userinfo:
        return _Outcome(
            "invalid_url",
            "url contains user:password; credentials go only in the request body, as Cellosign sends them",
            hint="remove the user info from url",
        ), None
    return None, url


def _wire(request: TokenRequest) -> tuple[bytes, dict[str, str]]:
    items = list(request.body.items())  # member order kept
    headers = {"Accept": "application/json", "User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if request.request_format == "form":
        headers["Content-Type"] = "application/x-www-form-urlencoded"
        return urllib.parse.urlencode(items).encode("ascii"), headers
    headers["Content-Type"] = "application/json"
    # json.dumps defaults, as Python's `requests` writes a json= body.
    return json.dumps(dict(items)).encode("utf-8"), headers


def _retry_after(headers: httpx.Headers) -> float | None:
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,9}", value):
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def _run(request: TokenRequest, redactor: _Redactor) -> _Outcome:
    problem, url = _validate(request)
    if problem is not None or url is None:
        return problem or _Outcome("invalid_url", "url is not valid")
    content, headers = _wire(request)
    try:
        client = _client_for(request)
    except _CaBundleError as exc:
        return _Outcome("invalid_ca_bundle", _clean(str(exc), redactor, _MESSAGE_LIMIT),
                        hint="ca_bundle must be a readable PEM file with one or more CA certificates")

    notes: list[str] = []
    for attempt in (1, 2):
        try:
            answer = _attempt(client, request, url, content, headers, redactor)
        except _Failure as failure:
            if failure.retryable and attempt == 1:
                notes.append(failure.message)
                time.sleep(RETRY_DELAY_S)
                continue
            outcome = _Outcome(failure.kind, failure.message, hint=failure.hint)
            return _with_retry_note(outcome, notes)
        delay: float | None = None
        if attempt == 1 and (answer.status == 429 or answer.status >= 500):
            wait = _retry_after(answer.headers)
            if answer.status == 429:
                delay = wait if wait is not None and wait <= MAX_RETRY_AFTER_S else None
            else:
                delay = RETRY_DELAY_S if wait is None else (wait if wait <= MAX_RETRY_AFTER_S else None)
        if delay is not None:
            notes.append(f"HTTP {answer.status} {_clean(answer.reason, redactor, 60)}".rstrip())
            time.sleep(delay)
            continue
        outcome = _judge(answer, request, redactor)
        return _with_retry_note(outcome, notes)
    raise AssertionError("unreachable")  # pragma: no cover


def _with_retry_note(outcome: _Outcome, notes: list[str]) -> _Outcome:
    if notes:
        first = notes[0]
        if outcome.kind == "ok":
            outcome.warnings.append(
                f"the first attempt failed ({first}); the second succeeded, but Cellosign may not retry"
            )
        else:
            outcome.warnings.append(f"tried twice; the first attempt failed too ({first})")
    return outcome


# --------------------------------------------------------------------------- judging an answer


def _parse_json(body: bytes) -> tuple[bool, Any]:
    if not body.strip():
        return False, None
    try:
        return True, json.loads(body)
    except (ValueError, RecursionError):
        return False, None


def _text_of(value: Any) -> str:
    if isinstance(value, str):
        return value
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError):
        return str(value)


def _looks_html(body_text: str, content_type: str) -> bool:
    head = body_text.lstrip()[:200].lower()
    return "html" in content_type.lower() or head.startswith(("<!doctype html", "<html", "<head", "<body"))


_FORM_BODY = re.compile(r"[A-Za-z0-9_.~%+\-]+=[^&\s]*(?:&[A-Za-z0-9_.~%+\-]+=[^&\s]*)*")


def _form_keys(body_text: str, content_type: str) -> list[str] | None:
    text = body_text.strip()
    if not text or not (_FORM_BODY.fullmatch(text) or "x-www-form-urlencoded" in content_type.lower()):
        return None
    try:
        pairs = urllib.parse.parse_qsl(text, keep_blank_values=True, max_num_fields=100)
    except ValueError:
        return None
    return [k for k, _ in pairs] or None


def _form_members(body_text: str) -> dict[str, str]:
    try:
        return dict(urllib.parse.parse_qsl(body_text.strip(), max_num_fields=100))
    except ValueError:
        return {}


def _html_summary(body_text: str) -> str:
    title = re.search(r"<title[^>]*>(.*?)</title>", body_text, re.IGNORECASE | re.DOTALL)
    if title and title.group(1).strip():
        return html.unescape(title.group(1))
    text = re.sub(r"<(script|style)[^>]*>.*?</\1>", " ", body_text, flags=re.IGNORECASE | re.DOTALL)
    return html.unescape(re.sub(r"<[^>]+>", " ", text))


def _hidden_tokens(parsed: Any) -> list[str]:
    hidden: list[str] = []
    if isinstance(parsed, dict):
        for member in _TOKEN_MEMBERS:
            value = parsed.get(member)
            if isinstance(value, str) and value.strip() and value.strip().lower() not in _PLACEHOLDER_TOKENS:
                hidden.append(value)
                hidden.append(value.strip())
    return hidden


def _message_member(obj: Mapping[str, Any]) -> tuple[str, Any] | None:
    for member in _MESSAGE_MEMBERS:
        value = obj.get(member)
        if value not in (None, "", [], {}):
            return member, value
    return None


def _error_text(parsed: Mapping[str, Any], redactor: _Redactor) -> tuple[str, str, str]:
    """(error, description, combined text for the message), all sanitized."""
    error = parsed.get("error")
    description: Any = parsed.get("error_description")
    if isinstance(error, dict):
        found = _message_member(error)
        if description in (None, "") and found is not None:
            description = found[1]
        error = error.get("code", error.get("type", error))
    if description in (None, ""):
        found = _message_member(parsed)
        description = found[1] if found is not None else None
    err_text = _clean(_text_of(error), redactor, 100)
    desc_text = _clean(_text_of(description), redactor, _MESSAGE_LIMIT) if description not in (None, "") else ""
    combined = f"error {_q(err_text) if isinstance(error, str) else err_text}"
    if desc_text:
        combined += f": {_q(desc_text)}"
    uri = parsed.get("error_uri")
    if isinstance(uri, str) and uri.strip():
        combined += f" (see {_clean(uri, redactor, 120)})"
    return err_text, desc_text, combined


def _request_hint(request: TokenRequest, status: int, error: str, description: str,
                  headers: httpx.Headers) -> str | None:
    """The likely cause on our side of a refused request, if there is one."""
    sent_json = request.request_format == "json"
    text = f"{error} {description}".lower()
    grant_type = _clean(str(request.body.get("grant_type", "")), _Redactor([]), 40)
    challenge = headers.get("www-authenticate", "")
    if status == 401 and re.search(r"\bbasic\b", challenge, re.IGNORECASE):
        if error == "invalid_client":
            return ("check client_id and client_secret; if they are right, the server probably wants them in "
                    "an HTTP Basic Authorization header (client_secret_basic), which Cellosign does not send: "
                    "the endpoint must accept the credentials in the request body")
        return ("the server wants the client credentials in an HTTP Basic Authorization header "
                "(client_secret_basic); Cellosign sends them only in the request body, so the endpoint "
                "must accept credentials in the body")
    if sent_json and (
        "aadsts900144" in text
        or "missing form parameter" in text
        or "must contain the following parameter" in text
        or re.search(r"\b(missing|required)\b.*\bgrant_type\b|\bgrant_type\b.*\b(missing|required)\b", text)
        or status == 415
    ):
        return _FORM_HINT
    if status == 415 and not sent_json:
        return ("the server does not take form-encoded bodies: remove request_format: form "
                "(Cellosign sends JSON by default)")
    if error == "unsupported_grant_type":
        if sent_json:
            return f"{_FORM_HINT} (or grant_type {_q(grant_type)} is not enabled on this server)"
        return f"grant_type {_q(grant_type)} is not supported by this server"
    if error == "invalid_request" and sent_json:
        return f"{_FORM_HINT} (or a required parameter is missing)"
    if error == "invalid_scope":
        scope = _clean(str(request.body.get("scope", "")), _Redactor([]), 120)
        if "username" in request.body:
            return (f"the scope is sent as {_q(scope)}: for the general convention Cellosign writes the "
                    "scope list as a one-element tuple, e.g. ('read,write',); the endpoint must accept "
                    "that text")
        return (f"the scope is sent as {_q(scope)}; Microsoft identity client-credentials flows need "
                "exactly one scope ending in /.default, e.g. https://graph.microsoft.com/.default")
    if error == "invalid_client":
        return "check client_id and client_secret (and that the client may send its secret in the body)"
    if error == "invalid_grant":
        return "check the user name and password, and that this account may use the grant"
    if error == "unauthorized_client":
        return f"the client is not allowed to use grant_type {_q(grant_type)}"
    if status == 401:
        return "check the credentials"
    if status in (404, 405):
        return "check url: it must be the token endpoint itself, which accepts POST"
    return None


def _judge(answer: _Answer, request: TokenRequest, redactor: _Redactor) -> _Outcome:
    status = answer.status
    raw_ct = answer.headers.get("content-type")
    content_type = _clean(raw_ct, redactor, 100) if raw_ct is not None else None
    ct = content_type or ""
    reason = _clean(answer.reason, redactor, 60)
    label = f"HTTP {status} {reason}".rstrip()
    hint: str | None

    def outcome(kind: str, message: str, hint: str | None = None, **kw: Any) -> _Outcome:
        return _Outcome(kind, message, hint=hint, status=status, content_type=content_type, **kw)

    if 300 <= status < 400:
        location = answer.headers.get("location")
        if location is None:
            return outcome("redirect", f"{label}: a redirect without a Location header; redirects are never "
                           "followed", hint="check url: it must be the token endpoint itself")
        loc = _clean(location, redactor, 200)
        hint = f"if {loc} is the real token endpoint, use it as url"
        if request.url.startswith("http://") and location.startswith("https://"):
            hint = f"the endpoint moved to https: use {loc} as url"
        return outcome("redirect", f"{label}: redirect to {loc}; redirects are never followed, "
                       "so the credentials were not sent there", hint=hint)

    is_json, parsed = _parse_json(answer.body)
    body_text = answer.body.decode("utf-8", errors="replace")
    hidden = _hidden_tokens(parsed if is_json else _form_members(body_text))
    scrub = redactor.extended(hidden)

    def describe_body() -> str:
        if not answer.body.strip():
            return "an empty body"
        if is_json:
            if isinstance(parsed, dict):
                found = _message_member(parsed)
                if found is not None:
                    return f"JSON with {found[0]} {_q(_clean(_text_of(found[1]), scrub, _MESSAGE_LIMIT))}"
                names = ", ".join(_clean(k, scrub, 40) for k in list(parsed)[:10])
                return f"a JSON object with members: {names}" if names else "an empty JSON object"
            return f"JSON {_q(_clean(_text_of(parsed), scrub, _SNIPPET_LIMIT))}"
        if _looks_html(body_text, ct):
            return f"an HTML page, not JSON: {_q(_clean(_html_summary(body_text), scrub, _SNIPPET_LIMIT))}"
        keys = _form_keys(body_text, ct)
        if keys is not None:
            names = ", ".join(_clean(k, scrub, 40) for k in keys[:10])
            return f"not JSON: it looks form-encoded (key=value&...; members {names})"
        return f"not JSON: {_q(_clean(body_text, scrub, _SNIPPET_LIMIT))}"

    ct_note = f" (content-type {content_type})" if content_type else " (no content-type)"

    # ------------------------------------------------------------ errors
    error_member = parsed.get("error") if isinstance(parsed, dict) else None
    has_error = error_member not in (None, False, "", [], {})
    if not 200 <= status < 300 or has_error:
        challenge = answer.headers.get("www-authenticate")
        if has_error and isinstance(parsed, dict):
            err, desc, combined = _error_text(parsed, scrub)
            if 200 <= status < 300:
                message = f"{label}, but the answer is an error, not a token: {combined}"
            else:
                message = f"{label}: the token endpoint refused the request: {combined}"
            if challenge:
                message += f"; WWW-Authenticate: {_clean(challenge, scrub, 120)}"
            hint = _request_hint(request, status, err if isinstance(error_member, str) else "", desc,
                                 answer.headers)
            return outcome("oauth_error", message, hint, hidden=hidden)
        message = f"{label}{ct_note}: {describe_body()}"
        if challenge:
            message += f"; WWW-Authenticate: {_clean(challenge, scrub, 120)}"
        hint = _request_hint(request, status, "", _clean(body_text, scrub, 400), answer.headers)
        if hint is None and not is_json and _looks_html(body_text, ct):
            hint = ("an HTML page usually comes from a proxy, gateway, firewall or login page in front of "
                    "the token endpoint, not from the endpoint itself: check url and the network path")
        if status == 429:
            wait = answer.headers.get("retry-after")
            message += (f"; Retry-After: {_clean(wait, scrub, 40)}" if wait else "")
            return outcome("rate_limited", f"rate limited: {message}",
                           "the endpoint limits requests; try again later", hidden=hidden)
        return outcome("http_error", message, hint, hidden=hidden)

    # ------------------------------------------------------------ 2xx
    warnings: list[str] = []
    if status != 200:
        warnings.append(f"the answer is {label}, not HTTP 200")
    if not is_json:
        hint = None
        if _looks_html(body_text, ct):
            hint = ("an HTML page usually comes from a proxy, a login page or a wrong url, "
                    "not from a token endpoint")
        elif _form_keys(body_text, ct) is not None:
            hint = ("Cellosign reads only a JSON token answer; this endpoint answers form-encoded "
                    "even though the request says Accept: application/json")
        return outcome("not_json", f"{label}{ct_note}: the answer is {describe_body()}",
                       hint, hidden=hidden)
    if not isinstance(parsed, dict):
        kind_name = type(parsed).__name__.replace("dict", "object").replace("list", "array")
        return outcome("not_json_object", f"{label}: the answer is JSON but not an object ({kind_name}); "
                       "Cellosign needs an object with access_token and expires_in", hidden=hidden)
    if "json" not in ct.lower():
        warnings.append(f"the answer is JSON but its content-type is {content_type or 'missing'}, "
                        "not application/json")

    token = parsed.get("access_token")
    if "access_token" not in parsed:
        found = _message_member(parsed)
        nested = [k for k, v in parsed.items() if isinstance(v, dict) and "access_token" in v]
        if found is not None:
            message = (f"{label}: the answer has no access_token; the server says "
                       f"{_q(_clean(_text_of(found[1]), scrub, _MESSAGE_LIMIT))} ({_clean(found[0], scrub, 40)})")
        else:
            names = ", ".join(_clean(k, scrub, 40) for k in list(parsed)[:10]) or "none"
            message = f"{label}: the answer has no access_token (members: {names})"
        if nested:
            message += (f"; an access_token sits inside {_q(_clean(nested[0], scrub, 40))}, but Cellosign "
                        "reads only the top-level member")
            hidden = hidden + _hidden_tokens(parsed[nested[0]])
        return outcome("missing_access_token", message, hidden=hidden)
    problem = _token_problem(token)
    if problem is not None:
        return outcome("invalid_access_token", f"{label}: access_token {problem}; Cellosign needs a "
                       "non-empty token string", hidden=hidden)
    assert isinstance(token, str)
    if token != token.strip():
        warnings.append("access_token has leading or trailing whitespace; it may not survive an "
                        "Authorization header")

    expires_in, expiry_problem, expiry_warnings = _expires_in(parsed)
    if expiry_problem is not None:
        kind, text = expiry_problem
        return outcome(kind, f"{label}: {text}", hidden=hidden)
    assert expires_in is not None
    warnings.extend(expiry_warnings)

    token_type = parsed.get("token_type")
    if token_type is not None and (not isinstance(token_type, str) or token_type.strip().lower() != "bearer"):
        warnings.append(f"token_type is {_q(_clean(_text_of(token_type), scrub, 40))}, not Bearer; "
                        "Cellosign sends the token as a Bearer token")

    return outcome("ok", f"{label}: the endpoint returned a usable token (expires_in {expires_in} s)",
                   expires_in=expires_in, warnings=warnings, hidden=hidden, token=token.strip())


def _token_problem(token: Any) -> str | None:
    if token is None:
        return "is null"
    if isinstance(token, bool) or not isinstance(token, str):
        return f"is a JSON {type(token).__name__.replace('dict', 'object').replace('list', 'array')}, not a string"
    if token == "":
        return "is empty"
    if not token.strip():
        return "is blank (only whitespace)"
    if token.strip().lower() in _PLACEHOLDER_TOKENS:
        return f"is the text {_q(token.strip()[:10])}, a placeholder rather than a token"
    if any(unicodedata.category(ch) == "Cc" for ch in token):
        return "contains line breaks or control characters and cannot be sent in an Authorization header"
    return None


_INT_TEXT = re.compile(r"[+]?[0-9]{1,18}")
_DECIMAL_TEXT = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _expires_in(parsed: Mapping[str, Any]) -> tuple[int | None, tuple[str, str] | None, list[str]]:
    """(seconds, (kind, problem) or None, warnings) for the expires_in member."""
    need = "Cellosign needs a positive number of seconds"
    if "expires_in" not in parsed:
        return None, ("missing_expires_in", f"expires_in is missing; {need} to know when to ask again"), []
    value = parsed["expires_in"]
    warnings: list[str] = []
    if value is None:
        return None, ("missing_expires_in", f"expires_in is missing (null); {need}"), []
    if isinstance(value, bool):
        return None, ("invalid_expires_in", f"expires_in is a boolean ({_text_of(value)}), not a number; {need}"), []
    number: float | int
    if isinstance(value, str):
        shown = _q(_normalize(value)[:30])
        text = value.strip()
        if _INT_TEXT.fullmatch(text):
            number = int(text)
        elif _DECIMAL_TEXT.fullmatch(text):
            number = float(text)
        else:
            problem = f"expires_in is the string {shown}, not a number of seconds; {need}"
            return None, ("invalid_expires_in", problem), []
        if number > 0:
            warnings.append(f"expires_in is a string ({shown}), not a JSON number; it is read as "
                            f"{max(int(number), 0)} seconds, but a strict client may reject it")
    elif isinstance(value, (int, float)):
        number = value
    else:
        kind_name = type(value).__name__.replace("dict", "object").replace("list", "array")
        return None, ("invalid_expires_in", f"expires_in is a JSON {kind_name}, not a number; {need}"), []
    if isinstance(number, float):
        if not math.isfinite(number):
            return None, ("invalid_expires_in", f"expires_in is not a finite number; {need}"), []
        if number <= 0:
            return None, ("invalid_expires_in", f"expires_in is {number:g}; {need}"), []
        if number < 1:
            return None, ("invalid_expires_in", f"expires_in is {number:g}, less than one second; {need}"), []
        if not isinstance(value, str):
            warnings.append(f"expires_in is not a whole number ({number!r}); it is read as {int(number)} seconds")
        seconds = int(number)
    else:
        if number <= 0:
            return None, ("invalid_expires_in",
                          f"expires_in is {number}: the token would be expired on arrival; {need}"), []
        seconds = number
    if seconds > MAX_PLAUSIBLE_EXPIRES_IN:
        days = seconds // 86400
        if 1_000_000_000 <= seconds <= 100_000_000_000:
            warnings.append(f"expires_in is {seconds}, which looks like a Unix timestamp rather than a lifetime "
                            "in seconds; Cellosign reads it as seconds from now (more than a year)")
        else:
            warnings.append(f"expires_in is {seconds} seconds (about {days} days, more than a year); Cellosign "
                            "keeps using a token until it expires, so check that this is seconds")
    return seconds, None, warnings
