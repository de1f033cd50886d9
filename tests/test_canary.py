"""Canary: unique secret values go through every operation and every command,
on success and failure paths, and must never appear in plaintext anywhere:

- stdout and stderr of every CLI command (`python -m resources.cli ...` and
  `python -m resources.cmd_test_token ...`, run in a temporary project folder
  through CELLOSIGN_PROJECT_DIR, with a backend, PULUMI_HOME and TMPDIR of
  their own) and the engine output of the Automation API operations;
- the state files on disk (checkpoints, history, backups);
- `pulumi stack export` without --show-secrets;
- rendered files (the review copy after up/refresh/destroy, `render` output);
- logs: everything under PULUMI_HOME (Pulumi writes a gzipped log of every
  command to PULUMI_HOME/logs, and an encrypted "PLOG" log per update, which
  cannot be read without the stack's passphrase), everything under TMPDIR, and
  any file Pulumi or Python may have written to the system temp dir meanwhile.

Canaries are letters and digits only, so every usual encoding (JSON, URL,
HTML) of one is the same text; base64 and hex forms are searched too, and gzip
files are searched decompressed.

Pulumi behaviour (documented here, checked by the last test): at log
verbosity 9 (`-v=9`, the Automation API's `log_verbosity=9`) the Pulumi CLI logs
every RPC property it unmarshals, secret values in plaintext, to a glog file in
the system temp dir (`pulumi.<host>.<user>.log.INFO.*`) or, with
`--logtostderr`, to stderr. Levels up to 8 and `--debug` do not. Likewise
`PULUMI_DEBUG_GRPC=<file>` writes every gRPC message, config and inputs
included, in plaintext. None of the project's commands enables any of these.
"""

from __future__ import annotations

import base64
import gzip
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from resources.engine import PROJECT_ROOT
from resources.tokenserver import TokenServer
from tests.engine_fixtures import PASSPHRASE, Project

RUN = uuid.uuid4().hex[:10]
PW = f"CANARYpw{RUN}"  # the crm-api password
GRAPH_SECRET = f"CANARYgraph{RUN}"  # the graph-mail client secret
ENV_SECRET = f"CANARYenv{RUN}"  # the erp-api password, from an environment variable
WRONG = f"CANARYwrong{RUN}"  # a password the token endpoint refuses
ECHOED = f"CANARYechoed{RUN}"  # sent to an endpoint that echoes it back
LITERAL = f"CANARYliteral{RUN}"  # written in a declarations file by mistake
CANARIES = (PW, GRAPH_SECRET, ENV_SECRET, WRONG, ECHOED, LITERAL)

CLIENT_ID = "8e17edb9-0f05-46cc-8741-a937e351e631"
STACK = "canary"

DECLARATIONS = f"""\
version: 1
secrets:
  - name: crm-api
    convention: general
    url: {{config: crmUrl}}
    allow_insecure_http: true
    grant_type: password
    scope: [read, write]
    username: svc-crm
    password: {{config: crmPassword}}
  - name: graph-mail
    convention: msgraph
    url: {{config: graphUrl}}
    allow_insecure_http: true
    grant_type: client_credentials
    scope: https://graph.microsoft.com/.default
    client_id: {CLIENT_ID}
    client_secret: {{config: graphSecret}}
  - name: erp-api
    convention: general
    url: {{config: graphUrl}}
    allow_insecure_http: true
    grant_type: password
    scope: read
    username: svc-erp
    password: {{env: ERP_PASSWORD}}
"""

# Variables that make Pulumi log secret values; the test must not inherit them.
DEBUG_VARIABLES = ("PULUMI_DEBUG_GRPC", "PULUMI_DEBUG_COMMANDS", "TF_LOG", "PULUMI_ENABLE_TRACE")


