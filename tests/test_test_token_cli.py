"""`test-token FILE --stack S [--secret NAME] [--format text|json]`: resolution through the
stack's real config (Pulumi CLI, passphrase secrets), live token tests against a
token server on 127.0.0.1, output, exit codes, secrets never shown."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from resources import cmd_test_token
from resources.engine import PROJECT_ROOT
from resources.tokenserver import TokenServer
from tests.engine_fixtures import PASSPHRASE, Project, new_project

PW = "CANARY-tt-pw-3c81d2"
WRONG = "CANARY-tt-wrong-90f4e1"
GRAPH_SECRET = "CANARY-tt-graph-5a07bb"
ENV_SECRET = "CANARY-tt-env-e4d3c2"
PLAIN = "CANARY-tt-plain-11aa42"
CANARIES = (PW, WRONG, GRAPH_SECRET, ENV_SECRET, PLAIN)
CLIENT_ID = "8e17edb9-0f05-46cc-8741-a937e351e631"

DECLARATIONS = f"""\
version: 1
secrets:
  - name: crm-api
    convention: general
    url: {{config: tokenUrl}}
    allow_insecure_http: true
    grant_type: password
    scope: [read, write]
    username: svc-crm
    password: {{config: crmPassword}}
  - name: graph-mail
    convention: msgraph
    url: {{config: tokenUrl}}
    allow_insecure_http: true
    grant_type: client_credentials
    scope: https://graph.microsoft.com/.default
    client_id: {CLIENT_ID}
    client_secret: {{config: graphSecret}}
"""

ENV_SECRET_DECL = """\
  - name: erp-api
    convention: general
    url: {config: tokenUrl}
    allow_insecure_http: true
    grant_type: password
    scope: read
    username: svc-erp
    password: {env: ERP_PASSWORD}
"""


class CountingServer(TokenServer):
    """A token server that also records how many requests it handled at the same time."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self.active = 0
        self.max_active = 0
        self._count_lock = threading.Lock()

    def answer(self, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        with self._count_lock:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            return super().answer(content_type, raw)
        finally:
            with self._count_lock:
                self.active -= 1


@pytest.fixture(scope="module")
def shared_server() -> Iterator[CountingServer]:
    with CountingServer() as srv:
        yield srv


@pytest.fixture()
def server(shared_server: CountingServer) -> CountingServer:
    srv = shared_server
    srv.accounts.clear()
    srv.set_account("svc-crm", PW)
    srv.set_account(CLIENT_ID, GRAPH_SECRET)
    srv.set_account("svc-erp", ENV_SECRET)
    srv.requests_seen = srv.max_active = 0
    srv.latency_s, srv.expires_in = 0.0, 3600
    return srv


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory, shared_server: CountingServer) -> Project:
    """A project with its stack and config, made once; each test works on a copy."""
    proj = new_project(tmp_path_factory.mktemp("template"))
    proj.state_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PULUMI_BACKEND_URL", f"file://{proj.state_dir}")
        mp.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
        proj.write(DECLARATIONS)
        proj.set_config({"tokenUrl": shared_server.url, "crmPassword": PW, "graphSecret": GRAPH_SECRET},
                        secret={"crmPassword", "graphSecret"})
    return proj


@pytest.fixture()
def project(tmp_path: Path, template: Project, server: CountingServer, monkeypatch: pytest.MonkeyPatch) -> Project:
    root = tmp_path / "project"
    shutil.copytree(template.root, root)
    proj = Project(root=root, stack_name=template.stack_name)
    # The command (in this process or a child) reads the same backend with the same passphrase.
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{proj.state_dir}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    return proj


