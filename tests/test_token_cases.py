"""Every real-world token endpoint behaviour of shared/cases/token-endpoints.yaml, replayed.

One test per case id: a replay server on 127.0.0.1 answers as the case says,
the live token test runs against it, and the verdict, the message and the
absence of any secret are checked.
"""

from __future__ import annotations

import json
import re
import time
import urllib.parse
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from resources import tokentest
from resources.conventions import CONVENTIONS
from resources.tokentest import TokenRequest, TokenTestResult, run_token_test
from tests.replay_server import ReplayServer

# The team's shared cases beside the clone (as in CI) when present; otherwise the copy
# taken into tests/data, so that a clone on its own still runs every case.
_SHARED_CASES = Path(__file__).resolve().parents[2] / "shared" / "cases" / "token-endpoints.yaml"
_OWN_COPY = Path(__file__).resolve().parent / "data" / "token-endpoints.yaml"
CASES_FILE = _SHARED_CASES if _SHARED_CASES.is_file() else _OWN_COPY
CANARY = "canary-pw-7Q9x!"  # the declared password unless a case declares one
ACCESS_TOKEN = "at-canary-4d1f0c9e8b7a"  # what the replay server hands out for <AT>

# The documented kind each case must end in (a new case without an entry still runs).
EXPECTED_KIND = {
    "expires-in-as-string": "ok",
    "expires-in-as-float": "ok",
    "expires-in-missing": "missing_expires_in",
    "expires-in-zero": "invalid_expires_in",
    "success-form-encoded": "not_json",
    "json-only-when-asked": "ok",
    "error-with-http-200": "oauth_error",
    "non-oauth-error-envelope-with-200": "missing_access_token",
    "token-type-lowercase-or-absent": "ok",
    "access-token-literal-null": "invalid_access_token",
    "access-token-blank": "invalid_access_token",
    "json-body-rejected-missing-grant-type": "oauth_error",
    "json-body-rejected-missing-form-parameter": "oauth_error",
    "json-body-gets-unsupported-grant-type": "oauth_error",
    "basic-auth-required-numeric-error": "oauth_error",
    "invalid-scope-verbatim": "oauth_error",
    "password-with-reserved-characters": "ok",
    "html-from-a-proxy": "http_error",
    "tls-certificate-not-trusted": "tls_error",
    "endpoint-hangs": "timeout",
}


def _load_cases() -> list[dict[str, Any]]:
    text = CASES_FILE.read_text(encoding="utf-8")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        # The shared file has free-text `seen_at:` values containing ": ", which is not
        # valid YAML. `seen_at` is documentation only: quote it and load again.
        repaired = re.sub(
            r"^(\s*seen_at:\s*)(?!['\"])(.+)$",
            lambda m: m.group(1) + "'" + m.group(2).replace("'", "''") + "'",
            text,
            flags=re.MULTILINE,
        )
        data = yaml.safe_load(repaired)
        warnings.warn(f"{CASES_FILE} is not valid YAML ({str(exc).splitlines()[0]}); "
                      "loaded it with its seen_at values quoted", stacklevel=1)
    cases = data["cases"]
    # The repair must never lose a case.
    assert len(cases) == len(re.findall(r"^\s*- id:", text, flags=re.MULTILINE))
    return list(cases)


CASES = _load_cases()


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(tokentest, "RETRY_DELAY_S", 0.05)
    tokentest.close_clients()
    yield
    tokentest.close_clients()


def _request(url: str, password: str = CANARY, **kwargs: Any) -> TokenRequest:
    body = CONVENTIONS["general"].wire_body(
        identity="alice", secret=password, grant_type="password", scopes=["read", "write"]
    )
    kwargs.setdefault("connect_timeout", 2.0)
    kwargs.setdefault("read_timeout", 3.0)
    return TokenRequest(url=url, body=body, secret_values=(password,), **kwargs)


def _assert_no_secret(result: TokenTestResult, password: str) -> None:
    dumped = json.dumps(result.to_json(), ensure_ascii=False)
    for form in {password, urllib.parse.quote_plus(password), urllib.parse.quote(password, safe=""),
                 json.dumps(password)[1:-1], ACCESS_TOKEN}:
        assert form not in dumped, f"secret or token leaked in {dumped}"