def leak_forms(secret: str) -> set[str]:
    """The secret as text, base64 (any byte alignment) and hex."""
    raw = secret.encode()
    forms = {secret, raw.hex()}
    for shift in range(3):
        rest = raw[shift:]
        forms.add(base64.b64encode(rest).decode()[: len(rest) // 3 * 4])
    return forms


FORMS = {canary: leak_forms(canary) for canary in CANARIES}


def leaks(text: str) -> list[str]:
    return [canary for canary, forms in FORMS.items() if any(f in text for f in forms)]


def file_text(path: Path) -> str:
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            pass
    return data.decode("utf-8", errors="replace")


class EchoServer(TokenServer):
    """A token endpoint that refuses the password and echoes it back in error_description."""

    def answer(self, content_type: str, raw: bytes) -> tuple[int, dict[str, Any]]:
        self.requests_seen += 1
        body = json.loads(raw)
        return 400, {"error": "invalid_grant",
                     "error_description": f"invalid password {body.get('password') or body.get('client_secret')}"}


@dataclass
class Run:
    args: tuple[str, ...]
    code: int
    stdout: str
    stderr: str


@dataclass
class Sandbox:
    root: Path
    project: Project
    inputs: Path  # files written with a canary on purpose: never scanned
    systmp: Path
    home: Path
    started: float
    runs: list[Run] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (where, text) to scan

    @property
    def decl(self) -> str:
        return str(self.project.declarations)

    def _run(self, args: Sequence[str]) -> Run:
        proc = subprocess.run([sys.executable, "-m", *args], cwd=self.project.root, env=dict(os.environ),
                              capture_output=True, text=True, timeout=180)
        return Run(tuple(args), proc.returncode, proc.stdout, proc.stderr)

    def cli(self, *args: str) -> Run:
        return self.parallel([("resources.cli", *args)])[0]

    def test_token(self, *args: str) -> Run:
        return self.parallel([("resources.cmd_test_token", *args)])[0]

    def parallel(self, commands: Sequence[Sequence[str]]) -> list[Run]:
        """Independent commands at once (each is a new process, like a user's shell)."""
        with ThreadPoolExecutor(max_workers=len(commands)) as pool:
            runs = list(pool.map(self._run, commands))
        self.runs.extend(runs)
        return runs

    def note(self, where: str, text: str) -> None:
        self.texts.append((where, text))


@pytest.fixture()
def sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    root = tmp_path
    project_dir, inputs, systmp, home = (root / n for n in ("project", "inputs", "tmp", "pulumi-home"))
    for folder in (project_dir, inputs, systmp, home):
        folder.mkdir()
    (project_dir / "Pulumi.yaml").write_text((PROJECT_ROOT / "Pulumi.yaml").read_text())
    project = Project(root=project_dir, stack_name=STACK)
    project.state_dir.mkdir()
    for name in DEBUG_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    # This process and every child: the temporary project, backend, Pulumi home and temp dir.
    monkeypatch.setenv("CELLOSIGN_PROJECT_DIR", str(project_dir))
    monkeypatch.delenv("CELLOSIGN_DECLARATIONS", raising=False)
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{project.state_dir}")
    monkeypatch.setenv("PULUMI_HOME", str(home))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    monkeypatch.setenv("ERP_PASSWORD", ENV_SECRET)
    monkeypatch.setenv("TMPDIR", str(systmp))
    monkeypatch.setattr(tempfile, "tempdir", None)  # recomputed from TMPDIR
    yield Sandbox(root, project, inputs, systmp, home, started=time.time())


@pytest.fixture()
def server() -> Iterator[TokenServer]:
    with TokenServer() as srv:
        srv.set_account("svc-crm", PW)
        srv.set_account(CLIENT_ID, GRAPH_SECRET)
        srv.set_account("svc-erp", ENV_SECRET)
        yield srv


# What Pulumi, its plugins, the Automation API and Python's tempfile would create in a temp dir.
TEMP_NAMES = re.compile(r"^(pulumi|automation|eventlog|tmp|.*\.log\b)", re.IGNORECASE)


def system_temp_files(since: float, skip: Path) -> Iterator[Path]:
    """Files in the real system temp dir that Pulumi or Python could have written during the test
    (a safety net: every process of the test is given its own TMPDIR)."""
    base = Path("/tmp")
    for top in base.iterdir():
        if top == skip or not TEMP_NAMES.match(top.name):
            continue
        candidates = [top] if top.is_file() else [p for p in top.rglob("*") if p.is_file()] if top.is_dir() else []
        for path in candidates:
            try:
                st = path.stat()
            except OSError:
                continue
            if st.st_mtime >= since and st.st_size < 8 * 1024 * 1024 and os.access(path, os.R_OK):
                yield path


def test_no_canary_in_outputs_state_exports_rendered_files_or_logs(
    sandbox: Sandbox, server: TokenServer
) -> None:
    sb, project = sandbox, sandbox.project
    project.write(DECLARATIONS)
    literal = sb.inputs / "literal.yaml"
    literal.write_text(DECLARATIONS.replace("password: {config: crmPassword}", f"password: {LITERAL}"))
    project.set_config({"crmUrl": server.url, "graphUrl": server.url, "crmPassword": PW,
                        "graphSecret": GRAPH_SECRET}, secret={"crmPassword", "graphSecret"})

    # ---- the Automation API operations themselves (what the CLI and the example run)
    assert project.preview().change_summary == {"create": 4}
    assert project.up().summary.resource_changes == {"create": 4}
    sb.note("stack export after up", json.dumps(project.exported()))
    assert project.refresh().summary.resource_changes == {"same": 4}
    assert project.destroy().summary.resource_changes == {"delete": 4}
    sb.note("Automation API engine output", project.output_text())
    assert server.requests_seen == 6

    # ---- every CLI command, success paths
    validate, validate_literal, tt_text, tt_json, preview_literal = sb.parallel([
        ("resources.cli", "validate", sb.decl),
        ("resources.cli", "validate", str(literal)),
        ("resources.cmd_test_token", sb.decl, "--stack", STACK),
        ("resources.cmd_test_token", sb.decl, "--stack", STACK, "--format", "json"),
        ("resources.cli", "preview", "--stack", STACK, "--file", str(literal)),
    ])
    assert validate.code == 0, validate
    assert validate_literal.code == 1 and "password must not be written in this file" in validate_literal.stdout
    assert tt_text.code == 0 and tt_text.stdout.count(": OK (expires_in 3600 s)") == 3, tt_text
    assert tt_json.code == 0 and [r["ok"] for r in json.loads(tt_json.stdout)] == [True] * 3, tt_json
    assert preview_literal.code == 1 and "must not be written in this file" in preview_literal.stdout
    assert sb.cli("preview", "--stack", STACK, "--file", sb.decl, "--diff").code == 0
    up = sb.cli("up", "--stack", STACK, "--file", sb.decl, "--diff")
    assert up.code == 0, up
    assert sb.cli("refresh", "--stack", STACK, "--file", sb.decl).code == 0
    render_desired, render_state = sb.parallel([
        ("resources.cli", "render", "--stack", STACK, "--file", sb.decl),
        ("resources.cli", "render", "--stack", STACK, "--state", "--output", str(project.root / "rendered.yaml")),
    ])
    assert render_desired.code == 0 and "crm-api" in render_desired.stdout, render_desired
    assert render_state.code == 0 and (project.root / "rendered.yaml").is_file(), render_state
    sb.note("stack export after CLI up", json.dumps(project.exported()))

    # ---- failure paths: a refused password (test-token, preview, up)
    project.set_config({"crmPassword": WRONG}, secret={"crmPassword"})
    tt_text, tt_json = sb.parallel([
        ("resources.cmd_test_token", sb.decl, "--stack", STACK),
        ("resources.cmd_test_token", sb.decl, "--stack", STACK, "--format", "json"),
    ])
    assert tt_text.code == 1 and "crm-api: FAILED [oauth_error]" in tt_text.stdout, tt_text
    assert tt_json.code == 1 and json.loads(tt_json.stdout)[0]["kind"] == "oauth_error", tt_json
    assert sb.cli("preview", "--stack", STACK, "--file", sb.decl, "--diff").code == 0
    failed_up = sb.cli("up", "--stack", STACK, "--file", sb.decl, "--diff")
    # (with --diff, Pulumi writes the diagnostics to stderr)
    assert failed_up.code == 1 and "token test failed for secret 'crm-api' [oauth_error]" in failed_up.stderr
    # ... a credential that stopped working at the identity provider (refresh)
    project.set_config({"crmPassword": PW}, secret={"crmPassword"})
    server.set_account(CLIENT_ID, WRONG)
    failed_refresh = sb.cli("refresh", "--stack", STACK, "--file", sb.decl)
    assert failed_refresh.code == 1 and "graph-mail' [oauth_error]" in failed_refresh.stdout, failed_refresh
    server.set_account(CLIENT_ID, GRAPH_SECRET)
    # ... an endpoint that echoes the submitted password back in error_description
    with EchoServer() as echo:
        project.set_config({"crmUrl": echo.url, "crmPassword": ECHOED}, secret={"crmPassword"})
        tt_text, tt_json = sb.parallel([
            ("resources.cmd_test_token", sb.decl, "--stack", STACK, "--secret", "crm-api"),
            ("resources.cmd_test_token", sb.decl, "--stack", STACK, "--secret", "crm-api", "--format", "json"),
        ])
        echoed_up = sb.cli("up", "--stack", STACK, "--file", sb.decl)
        assert echo.requests_seen == 3
    assert tt_text.code == 1 and "invalid password [redacted]" in tt_text.stdout, tt_text
    assert tt_json.code == 1 and "invalid password [redacted]" in json.loads(tt_json.stdout)[0]["message"]
    assert echoed_up.code == 1 and "invalid password [redacted]" in echoed_up.stdout, echoed_up
    sb.note("stack export after failed updates", json.dumps(project.exported()))

    destroy = sb.cli("destroy", "--stack", STACK, "--file", sb.decl)
    assert destroy.code == 0, destroy
    sb.note("engine output", project.output_text())

    # ---- nothing anywhere
    found: list[str] = []
    for run in sb.runs:
        for stream, text in (("stdout", run.stdout), ("stderr", run.stderr)):
            found += [f"{stream} of {' '.join(run.args[:3])}: {c}" for c in leaks(text)]
    for where, text in sb.texts:
        found += [f"{where}: {c}" for c in leaks(text)]
    scanned = [p for p in sb.root.rglob("*") if p.is_file() and sb.inputs not in p.parents]
    for path in scanned:
        found += [f"{path.relative_to(sb.root)}: {c}" for c in leaks(file_text(path))]
    for path in system_temp_files(sb.started, skip=sb.root):
        try:
            text = file_text(path)
        except OSError:
            continue
        found += [f"{path}: {c}" for c in leaks(text)]
    assert not found, "secret values in plaintext:\n" + "\n".join(found)

    # What was scanned is what we meant to scan.
    names = {p.relative_to(sb.root).parts[0] for p in scanned}
    assert {"project", "pulumi-home"} <= names
    assert any(p.match("project/state/.pulumi/stacks/*/canary.json") for p in
               (x.relative_to(sb.root) for x in scanned))
    assert any(p.parent.name == "logs" for p in scanned if sb.home in p.parents), "no Pulumi logs to check"
    assert (project.root / "review" / f"{STACK}.cellosign.yaml").is_file()
    # Verbose logging is never on: no glog files anywhere.
    assert not [p for p in scanned if re.match(r"pulumi\..*\.log\.", p.name)]


def test_pulumi_verbose_logs_hold_secret_values_so_no_command_enables_them(
    sandbox: Sandbox, server: TokenServer
) -> None:
    # Nothing in the project turns on verbose logging, stderr logging, gRPC dumps or tracing.
    pattern = re.compile(r"log_verbosity|log_to_std_err|logtostderr|-v=\d|PULUMI_DEBUG_GRPC|tracing|debug=True")
    blanked = '"PULUMI_DEBUG_GRPC": "",'  # engine_env switches the gRPC dump OFF, whatever the caller's env says
    offenders = [f"{path.name}:{n}" for path in (PROJECT_ROOT / "resources").glob("*.py")
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if pattern.search(line) and line.strip() != blanked and not line.strip().startswith("#")]
    assert not offenders, f"a command enables Pulumi's verbose logs (they hold secret values): {offenders}"

    # The Pulumi behaviour that makes this matter: -v=9 logs the provider inputs in plaintext.
    project = sandbox.project
    project.write(DECLARATIONS.split("  - name: graph-mail")[0])
    project.set_config({"crmUrl": server.url, "crmPassword": PW}, secret={"crmPassword"})
    project.stack().up(on_output=project.lines.append, color="never", log_verbosity=9)
    glogs = [p for p in sandbox.systmp.rglob("*") if re.match(r"pulumi\..*\.log\.", p.name)]
    assert glogs, "Pulumi wrote no glog file at -v=9 (behaviour changed: update the docstring above)"
    assert any(PW in file_text(p) for p in glogs), (
        "Pulumi no longer logs secret values at -v=9: update the docstring above and the report"
    )
    assert PW not in project.output_text()
