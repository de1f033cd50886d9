"""Unit tests of the live token test against real HTTP servers on 127.0.0.1."""

from __future__ import annotations

import json
import pickle
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resources import tokentest
from resources.conventions import CONVENTIONS, GENERAL, MSGRAPH
from resources.tokentest import TokenRequest, TokenTestResult, run_token_test
from tests.replay_server import ReplayServer

PASSWORD = "pw-Canary-93&x=1"
CLIENT_SECRET = "cs~Canary.5521"
TOKEN = "at-unit-0f9e8d7c6b5a"
OK_BODY = '{"access_token":"<AT>","token_type":"Bearer","expires_in":3600}'
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tokentest, "RETRY_DELAY_S", 0.05)
    tokentest.close_clients()
    yield
    tokentest.close_clients()


def general_request(url: str, **kwargs: Any) -> TokenRequest:
    body = CONVENTIONS[GENERAL].wire_body(identity="alice", secret=PASSWORD, grant_type="password",
                                          scopes=["read", "write"])
    kwargs.setdefault("connect_timeout", 2.0)
    kwargs.setdefault("read_timeout", 3.0)
    return TokenRequest(url=url, body=body, secret_values=(PASSWORD,), **kwargs)


def msgraph_request(url: str, **kwargs: Any) -> TokenRequest:
    body = CONVENTIONS[MSGRAPH].wire_body(identity="8e17edb9-0f05-46cc-8741-a937e351e631", secret=CLIENT_SECRET,
                                          grant_type="password", scopes=["read", "write"])
    kwargs.setdefault("connect_timeout", 2.0)
    kwargs.setdefault("read_timeout", 3.0)
    return TokenRequest(url=url, body=body, secret_values=(CLIENT_SECRET,), **kwargs)


def answer(spec: dict[str, Any], request_for: Any = general_request, **kwargs: Any) -> tuple[TokenTestResult,
                                                                                              ReplayServer]:
    with ReplayServer(spec, access_token=TOKEN) as srv:
        result = run_token_test("unit", request_for(srv.url, **kwargs))
    assert_clean(result)
    return result, srv


def assert_clean(result: TokenTestResult) -> None:
    dumped = json.dumps(result.to_json(), ensure_ascii=False)
    for secret in (PASSWORD, CLIENT_SECRET, TOKEN, urllib.parse.quote_plus(PASSWORD)):
        assert secret not in dumped, dumped


def all_text(result: TokenTestResult) -> str:
    return " ".join([result.message, result.hint or "", *result.warnings])


# --------------------------------------------------------------------------- the wire request


def test_general_json_body_is_exactly_what_cellosign_sends() -> None:
    result, srv = answer({"body": OK_BODY})
    assert result.ok, result.to_json()
    (req,) = srv.requests
    assert req.method == "POST" and req.path == "/token"
    assert req.body == (
        b'{"username": "alice", "password": "pw-Canary-93&x=1", "grant_type": "password", '
        b'"scope": "(\'read,write\',)"}'
    )
    assert req.members() == [("username", "alice"), ("password", PASSWORD), ("grant_type", "password"),
                             ("scope", "('read,write',)")]
    assert req.header("content-type") == "application/json"
    assert req.header("accept") == "application/json"
    assert req.header("content-length") == str(len(req.body))
    assert req.header_all("authorization") == []
    assert req.header_all("cookie") == []


def test_msgraph_json_body_is_exactly_what_cellosign_sends() -> None:
    result, srv = answer({"body": OK_BODY}, msgraph_request)
    assert result.ok, result.to_json()
    (req,) = srv.requests
    assert req.body == (
        b'{"client_id": "8e17edb9-0f05-46cc-8741-a937e351e631", "client_secret": "cs~Canary.5521", '
        b'"scope": "read,write", "grant_type": "password"}'
    )
    assert [k for k, _ in req.members()] == ["client_id", "client_secret", "scope", "grant_type"]
    assert req.header_all("authorization") == []