def run_cli(project: Project, *args: str, file: Path | None = None,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """`python -m resources.cmd_test_token` in a child process."""
    return subprocess.run(
        [sys.executable, "-m", "resources.cmd_test_token", str(file or project.declarations),
         "--work-dir", str(project.root), "--stack", project.stack_name, *args],
        cwd=PROJECT_ROOT, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=120,
    )


def run_here(project: Project, capsys: pytest.CaptureFixture[str], *args: str,
             file: Path | None = None) -> tuple[int, str, str]:
    """The command in this process (faster): exit code, stdout, stderr."""
    code = cmd_test_token.main([str(file or project.declarations), "--work-dir", str(project.root),
                                "--stack", project.stack_name, *args])
    out, err = capsys.readouterr()
    return code, out, err


def assert_no_canary(*texts: str) -> None:
    for text in texts:
        for canary in CANARIES:
            assert canary not in text, f"secret value {canary!r} leaked: {text}"


# --------------------------------------------------------------------------- success


def test_every_secret_ok_text_exit_0(project: Project, server: CountingServer) -> None:
    proc = run_cli(project)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.splitlines() == ["crm-api: OK (expires_in 3600 s)", "graph-mail: OK (expires_in 3600 s)"]
    assert server.requests_seen == 2
    assert_no_canary(proc.stdout, proc.stderr)


def test_json_lists_one_object_per_secret(project: Project, server: CountingServer) -> None:
    proc = run_cli(project, "--format", "json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    results = json.loads(proc.stdout)
    assert [r["secret"] for r in results] == ["crm-api", "graph-mail"]
    for r in results:
        assert {"secret", "ok", "kind", "message", "warnings", "status", "expires_in"} <= r.keys()
        assert (r["ok"], r["kind"], r["status"], r["expires_in"], r["warnings"]) == (True, "ok", 200, 3600, [])
    assert_no_canary(proc.stdout, proc.stderr)


def test_secrets_are_tested_in_parallel_and_reported_in_declaration_order(
    project: Project, server: CountingServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    server.latency_s = 0.4
    monkeypatch.setenv("ERP_PASSWORD", ENV_SECRET)  # {env: NAME} references resolve too
    project.write(DECLARATIONS + ENV_SECRET_DECL)
    started = time.monotonic()
    code, out, err = run_here(project, capsys)
    elapsed = time.monotonic() - started
    assert code == 0, out + err
    assert [line.split(":")[0] for line in out.splitlines()] == ["crm-api", "graph-mail", "erp-api"]
    assert server.max_active >= 2, "token tests ran one after the other"
    assert elapsed < 3 * 0.4 + 5  # generous: the stack config read takes about a second
    assert_no_canary(out, err)


def test_warnings_are_listed_under_the_secret(
    project: Project, server: CountingServer, capsys: pytest.CaptureFixture[str]
) -> None:
    server.expires_in = 2_000_000_000  # looks like a Unix timestamp: accepted, with a warning
    code, out, _ = run_here(project, capsys, "--secret", "crm-api")
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "crm-api: OK (expires_in 2000000000 s)"
    assert lines[1].startswith("  warning: expires_in is 2000000000, which looks like a Unix timestamp")
    code, out, _ = run_here(project, capsys, "--secret", "crm-api", "--format", "json")
    assert json.loads(out)[0]["warnings"][0].startswith("expires_in is 2000000000")


# --------------------------------------------------------------------------- failures (exit 1)


def test_a_refused_credential_fails_with_kind_and_hint_exit_1(project: Project, server: CountingServer) -> None:
    project.set_config({"crmPassword": WRONG}, secret={"crmPassword"})
    proc = run_cli(project)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("crm-api: FAILED [oauth_error] HTTP 400")
    assert "invalid_grant" in lines[0]
    assert lines[1] == "  hint: check the user name and password, and that this account may use the grant"
    assert lines[2] == "graph-mail: OK (expires_in 3600 s)"  # the others are still tested
    assert server.requests_seen == 2
    assert_no_canary(proc.stdout, proc.stderr)


def test_json_failure(project: Project, capsys: pytest.CaptureFixture[str]) -> None:
    project.set_config({"graphSecret": WRONG}, secret={"graphSecret"})
    code, out, err = run_here(project, capsys, "--format", "json")
    assert code == 1
    by_name = {r["secret"]: r for r in json.loads(out)}
    graph = by_name["graph-mail"]
    assert (graph["ok"], graph["kind"], graph["status"], graph["expires_in"]) == (False, "oauth_error", 401, None)
    assert "invalid_client" in graph["message"] and graph["hint"]
    assert by_name["crm-api"]["ok"] is True
    assert_no_canary(out, err)


def test_an_endpoint_echoing_the_password_is_redacted(
    project: Project, capsys: pytest.CaptureFixture[str]
) -> None:
    class Echo(TokenServer):
        def answer(self, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
            body = json.loads(raw)
            return 400, {"error": "invalid_grant", "error_description": f"bad password {body.get('password')}"}

    with Echo() as echo:
        project.set_config({"tokenUrl": echo.url})
        code, out, err = run_here(project, capsys, "--secret", "crm-api")
        assert code == 1
        assert "bad password [redacted]" in out
        code, out, err = run_here(project, capsys, "--secret", "crm-api", "--format", "json")
    assert code == 1 and "[redacted]" in json.loads(out)[0]["message"]
    assert_no_canary(out, err)


# --------------------------------------------------------------------------- nothing tested (exit 2)


def test_secret_option_tests_only_that_secret(project: Project, server: CountingServer,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_here(project, capsys, "--secret", "graph-mail")
    assert code == 0
    assert out.splitlines() == ["graph-mail: OK (expires_in 3600 s)"]
    assert server.requests_seen == 1


def test_unknown_secret_exit_2_with_close_match(project: Project, server: CountingServer) -> None:
    proc = run_cli(project, "--secret", "crm-apj")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "declares no secret named 'crm-apj'; did you mean 'crm-api'?" in proc.stderr
    assert "(declared: crm-api, graph-mail)" in proc.stderr
    assert server.requests_seen == 0


def test_missing_config_exit_2_names_the_fix(project: Project, server: CountingServer,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    project.stack().remove_config("graphSecret")
    code, out, err = run_here(project, capsys)
    assert code == 2 and out == ""
    assert ("stack 'test' has no config value 'cellosign-iac:graphSecret'; set it with: "
            "pulumi config set --secret --stack test cellosign-iac:graphSecret <value>") in err
    assert server.requests_seen == 0
    # --secret resolves only the secret asked for
    code, out, err = run_here(project, capsys, "--secret", "crm-api")
    assert code == 0, err


def test_stack_without_config_file_is_not_created(project: Project, server: CountingServer,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code = cmd_test_token.main([str(project.declarations), "--work-dir", str(project.root), "--stack", "tets"])
    err = capsys.readouterr().err
    assert code == 2
    assert "pulumi config set --stack tets cellosign-iac:tokenUrl <value>" in err
    assert "no Pulumi.tets.yaml" in err and "did you mean 'test'?" in err
    assert not (project.root / "Pulumi.tets.yaml").exists()
    assert not any("tets" in p.name for p in project.state_dir.rglob("*"))
    assert server.requests_seen == 0


def test_wrong_passphrase_exit_2(project: Project, server: CountingServer, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", "not-the-passphrase")
    code, out, err = run_here(project, capsys)
    assert code == 2 and out == ""
    assert "cannot read the config of stack 'test'" in err and "PULUMI_CONFIG_PASSPHRASE" in err
    assert server.requests_seen == 0


def test_plaintext_secret_config_exit_2_without_the_value(project: Project, server: CountingServer,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    project.set_config({"crmPassword": PLAIN})  # not --secret
    code, out, err = run_here(project, capsys)
    assert code == 2
    assert "pulumi config set --secret --stack test cellosign-iac:crmPassword <value>" in err
    assert server.requests_seen == 0
    assert_no_canary(out, err)


def test_unset_environment_variable_exit_2(project: Project, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERP_PASSWORD", raising=False)
    project.write(DECLARATIONS + ENV_SECRET_DECL)
    code, _, err = run_here(project, capsys)
    assert code == 2
    assert "secrets[2] (erp-api).password: environment variable ERP_PASSWORD is not set" in err


def test_invalid_resolved_value_exit_2(project: Project, server: CountingServer,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    project.set_config({"tokenUrl": "http://203.0.113.9/token"})  # http only for loopback
    code, out, err = run_here(project, capsys)
    assert code == 2 and out == ""
    assert "stack 'test'" in err and "cellosign.yaml:3: crm-api: url:" in err and "graph-mail" in err
    assert server.requests_seen == 0


def test_unreadable_or_invalid_file_exit_2(project: Project, tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_here(project, capsys, file=tmp_path / "missing.yaml")
    assert code == 2 and out == "" and "missing.yaml" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text(DECLARATIONS.replace("    password: {config: crmPassword}", f"    password: {PLAIN}"))
    code, out, err = run_here(project, capsys, file=bad)
    assert code == 2
    assert "password must not be written in this file" in err and "validate" in err
    assert_no_canary(out, err)


def test_usage_error_exit_2(project: Project) -> None:
    proc = run_cli(project, "--format", "xml")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
