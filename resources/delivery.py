"""The webhook test delivery: what cellosign-iac sends to a webhook target to
prove that it accepts the Bearer token obtained through the webhook's secret.

The delivery (documented in the README):

    POST <webhook url>
    Authorization: Bearer <access token from the secret's token endpoint>
    Content-Type: application/json
    X-Cellosign-Test-Delivery: 1
    <the webhook's extra headers>

    {"type": "cellosign.test_delivery", "webhook": "<name>", "events": [...], "sent_at": "<UTC>"}

A 2xx passes. Redirects are never followed (the token never travels to another
URL). The token is used for this one request and never stored or printed.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from .tokentest import _Deadline, shared_client

MAX_BODY = 4096
SNIPPET = 160


@dataclass(frozen=True)
class DeliveryResult:
    webhook: str
    ok: bool
    kind: str  # ok | refused_token | redirect | http_error | timeout | connection_failed | tls_error
    message: str
    status: int | None
    delivered_at: str


def _snippet(raw: bytes, token: str) -> str:
    text = raw[:SNIPPET].decode("utf-8", "replace").replace(token, "[token]")
    return "".join(ch if ch.isprintable() else " " for ch in text).strip()


def send_test_delivery(
    name: str,
    url: str,
    token: str,
    *,
    events: Sequence[str],
    headers: Mapping[str, str] | None = None,
    ca_bundle: str | None = None,
    connect_timeout: float = 5.0,
    read_timeout: float = 15.0,
) -> DeliveryResult:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    body = json.dumps({"type": "cellosign.test_delivery", "webhook": name, "events": list(events), "sent_at": now})
    sent_headers = {**(headers or {}), "Content-Type": "application/json", "X-Cellosign-Test-Delivery": "1",
                    "Authorization": f"Bearer {token}"}

    def result(ok: bool, kind: str, message: str, status: int | None = None) -> DeliveryResult:
        return DeliveryResult(name, ok, kind, message.replace(token, "[token]"), status, now)

    deadline = time.monotonic() + connect_timeout + read_timeout
    # Ends the exchange at connect_timeout + read_timeout even when the target trickles its
    # status line and headers (each byte within read_timeout would otherwise never time out).
    guard = _Deadline(connect_timeout + read_timeout)
    try:
        client = shared_client(ca_bundle, connect_timeout, read_timeout)
        with guard, client.stream("POST", url, content=body.encode(), headers=sent_headers,
                                  extensions={"trace": guard.trace}) as resp:
            raw = b""
            try:
                for chunk in resp.iter_bytes():
                    raw += chunk
                    if len(raw) >= MAX_BODY or time.monotonic() > deadline:
                        break
            except httpx.HTTPError:
                if not guard.fired:
                    raise  # the answer broke off on its own; cut at the deadline, it is judged by its status
            status = resp.status_code
            ctype = resp.headers.get("content-type", "(none)")
            if 200 <= status < 300:
                return result(True, "ok", f"webhook '{name}': the target accepted the test delivery (HTTP {status})",
                              status)
            if status in (401, 403):
                return result(False, "refused_token",
                              f"webhook '{name}': the target refused the token (HTTP {status}); it does not accept "
                              f"Bearer tokens issued through this secret; answer ({ctype}): {_snippet(raw, token)!r}",
                              status)
            if 300 <= status < 400:
                return result(False, "redirect",
                              f"webhook '{name}': the target answered with a redirect (HTTP {status}) to "
                              f"{resp.headers.get('location', '(no Location)')!r}; redirects are never followed: "
                              "declare the final URL", status)
            return result(False, "http_error",
                          f"webhook '{name}': the target answered HTTP {status} ({ctype}): {_snippet(raw, token)!r}",
                          status)
    except httpx.TimeoutException:
        return result(False, "timeout", f"webhook '{name}': no answer within the timeout "
                      f"(connect {connect_timeout:g} s, read {read_timeout:g} s)")
    except httpx.ConnectError as exc:
        text = str(exc)
        if "CERTIFICATE" in text.upper():
            return result(False, "tls_error", f"webhook '{name}': the target's TLS certificate is not trusted "
                          "(set ca_bundle on the secret to trust a private CA)")
        return result(False, "connection_failed", f"webhook '{name}': cannot connect to the target ({text})")
    except httpx.HTTPError as exc:
        if guard.fired:
            return result(False, "timeout", f"webhook '{name}': no complete answer within "
                          f"{connect_timeout + read_timeout:g} s (connect_timeout + read_timeout); "
                          "the target sends its answer too slowly")
        return result(False, "connection_failed", f"webhook '{name}': the delivery failed ({type(exc).__name__})")