def test_form_bodies_keep_members_order_and_values() -> None:
    result, srv = answer({"body": OK_BODY}, request_format="form")
    assert result.ok
    (req,) = srv.requests
    assert req.header("content-type") == "application/x-www-form-urlencoded"
    assert req.header("accept") == "application/json"
    assert req.header_all("authorization") == []
    assert req.body == (b"username=alice&password=pw-Canary-93%26x%3D1&grant_type=password"
                        b"&scope=%28%27read%2Cwrite%27%2C%29")
    assert req.members() == [("username", "alice"), ("password", PASSWORD), ("grant_type", "password"),
                             ("scope", "('read,write',)")]

    result, srv = answer({"body": OK_BODY}, msgraph_request, request_format="form")
    assert result.ok
    (req,) = srv.requests
    assert req.body == (b"client_id=8e17edb9-0f05-46cc-8741-a937e351e631&client_secret=cs~Canary.5521"
                        b"&scope=read%2Cwrite&grant_type=password")


def test_non_ascii_password_travels_exactly() -> None:
    password = 'p&ss=w%rd+1 "q"\\ é @x'
    body = CONVENTIONS[GENERAL].wire_body(identity="alice", secret=password, grant_type="password", scopes=["a"])
    with ReplayServer({"body": OK_BODY, "expects_exact_password": True}, declared_password=password) as srv:
        for fmt in ("json", "form"):
            result = run_token_test("unit", TokenRequest(url=srv.url, body=body, secret_values=(password,),
                                                         request_format=fmt))
            assert result.ok, result.to_json()
    assert json.loads(srv.requests[0].body)["password"] == password


# --------------------------------------------------------------------------- redirects, size, time


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirect_is_reported_and_never_followed(status: int) -> None:
    with ReplayServer({"body": OK_BODY}) as elsewhere:
        target = elsewhere.url
        result, srv = answer({"status": status, "headers": {"Location": target}, "body": ""})
    assert not result.ok
    assert result.kind == "redirect"
    assert result.status == status
    assert target in result.message
    assert elsewhere.requests == [], "the credentials went to the redirect target"
    assert len(srv.requests) == 1


@pytest.mark.parametrize("spec", [
    {"body_size": 200_000},
    {"body_size": 200_000, "no_content_length": True},
], ids=["content-length", "until-close"])
def test_large_body_is_bounded(spec: dict[str, Any]) -> None:
    result, _ = answer(spec)
    assert result.kind == "response_too_large"
    assert "65536" in result.message


def test_body_at_the_limit_is_read() -> None:
    body = '{"access_token":"<AT>","expires_in":3600,"pad":"' + "x" * 100 + '"}'
    result, _ = answer({"body": body}, max_body_bytes=len(body.replace("<AT>", TOKEN)))
    assert result.ok, result.to_json()
    result, _ = answer({"body": body}, max_body_bytes=len(body.replace("<AT>", TOKEN)) - 1)
    assert result.kind == "response_too_large"


def test_trickling_body_ends_at_the_total_deadline() -> None:
    # One byte every 1.9 s never trips the 2 s read timeout, and the body (no Content-Length)
    # would take 15 s; only the total deadline (connect 0.1 + read 2.0 = 2.1 s) ends it in time.
    # A check between chunks alone would end at the third byte (3.8 s).
    started = time.monotonic()
    result, _ = answer({"body_size": 8, "trickle_s": 1.9, "no_content_length": True},
                       connect_timeout=0.1, read_timeout=2.0)
    took = time.monotonic() - started
    assert result.kind == "timeout", result.to_json()
    assert "2.1 s" in result.message
    assert took < 3.2, f"took {took:.2f} s"


def test_trickling_headers_end_at_the_total_deadline() -> None:
    # The status line and headers arrive one byte every 0.3 s (about 25 s in all).
    started = time.monotonic()
    result, _ = answer({"body": OK_BODY, "trickle_headers_s": 0.3}, connect_timeout=0.1, read_timeout=1.0)
    took = time.monotonic() - started
    assert result.kind == "timeout", result.to_json()
    assert took < 2.5, f"took {took:.2f} s"


