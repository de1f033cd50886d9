"""Hostile endpoints beyond the shared cases: trickling, endless bodies, resets
mid-answer and redirects elsewhere. Each exchange ends within the configured
time, and credentials (or the Bearer token) reach nothing but the declared URL."""

from __future__ import annotations

import json
import time
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from resources import tokentest
from resources.conventions import CONVENTIONS, GENERAL
from resources.delivery import DeliveryResult, send_test_delivery
from resources.tokentest import TokenRequest, TokenTestResult, run_token_test
from tests.reliability import servers
from tests.reliability.servers import RawServer

PASSWORD = "CANARY-rel/pw&=ü\"9"
TOKEN = "CANARY-bearer-5f0e9a"
CONNECT, READ = 0.5, 1.5
TOTAL = CONNECT + READ
SLACK = 1.5  # scheduling on a busy 2-core machine


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    tokentest.close_clients()
    yield
    tokentest.close_clients()


def credential_forms(value: str) -> list[bytes]:
    forms = {value, json.dumps(value)[1:-1], json.dumps(value, ensure_ascii=False)[1:-1],
             urllib.parse.quote(value, safe=""), urllib.parse.quote_plus(value)}
    return [f.encode("utf-8") for f in forms]


def leaks_outside(declared: RawServer, value: str, *others: RawServer) -> list[str]:
    """Where a credential went other than the declared URL (server and path)."""
    found = []
    for srv in (declared, *others):
        for seen in srv.seen:
            if srv is declared and seen.path == declared.path:
                continue
            if any(form in seen.raw for form in credential_forms(value)):
                found.append(f"{seen.where}{seen.path}")
    return found


def request_for(url: str, ca_bundle: str | None = None) -> TokenRequest:
    body = CONVENTIONS[GENERAL].wire_body(identity="alice", secret=PASSWORD, grant_type="password", scopes=["read"])
    return TokenRequest(url=url, body=body, secret_values=(PASSWORD,), connect_timeout=CONNECT,
                        read_timeout=READ, ca_bundle=ca_bundle)


def result_text(result: TokenTestResult | DeliveryResult) -> str:
    if isinstance(result, TokenTestResult):
        return json.dumps(result.to_json(), ensure_ascii=False)
    return f"{result.kind} {result.message}"


def record(record_property: Any, *, leaked: list[str], took: float, bound: float) -> None:
    record_property("leaked", leaked)
    record_property("lost", [f"took {took:.1f} s, more than {bound:.1f} s"] if took > bound else [])


# --------------------------------------------------------------------------- token endpoint

RETRY_BOUND = 2 * TOTAL + tokentest.RETRY_DELAY_S + SLACK

CASES: dict[str, tuple[servers.Behaviour, set[str], int, float]] = {
    # name: (behaviour, acceptable kinds, requests the declared URL may get, time bound)
    "trickle-every-byte": (servers.trickle(0.2), {"timeout"}, 1, TOTAL + SLACK),
    "endless-body-slow": (servers.endless_body(0.05), {"timeout"}, 1, TOTAL + SLACK),
    "endless-chunked-body": (servers.endless_body(0.05, b"ab", chunked=True), {"timeout"}, 1, TOTAL + SLACK),
    "endless-body-flood": (servers.endless_body(0.001, b"x" * 4096), {"response_too_large"}, 1, TOTAL + SLACK),
    "reset-mid-body": (servers.reset_mid_answer, {"protocol_error"}, 1, TOTAL + SLACK),
    "reset-mid-headers": (servers.reset_mid_headers, {"connection_failed", "protocol_error"}, 2, RETRY_BOUND),
    "reset-before-answer": (servers.reset_before_answer, {"connection_failed"}, 2, RETRY_BOUND),
}