def _assert_verdict(case: Mapping[str, Any], result: TokenTestResult) -> None:
    verdict = case["verdict"]
    text = " ".join([result.message, result.hint or "", *result.warnings]).lower()
    if verdict == "accept":
        assert result.ok, result.to_json()
        assert result.kind == "ok"
        assert result.warnings == (), result.warnings
        assert result.expires_in is not None and result.expires_in > 0
    elif verdict == "accept-warn":
        assert result.ok, result.to_json()
        assert result.kind == "ok"
        assert result.warnings, "a non-standard answer must come with a warning"
    else:
        assert verdict == "reject", f"unknown verdict {verdict!r}"
        assert not result.ok, result.to_json()
        assert result.kind != "ok"
        assert result.expires_in is None
    for item in case.get("message_mentions") or []:
        assert str(item).lower() in text, f"{item!r} not in {text!r}"
    expected_kind = EXPECTED_KIND.get(case["id"])
    if expected_kind is not None:
        assert result.kind == expected_kind, result.to_json()
    assert result.kind in tokentest.KINDS
    assert result.secret == case["id"]


def test_cases_file_is_complete() -> None:
    ids = [c["id"] for c in CASES]
    assert len(ids) == len(set(ids)), "case ids must be unique"
    assert set(EXPECTED_KIND) <= set(ids), "a documented case disappeared from the shared file"
    for case in CASES:
        assert case["verdict"] in ("accept", "accept-warn", "reject"), case["id"]
        assert isinstance(case.get("server"), dict), case["id"]


@pytest.mark.parametrize("case", CASES, ids=[c["id"] for c in CASES])
def test_case(case: dict[str, Any]) -> None:
    case_id = case["id"]
    password = case.get("declared_password", CANARY)
    with ReplayServer.for_case(case, access_token=ACCESS_TOKEN) as srv:
        if case_id == "endpoint-hangs":
            started = time.monotonic()
            result = run_token_test(case_id, _request(srv.url, password, connect_timeout=1.0, read_timeout=1.0))
            took = time.monotonic() - started
            assert took < 4.0, f"took {took:.1f} s; the server waits {case['server'].get('delay_s')} s"
            assert "1 s" in result.message  # the configured read timeout is named
        else:
            result = run_token_test(case_id, _request(srv.url, password))
        _assert_verdict(case, result)
        _assert_no_secret(result, password)

        if case_id == "tls-certificate-not-trusted":
            assert srv.requests == [], "credentials must not travel over an untrusted connection"
            assert "ca_bundle" in result.message
            assert srv.ca_bundle is not None
            trusted = run_token_test(case_id, _request(srv.url, password, ca_bundle=srv.ca_bundle))
            assert trusted.ok, trusted.to_json()
            assert trusted.kind == "ok" and trusted.warnings == ()
            _assert_no_secret(trusted, password)

        else:
            assert len(srv.requests) in (1, 2), "one request, or two after a retryable failure"

        if case_id == "json-body-rejected-missing-grant-type":
            assert "request_format: form" in (result.hint or "")
            as_form = run_token_test(case_id, _request(srv.url, password, request_format="form"))
            assert as_form.ok, as_form.to_json()
            assert srv.requests[-1].content_type == "application/x-www-form-urlencoded"
            _assert_no_secret(as_form, password)

        if case_id == "password-with-reserved-characters":
            assert case["server"].get("expects_exact_password")
            assert srv.requests[-1].content_type == "application/json"
            assert dict(srv.requests[-1].members())["password"] == password
            as_form = run_token_test(case_id, _request(srv.url, password, request_format="form"))
            assert as_form.ok, as_form.to_json()
            assert as_form.warnings == ()
            assert srv.requests[-1].content_type == "application/x-www-form-urlencoded"
            assert dict(srv.requests[-1].members())["password"] == password
            # The check is real: a different password is refused by the same server.
            wrong = run_token_test(case_id, _request(srv.url, password + "x"))
            assert not wrong.ok and wrong.kind == "oauth_error"


def test_reserved_character_password_is_redacted_when_echoed() -> None:
    """A server that echoes the password (raw, URL- or JSON-encoded) never gets it into a message."""
    case = next(c for c in CASES if c["id"] == "password-with-reserved-characters")
    password = case["declared_password"]
    echoed = json.dumps({
        "error": "invalid_grant",
        "error_description": f"bad password {password} / {urllib.parse.quote_plus(password)} / "
                             f"{urllib.parse.quote(password, safe='').lower()}",
    })
    with ReplayServer({"status": 400, "body": echoed}) as srv:
        result = run_token_test("echo", _request(srv.url, password))
    assert result.kind == "oauth_error"
    assert result.message.count("[redacted]") == 3, result.message
    _assert_no_secret(result, password)
    assert urllib.parse.quote(password, safe="").lower() not in result.message