def test_slow_but_complete_answer_is_accepted() -> None:
    result, _ = answer({"body": OK_BODY, "trickle_s": 0.005})
    assert result.ok, result.to_json()


def test_hanging_endpoint_times_out_at_read_timeout() -> None:
    started = time.monotonic()
    result, _ = answer({"delay_s": 60, "body": OK_BODY}, read_timeout=0.5)
    assert result.kind == "timeout"
    assert "0.5 s" in result.message and "timeout" in result.message
    assert time.monotonic() - started < 2.0


# --------------------------------------------------------------------------- retries


def test_retry_once_on_503_then_success() -> None:
    result, srv = answer({"sequence": [{"status": 503, "body": "busy", "content_type": "text/plain"},
                                       {"body": OK_BODY}]})
    assert result.ok, result.to_json()
    assert len(srv.requests) == 2
    assert any("503" in w for w in result.warnings)


def test_two_5xx_give_up_after_one_retry() -> None:
    result, srv = answer({"status": 500, "body": '{"detail":"boom"}'})
    assert result.kind == "http_error"
    assert len(srv.requests) == 2
    assert "500" in result.message and "boom" in result.message


def test_no_retry_on_400() -> None:
    result, srv = answer({"status": 400, "body": '{"error":"invalid_grant","error_description":"bad"}'})
    assert result.kind == "oauth_error"
    assert len(srv.requests) == 1


def test_429_with_short_retry_after_is_retried_after_waiting() -> None:
    started = time.monotonic()
    result, srv = answer({"sequence": [{"status": 429, "headers": {"Retry-After": "1"}, "body": ""},
                                       {"body": OK_BODY}]})
    assert result.ok, result.to_json()
    assert len(srv.requests) == 2
    assert time.monotonic() - started >= 1.0


def test_429_with_long_retry_after_is_not_retried() -> None:
    started = time.monotonic()
    result, srv = answer({"status": 429, "headers": {"Retry-After": "30"}, "body": ""})
    assert result.kind == "rate_limited"
    assert "Retry-After: 30" in result.message
    assert len(srv.requests) == 1
    assert time.monotonic() - started < 1.0


def test_5xx_with_long_retry_after_is_not_retried() -> None:
    result, srv = answer({"status": 503, "headers": {"Retry-After": "120"}, "body": ""})
    assert result.kind == "http_error"
    assert len(srv.requests) == 1


def test_connection_closed_without_answer_is_retried_once() -> None:
    result, srv = answer({"sequence": [{"close_without_answer": True}, {"body": OK_BODY}]})
    assert result.ok, result.to_json()
    assert len(srv.requests) == 2
    assert result.warnings


def test_connection_refused() -> None:
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
    try:
        port = holder.getsockname()[1]
        result = run_token_test("unit", general_request(f"http://127.0.0.1:{port}/token"))
    finally:
        holder.close()
    assert result.kind == "connection_failed"
    assert "refused" in result.message and str(port) in result.message
    assert result.status is None
    assert_clean(result)


# --------------------------------------------------------------------------- judging the answer


@pytest.mark.parametrize("value, kind", [
    ("true", "invalid_expires_in"),
    ("false", "invalid_expires_in"),
    ("-5", "invalid_expires_in"),
    ("0", "invalid_expires_in"),
    ("0.4", "invalid_expires_in"),
    ('"abc"', "invalid_expires_in"),
    ('""', "invalid_expires_in"),
    ('"-60"', "invalid_expires_in"),
    ('"0"', "invalid_expires_in"),
    ("[3600]", "invalid_expires_in"),
    ('{"s":3600}', "invalid_expires_in"),
    ("NaN", "invalid_expires_in"),
    ("null", "missing_expires_in"),
])
def test_unusable_expires_in_is_rejected(value: str, kind: str) -> None:
    result, _ = answer({"body": '{"access_token":"<AT>","expires_in":' + value + "}"})
    assert not result.ok
    assert result.kind == kind, result.to_json()
    assert "expires_in" in result.message
    assert result.expires_in is None


