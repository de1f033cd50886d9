"""Interoperability: the live token test against oidc-provider, an independent OAuth2 server.

oidc-provider is the OpenID-certified OAuth2/OpenID Connect server from the
npm registry, pinned in tests/interop/package.json and installed by
``bash .ci/setup`` (which runs tests/interop/install.sh). Each test module run
starts it on 127.0.0.1 (tests/interop/oidc_server.mjs) with one client that
may use the client_credentials grant with its secret in the request body
(client_secret_post), then runs the token test the way the msgraph convention
builds the request:

1. the default JSON body (what Cellosign sends) is refused by oidc-provider,
   which reads only form-encoded token requests: a clear diagnosis that says to
   set ``request_format: form``;
2. the same request form-encoded gets a usable token;
3. a wrong client secret, form-encoded, ends with oidc-provider's own
   ``invalid_client`` quoted, and neither secret shows in the result.

Only the msgraph convention is covered: oidc-provider has no password grant,
so the general (username/password) convention cannot be tried against it.
Nothing here skips: when Node.js or the packages are missing, the tests fail
and say to run ``bash .ci/setup``.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import urllib.parse
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from resources import tokentest
from resources.conventions import CONVENTIONS
from resources.tokentest import TokenRequest, TokenTestResult, obtain_token, run_token_test

INTEROP = Path(__file__).resolve().parent / "interop"
SERVER_SCRIPT = INTEROP / "oidc_server.mjs"
SETUP_HINT = "run `bash .ci/setup` (it installs the pinned Node.js packages with tests/interop/install.sh)"
READY_TIMEOUT_S = 15.0
STOP_TIMEOUT_S = 5.0

CLIENT_ID = "8e17edb9-0f05-46cc-8741-a937e351e631"  # a GUID, as Microsoft Graph client ids are
# Reserved characters on purpose: the form-encoded body must carry them intact. Printable ASCII
# only: oidc-provider (like RFC 6749, appendix A) refuses any other character in a client secret.
CLIENT_SECRET = "canary-cs-7Q9x!&=+% /~"
WRONG_SECRET = "canary-wrong-3Kp8?&=+#"
SCOPE = "api:read"  # one scope: oidc-provider splits scopes on spaces, the msgraph convention joins with commas
TOKEN_TTL_S = 300
FORM_HINT = "request_format: form"


@dataclass(frozen=True)
class OidcServer:
    token_endpoint: str
    version: str
    stderr_path: Path

    def log(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")


def _installed_version() -> str:
    """The installed oidc-provider version; fails (never skips) when it is missing or not the pinned one."""
    if shutil.which("node") is None:
        pytest.fail(f"Node.js was not found on PATH; the interoperability tests need Node.js 20 or later: "
                    f"install it, then {SETUP_HINT}")
    installed = INTEROP / "node_modules" / "oidc-provider" / "package.json"
    if not installed.is_file():
        pytest.fail(f"oidc-provider is not installed in tests/interop/node_modules: {SETUP_HINT}")
    pinned = json.loads((INTEROP / "package.json").read_text(encoding="utf-8"))["dependencies"]["oidc-provider"]
    version = json.loads(installed.read_text(encoding="utf-8"))["version"]
    if version != pinned:
        pytest.fail(f"tests/interop/node_modules holds oidc-provider {version}, but package.json pins {pinned}: "
                    f"{SETUP_HINT}")
    return str(version)


def _stop(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_TIMEOUT_S)
    for stream in (proc.stdin, proc.stdout):
        if stream is not None:
            stream.close()


@pytest.fixture(scope="module")
def oidc_server() -> Iterator[OidcServer]:
    version = _installed_version()
    env = {
        **os.environ,
        "OIDC_CLIENT_ID": CLIENT_ID,
        "OIDC_CLIENT_SECRET": CLIENT_SECRET,
        "OIDC_SCOPE": SCOPE,
        "OIDC_TOKEN_TTL": str(TOKEN_TTL_S),
        "NODE_ENV": "test",
    }
    env.pop("DEBUG", None)  # oidc-provider's debug output could print request details
    with tempfile.TemporaryDirectory(prefix="cellosign-oidc-") as tmp:
        stderr_path = Path(tmp) / "stderr.log"
        with stderr_path.open("w", encoding="utf-8") as stderr:
            # Port 0: the OS picks a free port, the server reports it (no race with other tests).
            proc = subprocess.Popen(
                ["node", str(SERVER_SCRIPT), "0", "--exit-on-stdin-close"],
                cwd=INTEROP, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=stderr, text=True,
            )
        try:
            lines: queue.Queue[str] = queue.Queue()

            def pump() -> None:
                assert proc.stdout is not None
                for line in proc.stdout:
                    lines.put(line)
                lines.put("")  # EOF

            threading.Thread(target=pump, daemon=True).start()
            try:
                line = lines.get(timeout=READY_TIMEOUT_S)
            except queue.Empty:
                pytest.fail(f"oidc-provider did not report READY within {READY_TIMEOUT_S:g} s; stderr:\n"
                            f"{stderr_path.read_text(errors='replace')}")
            match = re.fullmatch(r"READY port=(\d+) token_endpoint=(\S+) oidc_provider=(\S+)\n?", line)
            if match is None:
                if not line:  # stdout closed: the server exited; wait for its exit code
                    proc.wait(timeout=STOP_TIMEOUT_S)
                pytest.fail(f"oidc-provider did not start (exit code {proc.poll()}); stdout {line!r}; stderr:\n"
                            f"{stderr_path.read_text(errors='replace')}")
            assert match.group(2) == f"http://127.0.0.1:{match.group(1)}/token"
            assert match.group(3) == version
            yield OidcServer(token_endpoint=match.group(2), version=version, stderr_path=stderr_path)
        finally:
            _stop(proc)


@pytest.fixture(autouse=True)
def _fresh_clients(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    tokentest.close_clients()
    yield
    tokentest.close_clients()


def _request(server: OidcServer, secret: str = CLIENT_SECRET, request_format: str = "json") -> TokenRequest:
    body = CONVENTIONS["msgraph"].wire_body(
        identity=CLIENT_ID, secret=secret, grant_type="client_credentials", scopes=[SCOPE]
    )
    return TokenRequest(url=server.token_endpoint, body=body, secret_values=(secret,),
                        request_format=request_format, connect_timeout=3.0, read_timeout=5.0)


def _assert_no_secret(result: TokenTestResult, *secrets: str) -> None:
    dumped = json.dumps(result.to_json(), ensure_ascii=False)
    for secret in secrets:
        for form in {secret, urllib.parse.quote_plus(secret), urllib.parse.quote(secret, safe=""),
                     urllib.parse.quote(secret), json.dumps(secret)[1:-1]}:
            assert form not in dumped, f"a secret leaked into the result: {dumped}"


def test_default_json_request_gets_a_clear_diagnosis(oidc_server: OidcServer) -> None:
    # What Cellosign sends: a JSON body. oidc-provider answers 400 with
    # {"error":"invalid_request","error_description":"only application/x-www-form-urlencoded
    #  content-type bodies are supported on POST /token"}.
    result = run_token_test("interop-oidc-json", _request(oidc_server))
    assert not result.ok
    assert result.kind == "oauth_error", result
    assert result.status == 400
    assert result.message.startswith("HTTP 400 Bad Request: the token endpoint refused the request"), result.message
    assert 'error "invalid_request"' in result.message
    assert "only application/x-www-form-urlencoded content-type bodies are supported" in result.message
    assert result.hint is not None and FORM_HINT in result.hint, result.hint
    _assert_no_secret(result, CLIENT_SECRET)


def test_form_encoded_request_gets_a_token(oidc_server: OidcServer) -> None:
    result, token = obtain_token("interop-oidc-form", _request(oidc_server, request_format="form"))
    assert result.ok, f"{result}\noidc-provider stderr:\n{oidc_server.log()}"
    assert result.kind == "ok"
    assert result.status == 200
    assert result.expires_in is not None and 0 < result.expires_in <= TOKEN_TTL_S
    assert result.warnings == (), result.warnings  # Bearer, JSON content-type, HTTP 200: fully standard
    assert result.hint is None
    assert token, "an ok result hands back the token"
    assert token not in json.dumps(result.to_json())
    _assert_no_secret(result, CLIENT_SECRET)


def test_wrong_secret_is_refused_with_invalid_client(oidc_server: OidcServer) -> None:
    result = run_token_test("interop-oidc-wrong", _request(oidc_server, secret=WRONG_SECRET, request_format="form"))
    assert not result.ok
    assert result.kind == "oauth_error", result
    assert result.status == 401
    assert 'error "invalid_client"' in result.message, result.message
    assert '"client authentication failed"' in result.message, result.message
    assert result.hint is not None and "check client_id and client_secret" in result.hint, result.hint
    _assert_no_secret(result, WRONG_SECRET, CLIENT_SECRET)