@pytest.mark.parametrize("name", list(CASES))
def test_token_endpoint_misbehaving_ends_in_time(name: str, record_property: Any) -> None:
    behaviour, kinds, max_requests, bound = CASES[name]
    with RawServer(behaviour) as srv:
        started = time.monotonic()
        result = run_token_test("hostile", request_for(srv.url))
        took = time.monotonic() - started
    leaked = leaks_outside(srv, PASSWORD)
    leaked += [f"result of {name}"] if PASSWORD in result_text(result) else []
    record(record_property, leaked=leaked, took=took, bound=bound)
    assert result.kind in kinds, result.to_json()
    assert took <= bound, f"{name}: {took:.2f} s > {bound:.2f} s"
    assert 1 <= len(srv.seen) <= max_requests
    assert all(seen.path == srv.path for seen in srv.seen)
    assert not leaked


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("target", ["other-host", "plain-http", "relative"])
def test_token_endpoint_redirect_is_never_followed(status: int, target: str, record_property: Any) -> None:
    # The declared endpoint speaks https (a private CA trusted through ca_bundle) on 127.0.0.1;
    # the sink is another host (127.0.0.2), reached over plain http.
    with RawServer(servers.ok, host="127.0.0.2") as sink, \
            RawServer(servers.ok, tls=True) as declared:
        location = {"other-host": sink.url, "plain-http": f"http://127.0.0.1:{sink.port}/oauth2/token",
                    "relative": "/elsewhere/token"}[target]
        declared.behaviour = servers.redirect(location, status)
        started = time.monotonic()
        result = run_token_test("hostile", request_for(declared.url, ca_bundle=declared.ca_bundle))
        took = time.monotonic() - started
    leaked = leaks_outside(declared, PASSWORD, sink) + [s.where for s in sink.seen]
    record(record_property, leaked=leaked, took=took, bound=TOTAL + SLACK)
    assert result.kind == "redirect", result.to_json()
    assert result.status == status and location in result.message
    assert sink.seen == [], "a request reached the redirect target"
    assert len(declared.seen) == 1 and declared.seen[0].path == declared.path
    assert not leaked


# --------------------------------------------------------------------------- webhook test delivery

DELIVERY_CASES: dict[str, tuple[servers.Behaviour, set[str]]] = {
    "trickle-every-byte": (servers.trickle(0.2), {"timeout"}),
    "endless-body-slow": (servers.endless_body(0.05), {"ok", "timeout"}),
    "endless-chunked-body": (servers.endless_body(0.05, b"ab", chunked=True), {"ok", "timeout"}),
    "reset-mid-body": (servers.reset_mid_answer, {"connection_failed", "ok"}),
    "reset-before-answer": (servers.reset_before_answer, {"connection_failed"}),
}


def deliver(url: str, ca_bundle: str | None = None) -> tuple[DeliveryResult, float]:
    started = time.monotonic()
    result = send_test_delivery("hostile-hook", url, TOKEN, events=["document.signed"],
                                ca_bundle=ca_bundle, connect_timeout=CONNECT, read_timeout=READ)
    return result, time.monotonic() - started


@pytest.mark.parametrize("name", list(DELIVERY_CASES))
def test_webhook_target_misbehaving_ends_in_time(name: str, record_property: Any) -> None:
    behaviour, kinds = DELIVERY_CASES[name]
    with RawServer(behaviour, path="/hooks/cellosign") as target:
        result, took = deliver(target.url)
    leaked = leaks_outside(target, TOKEN) + ([f"result of {name}"] if TOKEN in result_text(result) else [])
    record(record_property, leaked=leaked, took=took, bound=TOTAL + SLACK)
    assert result.kind in kinds, result
    assert took <= TOTAL + SLACK, f"{name}: {took:.2f} s"
    assert len(target.seen) == 1
    assert not leaked


@pytest.mark.parametrize("target", ["other-host", "plain-http"])
def test_webhook_redirect_never_carries_the_token_elsewhere(target: str, record_property: Any) -> None:
    with RawServer(servers.ok, host="127.0.0.2", path="/hooks/cellosign") as sink, \
            RawServer(servers.ok, tls=True, path="/hooks/cellosign") as declared:
        location = sink.url if target == "other-host" else f"http://127.0.0.1:{sink.port}/hooks/cellosign"
        declared.behaviour = servers.redirect(location, 307)
        result, took = deliver(declared.url, ca_bundle=declared.ca_bundle)
    leaked = leaks_outside(declared, TOKEN, sink) + [s.where for s in sink.seen]
    record(record_property, leaked=leaked, took=took, bound=TOTAL + SLACK)
    assert result.kind == "redirect" and not result.ok
    assert sink.seen == [] and len(declared.seen) == 1
    assert TOKEN not in result.message
    assert not leaked