@pytest.mark.parametrize("value, seconds, warned", [
    ("3600", 3600, None),
    ('"3600"', 3600, "string"),
    ('" 120 "', 120, "string"),
    ("3599.87", 3599, "whole number"),
    ("3600.0", 3600, "whole number"),
])
def test_usable_expires_in(value: str, seconds: int, warned: str | None) -> None:
    result, _ = answer({"body": '{"access_token":"<AT>","expires_in":' + value + "}"})
    assert result.ok, result.to_json()
    assert result.expires_in == seconds
    if warned is None:
        assert result.warnings == ()
    else:
        assert any(warned in w and "expires_in" in w for w in result.warnings), result.warnings


def test_long_lifetime_gets_a_warning() -> None:
    result, _ = answer({"body": '{"access_token":"<AT>","expires_in":40000000}'})
    assert result.ok and result.expires_in == 40_000_000
    assert any("year" in w and "expires_in" in w for w in result.warnings), result.warnings
    result, _ = answer({"body": '{"access_token":"<AT>","expires_in":1700000000}'})
    assert result.ok
    assert any("timestamp" in w for w in result.warnings), result.warnings
    exactly_a_year = tokentest.MAX_PLAUSIBLE_EXPIRES_IN
    result, _ = answer({"body": f'{{"access_token":"<AT>","expires_in":{exactly_a_year}}}'})
    assert result.ok and result.warnings == ()


@pytest.mark.parametrize("value", ['""', '"   "', '"null"', '"None"', '"undefined"', "null", "123", "true",
                                   '{"v":"x"}', '"ab\\ncd"'])
def test_unusable_access_token_is_rejected(value: str) -> None:
    result, _ = answer({"body": '{"access_token":' + value + ',"expires_in":3600}'})
    assert result.kind == "invalid_access_token", result.to_json()
    assert "access_token" in result.message


def test_missing_access_token_quotes_the_servers_message() -> None:
    result, _ = answer({"body": '{"status":"fail","detail":"account locked"}'})
    assert result.kind == "missing_access_token"
    assert "access_token" in result.message and "account locked" in result.message


def test_nested_access_token_is_pointed_out_but_not_shown() -> None:
    result, _ = answer({"body": '{"data":{"access_token":"<AT>","expires_in":3600}}'})
    assert result.kind == "missing_access_token"
    assert '"data"' in result.message


def test_error_member_with_200_wins_over_a_token() -> None:
    result, _ = answer({"body": '{"access_token":"<AT>","expires_in":3600,"error":"invalid_grant",'
                                '"error_description":"user disabled"}'})
    assert result.kind == "oauth_error"
    assert "invalid_grant" in result.message and "user disabled" in result.message


def test_non_bearer_token_type_and_wrong_content_type_warn() -> None:
    result, _ = answer({"content_type": "text/plain",
                        "body": '{"access_token":"<AT>","expires_in":60,"token_type":"mac"}'})
    assert result.ok
    assert any("token_type" in w for w in result.warnings)
    assert any("content-type" in w and "text/plain" in w for w in result.warnings)


def test_html_login_page_with_200_is_not_json() -> None:
    result, _ = answer({"content_type": "text/html; charset=utf-8",
                        "body": "<!DOCTYPE html><html><head><title>Sign in</title></head><body>x</body></html>"})
    assert result.kind == "not_json"
    assert "HTML" in result.message and "Sign in" in result.message
    assert result.content_type == "text/html; charset=utf-8"


def test_json_that_is_not_an_object() -> None:
    result, _ = answer({"body": '["<AT>", 3600]'})
    assert result.kind == "not_json_object"
    result, _ = answer({"body": ""})
    assert result.kind == "not_json" and "empty" in result.message


def test_form_encoded_success_never_shows_the_token() -> None:
    result, _ = answer({"content_type": "application/x-www-form-urlencoded",
                        "body": "access_token=<AT>&token_type=bearer&expires_in=3600"})
    assert result.kind == "not_json"
    assert "form" in result.message and "access_token" in result.message


def test_plain_text_error_snippet_is_sanitized_and_capped() -> None:
    noisy = "fail\x1b[31m red\x00 \u202e" + PASSWORD + " access_token=<AT> " + "y" * 1000
    result, _ = answer({"status": 500, "content_type": "text/plain", "body": noisy})
    assert result.kind == "http_error"
    assert "\x1b" not in result.message and "\x00" not in result.message and "\u202e" not in result.message
    assert "[redacted]" in result.message
    assert len(result.message) < 400


def test_secret_echoed_json_escaped_is_redacted() -> None:
    password = 'a"b\\c/é'
    body = CONVENTIONS[GENERAL].wire_body(identity="u", secret=password, grant_type="password", scopes=["s"])
    echoed = json.dumps({"error": "invalid_grant", "error_description": f"wrong {password}"}, ensure_ascii=True)
    with ReplayServer({"status": 400, "body": echoed}) as srv:
        result = run_token_test("unit", TokenRequest(url=srv.url, body=body, secret_values=(password,)))
    assert result.kind == "oauth_error"
    assert "wrong [redacted]" in result.message
    assert password not in json.dumps(result.to_json(), ensure_ascii=False)


@pytest.mark.parametrize("error, description, sent, hinted", [
    ("invalid_request", "AADSTS900144: must contain grant_type", "json", "request_format: form"),
    ("unsupported_grant_type", "", "json", "request_format: form"),
    ("unsupported_grant_type", "", "form", "not supported"),
    ("invalid_scope", "", "json", "('read,write',)"),
    ("invalid_client", "", "json", "client_secret"),
])
def test_hints_point_at_the_likely_cause(error: str, description: str, sent: str, hinted: str) -> None:
    body = json.dumps({"error": error, "error_description": description})
    result, _ = answer({"status": 400, "body": body}, request_format=sent)
    assert result.kind == "oauth_error"
    assert hinted in (result.hint or ""), result.hint
    if sent == "form":
        assert "request_format: form" not in (result.hint or "")


def test_basic_auth_challenge_gets_a_hint() -> None:
    result, _ = answer({"status": 401, "headers": {"WWW-Authenticate": 'Basic realm="x"'}, "body": ""})
    assert result.kind == "http_error" and result.status == 401
    assert "Basic" in result.message and "Basic" in (result.hint or "")


# --------------------------------------------------------------------------- configuration


def test_invalid_ca_bundle_is_reported_without_sending() -> None:
    with ReplayServer({"body": OK_BODY}) as srv:
        result = run_token_test("unit", general_request(srv.url, ca_bundle="/nonexistent/ca.pem"))
        assert result.kind == "invalid_ca_bundle"
        assert "/nonexistent/ca.pem" in result.message
        assert srv.requests == []


def test_ca_bundle_that_is_not_pem(tmp_path: Path) -> None:
    bogus = tmp_path / "ca.pem"
    bogus.write_text("not a certificate")
    result = run_token_test("unit", general_request("https://127.0.0.1:9/token", ca_bundle=str(bogus)))
    assert result.kind == "invalid_ca_bundle"


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/token", "127.0.0.1/token", "", "https:///token",
                                 "http://user:pw@127.0.0.1/token", " http://127.0.0.1/token"])
def test_invalid_url(url: str) -> None:
    result = run_token_test("unit", general_request(url))
    assert result.kind == "invalid_url", result.to_json()
    assert "pw@" not in result.message


def test_credentials_in_url_userinfo_are_never_sent() -> None:
    with ReplayServer({"body": OK_BODY}) as srv:
        url = srv.url.replace("http://", "http://alice:pw@")
        result = run_token_test("unit", general_request(url))
    assert result.kind == "invalid_url"
    assert srv.requests == []


@pytest.mark.parametrize("changes", [{"request_format": "xml"}, {"read_timeout": 0}, {"connect_timeout": -1},
                                     {"max_body_bytes": 0}])
def test_bad_config(changes: dict[str, Any]) -> None:
    result = run_token_test("unit", general_request("http://127.0.0.1:9/token", **changes))
    assert result.kind == "bad_config"


def test_result_json_shape() -> None:
    result, _ = answer({"body": OK_BODY})
    data = result.to_json()
    assert set(data) == {"secret", "ok", "kind", "message", "warnings", "status", "expires_in", "content_type",
                         "hint", "tested_at", "elapsed_ms"}
    assert data["secret"] == "unit" and data["ok"] is True and data["kind"] == "ok"
    assert data["status"] == 200 and data["expires_in"] == 3600 and data["warnings"] == []
    assert data["tested_at"].endswith("Z") and len(data["tested_at"]) == 20
    json.dumps(data)  # serializable
    assert pickle.loads(pickle.dumps(result)) == result


def test_every_kind_is_documented() -> None:
    doc = (ROOT / "README.md").read_text(encoding="utf-8")
    for kind, (_meaning, ok) in tokentest.KINDS.items():
        assert f"`{kind}`" in doc, kind
        assert ok == (kind == "ok")


# --------------------------------------------------------------------------- clients and threads


def test_clients_are_created_lazily_not_at_import() -> None:
    code = "import resources.tokentest as t; assert t._clients == {}, t._clients; print('lazy')"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "lazy" in out.stdout


def test_clients_are_cached_per_ca_bundle_and_timeouts() -> None:
    with ReplayServer({"body": OK_BODY}) as srv:
        for _ in range(3):
            assert run_token_test("unit", general_request(srv.url)).ok
        assert len(tokentest._clients) == 1
        assert run_token_test("unit", general_request(srv.url, read_timeout=4.0)).ok
        assert len(tokentest._clients) == 2
    request = general_request("http://127.0.0.1:9/token")
    assert pickle.loads(pickle.dumps(request)) == request  # nothing unpicklable on the request


def test_concurrent_calls_are_independent() -> None:
    with ReplayServer({"body": OK_BODY, "trickle_s": 0.002}) as good, \
            ReplayServer({"status": 400, "body": '{"error":"invalid_grant"}'}) as bad:
        results: dict[int, TokenTestResult] = {}

        def run(i: int) -> None:
            url = good.url if i % 2 == 0 else bad.url
            results[i] = run_token_test(f"s{i}", general_request(url))

        threads = [threading.Thread(target=run, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=10)
    assert len(results) == 8
    for i, result in results.items():
        assert result.secret == f"s{i}"
        assert result.ok == (i % 2 == 0), result.to_json()
    assert len(tokentest._clients) == 1


def test_dns_failure(monkeypatch: pytest.MonkeyPatch) -> None:
    real = socket.getaddrinfo

    def fake(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "token.example.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    result = run_token_test("unit", general_request("https://token.example.invalid/oauth/token"))
    assert result.kind == "connection_failed"
    assert "resolve" in result.message and "token.example.invalid" in result.message


def test_tls_with_the_wrong_ca_bundle_names_it() -> None:
    with ReplayServer({"tls": "self-signed", "body": OK_BODY}) as one, \
            ReplayServer({"tls": "self-signed", "body": OK_BODY}) as other:
        assert other.ca_bundle is not None
        result = run_token_test("unit", general_request(one.url, ca_bundle=other.ca_bundle))
        assert result.kind == "tls_error"
        assert "certificate" in result.message and other.ca_bundle in result.message
        assert one.requests == []
        assert run_token_test("unit", general_request(one.url, ca_bundle=one.ca_bundle)).ok
