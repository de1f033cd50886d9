"""Shared state in PostgreSQL through Pulumi's own ``postgres://`` backend.

A real PostgreSQL server (the machine's packages, ``tests/pg_server.py``) runs
on 127.0.0.1 for this module; every test gets a database of its own. The one
setting that moves a command to PostgreSQL is ``PULUMI_BACKEND_URL``, read by
``resources/engine.py``; the tests set it exactly like an operator would.

If PostgreSQL cannot start, every test here fails (no skip): run
``bash .ci/postgres`` to install it.
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pulumi import automation as auto

from resources import cmd_migrate
from resources.engine import PROJECT_ROOT, engine_env
from resources.tokenserver import TokenServer
from tests import pg_server
from tests import test_e2e_secrets as e2e
from tests.engine_fixtures import PASSPHRASE, Project, new_project
from tests.pg_server import PostgresServer, PostgresUnavailable

# The end-to-end suite's fixtures, so that its tests can run here against PostgreSQL.
from tests.test_e2e_secrets import project, server  # noqa: F401

STACKS = ("dev", "staging", "prod")
GRAPH_CLIENT_ID = "0b5c2a57-4f1e-4d55-9d3a-6c1f1e0d7a21"
# One client id has one secret at the identity provider: every stack uses it.
GRAPH_SECRET = "CANARY-pg-graph-shared-b27e03"

DECLARATIONS = """\
version: 1
secrets:
  - name: crm-api
    convention: general
    url: {config: tokenUrl}
    allow_insecure_http: true
    grant_type: password
    scope: [read, write]
    username: {config: crmUsername}
    password: {config: crmPassword}
  - name: graph-mail
    convention: msgraph
    url: {config: tokenUrl}
    allow_insecure_http: true
    grant_type: client_credentials
    scope: https://graph.microsoft.com/.default
    client_id: 0b5c2a57-4f1e-4d55-9d3a-6c1f1e0d7a21
    client_secret: {config: graphSecret}
"""
assert GRAPH_CLIENT_ID in DECLARATIONS

# One script per pipeline: a separate Python process running `up` (or
# `destroy`) for one stack through the project's engine, as the CLI does.
WORKER = r"""
import json, sys, time
from pathlib import Path
from pulumi import automation as auto
from resources.engine import open_stack
from resources.program import program_for

root, stack_name, action = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
stack = open_stack(stack_name, program_for(root / "cellosign.yaml"), work_dir=root)
if len(sys.argv) > 4:  # a gate: say "ready", then start only when the test opens it
    gate = Path(sys.argv[4])
    Path(f"{gate}.ready-{sys.argv[5]}").touch()
    while not gate.exists():
        time.sleep(0.02)
started = time.time()
try:
    result = getattr(stack, action)(color="never")
    report = {"ok": True, "changes": result.summary.resource_changes}
except auto.CommandError as exc:
    report = {"ok": False, "error": str(exc)[-3000:]}
report.update(stack=stack_name, start=started, end=time.time())
print("RESULT " + json.dumps(report), flush=True)
"""

LOCK_MESSAGE = "the stack is currently locked"
SECRET_SIG = "4dabf18193072939515e22adb298388d"  # Pulumi's marker of a secret value in a checkpoint


# ---------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    # No skip on purpose: a missing or broken PostgreSQL fails every test here.
    with PostgresServer() as srv:
        yield srv


@pytest.fixture()
def pg_db(pg: PostgresServer, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database; every Pulumi call of the test (and its subprocesses) uses it."""
    name = ("t_" + "".join(c if c.isalnum() else "_" for c in request.node.name.lower()))[:48]
    monkeypatch.setenv("PULUMI_BACKEND_URL", pg.new_database(name))
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    monkeypatch.delenv("PULUMI_CONFIG_PASSPHRASE_FILE", raising=False)
    return name


@pytest.fixture()
def idp() -> Iterator[TokenServer]:
    with TokenServer() as srv:
        yield srv


def crm_password(stack: str) -> str:
    return f"CANARY-pg-crm-{stack}-4f1a9c"


def canaries(*stacks: str) -> list[str]:
    return [GRAPH_SECRET] + [crm_password(s) for s in stacks]


def stack_project(tmp_path: Path, idp: TokenServer, stacks: tuple[str, ...]) -> Project:
    """One project folder, several stacks, each with its own accounts at the identity provider."""
    proj = new_project(tmp_path)
    proj.write(DECLARATIONS)
    idp.set_account(GRAPH_CLIENT_ID, GRAPH_SECRET)
    for name in stacks:
        idp.set_account(f"svc-crm-{name}", crm_password(name))
        proj.stack_name = name
        values = {"tokenUrl": idp.url, "crmUsername": f"svc-crm-{name}", "crmPassword": crm_password(name),
                  "graphSecret": GRAPH_SECRET}
        # One `pulumi config set-all`; the stack is created on the backend in use.
        proj.stack().set_all_config({key: auto.ConfigValue(value, secret=key in ("crmPassword", "graphSecret"))
                                     for key, value in values.items()})
    return proj


def worker(root: Path, stack: str, action: str = "up", gate: tuple[Path, int] | None = None) -> subprocess.Popen[str]:
    """A pipeline: `up` (or `destroy`) of one stack in a Python process of its own."""
    argv = [sys.executable, "-c", WORKER, str(root), stack, action]
    if gate is not None:
        argv += [str(gate[0]), str(gate[1])]
    return subprocess.Popen(argv, cwd=PROJECT_ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env=dict(os.environ))


@dataclass
class Gate:
    """Workers behind a gate get ready (interpreter up, stack selected) and wait; open() lets them all go
    at the same instant, so that start-up time cannot decide who reaches the lock first."""

    path: Path
    count: int = 0

    def worker(self, root: Path, stack: str, action: str = "up") -> subprocess.Popen[str]:
        self.count += 1
        return worker(root, stack, action, gate=(self.path, self.count))

    def open(self, timeout_s: float = 120) -> None:
        deadline = time.monotonic() + timeout_s
        ready = [Path(f"{self.path}.ready-{n}") for n in range(1, self.count + 1)]
        while not all(p.exists() for p in ready):
            assert time.monotonic() < deadline, "the gated workers did not get ready"
            time.sleep(0.05)
        self.path.touch()


def result_of(proc: subprocess.Popen[str], timeout: float = 240) -> dict[str, Any]:
    out, _ = proc.communicate(timeout=timeout)
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[len("RESULT "):])  # type: ignore[no-any-return]
    raise AssertionError(f"worker crashed (exit {proc.returncode}):\n{out[-3000:]}")


def backend(work_dir: Path, url: str | None = None) -> cmd_migrate.Backend:
    return cmd_migrate.Backend(url or os.environ["PULUMI_BACKEND_URL"], work_dir)


def assert_state_whole(root: Path, stack: str, secrets: set[str]) -> dict[str, Any]:
    """The encrypted export parses, has no pending operation, and holds exactly the declared secrets."""
    checkpoint = backend(root).export(stack)  # `pulumi stack export`: JSON, secrets encrypted
    deployment = checkpoint["deployment"]
    assert not deployment.get("pending_operations"), "an update was left half-done"
    ours = [r for r in deployment.get("resources") or [] if r["type"].endswith("cellosign:Secret")]
    found = {r["urn"].rsplit("::", 1)[-1] for r in ours}
    assert found == secrets, found
    for res in ours:
        outputs = res["outputs"]
        assert outputs["tested_at"] and outputs["token_expires_in"] == 3600
        secret_field = "password" if outputs["convention"] == "general" else "client_secret"
        assert "ciphertext" in outputs[secret_field], "secret output not encrypted"
    return checkpoint  # type: ignore[no-any-return]


def assert_no_plaintext(pg: PostgresServer, database: str, secret_values: list[str], visible: list[str]) -> None:
    """No secret value in any row: the raw dump and every state blob decoded (base64, gzip)."""
    rows = pg.state_rows(database)
    decoded = "\n".join(rows.values())
    dump = pg.dump(database)
    for value in visible:  # the check can see what is there
        assert value in decoded, f"{value!r} not found in the decoded state: the canary check is blind"
    for value in secret_values:
        assert value not in dump, "a secret value is stored in plaintext in the database dump"
        assert value not in decoded, "a secret value is stored in plaintext in a state object in PostgreSQL"


def tables_and_keys(pg: PostgresServer, database: str) -> tuple[list[str], list[str]]:
    tables = pg.psql("SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1", database).split()
    return tables, sorted(pg.state_rows(database))


# ---------------------------------------------------------------- tests
def test_backend_setting_reaches_postgres(pg: PostgresServer, pg_db: str, tmp_path: Path, idp: TokenServer) -> None:
    """One setting (PULUMI_BACKEND_URL) moves the engine to PostgreSQL; up, up again, destroy."""
    assert engine_env()["PULUMI_BACKEND_URL"].startswith("postgres://")
    proj = stack_project(tmp_path, idp, ("dev",))

    res = proj.up()
    assert res.summary.resource_changes == {"create": 3}
    assert idp.requests_seen == 2
    res = proj.up()
    assert res.summary.resource_changes == {"same": 3}
    assert idp.requests_seen == 2, "a second up must not call the token endpoint"
    assert_state_whole(proj.root, "dev", {"crm-api", "graph-mail"})

    # The state is in the database (Pulumi's table), not in a local folder.
    tables, keys = tables_and_keys(pg, pg_db)
    assert tables == ["pulumi_state"]
    assert any(k.endswith(".pulumi/stacks/cellosign-iac/dev.json") for k in keys), keys
    assert not proj.state_dir.exists() or not any(proj.state_dir.rglob("*.json"))
    assert pg.lock_keys(pg_db) == [], "a finished update left its lock behind"

    gone = proj.destroy()
    assert gone.summary.resource_changes == {"delete": 3}
    assert_state_whole(proj.root, "dev", set())
    assert_no_plaintext(pg, pg_db, canaries("dev"), visible=["svc-crm-dev"])


E2E_TESTS = sorted(name for name, fn in vars(e2e).items() if name.startswith("test_") and callable(fn))


@pytest.mark.parametrize("name", E2E_TESTS)
def test_e2e_suite_on_postgres(name: str, pg: PostgresServer, pg_db: str, request: pytest.FixtureRequest) -> None:
    """Every end-to-end test, unchanged, with PULUMI_BACKEND_URL pointing at PostgreSQL."""
    fn = getattr(e2e, name)
    kwargs = {param: request.getfixturevalue(param) for param in inspect.signature(fn).parameters}
    fn(**kwargs)
    keys = tables_and_keys(pg, pg_db)[1]
    assert any(".pulumi/stacks/cellosign-iac/" in k for k in keys), "the e2e test did not use PostgreSQL"
    assert_no_plaintext(pg, pg_db, list(e2e.CANARIES), visible=[])


def test_three_stacks_in_parallel_processes(pg: PostgresServer, pg_db: str, tmp_path: Path,
                                            idp: TokenServer) -> None:
    """dev, staging and prod deployed at the same time by separate processes: all succeed."""
    proj = stack_project(tmp_path, idp, STACKS)
    idp.latency_s = 1.0  # every token test takes a second: the three runs surely overlap

    gate = Gate(tmp_path / "gate")
    procs = [gate.worker(proj.root, name) for name in STACKS]
    gate.open()  # the three pipelines start their `up` at the same instant
    started = time.monotonic()
    results = [result_of(proc) for proc in procs]
    elapsed = time.monotonic() - started
    print(f"\n3 parallel ups: {elapsed:.1f} s wall; " + ", ".join(
        f"{r['stack']} {r['end'] - r['start']:.1f} s" for r in results))

    for res in results:
        assert res["ok"], f"stack {res['stack']} failed:\n{res.get('error')}"
        assert res["changes"] == {"create": 3}, res
    assert max(r["start"] for r in results) < min(r["end"] for r in results), "the runs did not overlap"
    assert idp.requests_seen == 6
    for name in STACKS:
        assert_state_whole(proj.root, name, {"crm-api", "graph-mail"})
    assert pg.lock_keys(pg_db) == []
    keys = tables_and_keys(pg, pg_db)[1]
    for name in STACKS:
        assert any(k.endswith(f".pulumi/stacks/cellosign-iac/{name}.json") for k in keys)

    # Canary: no stack's secret is in the database in plaintext; its usernames are.
    assert_no_plaintext(pg, pg_db, canaries(*STACKS), visible=[f"svc-crm-{n}" for n in STACKS])


def test_two_runs_on_one_stack_one_is_refused_by_the_lock(pg: PostgresServer, pg_db: str, tmp_path: Path,
                                                         idp: TokenServer) -> None:
    proj = stack_project(tmp_path, idp, ("prod",))
    idp.latency_s = 3.0  # A's token tests hold its lock for a few seconds

    # A takes the lock; B, ready and waiting, starts as soon as the lock is in the database.
    gate = Gate(tmp_path / "gate-b")
    second = gate.worker(proj.root, "prod")
    first = worker(proj.root, "prod")
    lock = pg.wait_for_lock(pg_db, timeout_s=120)
    assert lock and lock[0].endswith(".json") and "/.pulumi/locks/" in lock[0]
    gate.open()
    refused = result_of(second)
    done = result_of(first)
    assert not refused["ok"] and LOCK_MESSAGE in refused["error"], refused
    assert "****" in refused["error"] and pg_password(pg, pg_db) not in refused["error"]
    assert done["ok"] and done["changes"] == {"create": 3}, done
    assert refused["end"] < done["end"], "B was not refused while A held the lock"

    # The state is whole: parses, both secrets, no pending operation, lock released.
    assert_state_whole(proj.root, "prod", {"crm-api", "graph-mail"})
    assert pg.lock_keys(pg_db) == []

    # Two runs released at the same instant: at most one may win (Pulumi writes its lock,
    # then looks for others, so a tie refuses both); every refusal is the lock's.
    idp.latency_s = 0.5
    new_password = "CANARY-pg-crm-prod-rotated-77c1"
    idp.set_account("svc-crm-prod", new_password)
    proj.stack_name = "prod"
    proj.set_config({"crmPassword": new_password}, secret={"crmPassword"})
    gate = Gate(tmp_path / "gate-pair")
    pair = [gate.worker(proj.root, "prod"), gate.worker(proj.root, "prod")]
    gate.open()
    outcomes = [result_of(p) for p in pair]
    print(f"\nsimultaneous ups on one stack: {[('ok' if o['ok'] else 'refused') for o in outcomes]}")
    assert sum(o["ok"] for o in outcomes) <= 1, "two updates of one stack ran at once"
    for o in outcomes:
        if o["ok"]:
            assert o["changes"] == {"same": 2, "update": 1}, o
        else:
            assert LOCK_MESSAGE in o["error"], o["error"]
    assert_state_whole(proj.root, "prod", {"crm-api", "graph-mail"})
    assert pg.lock_keys(pg_db) == []
    # Whatever the race gave, the next run converges.
    expected = {"same": 3} if any(o["ok"] for o in outcomes) else {"same": 2, "update": 1}
    assert proj.up().summary.resource_changes == expected
    assert_no_plaintext(pg, pg_db, [new_password, *canaries("prod")], visible=["svc-crm-prod"])


def masked(value: Any) -> Any:
    """A checkpoint fragment with every ciphertext replaced by a marker."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            assert "ciphertext" in value, "a secret is in plaintext"
            return "<secret>"
        return {k: masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [masked(v) for v in value]
    return value


def plain_outputs(stack: auto.Stack) -> dict[str, tuple[Any, bool]]:
    """`pulumi stack output --show-secrets`, with each output's secret flag."""
    return {key: (out.value, out.secret) for key, out in stack.outputs().items()}


def pg_password(pg: PostgresServer, database: str) -> str:
    url = pg.url(database)
    return url.split("://", 1)[1].split("@", 1)[0].split(":", 1)[1]


def test_migrate_file_stacks_to_postgres(pg: PostgresServer, pg_db: str, tmp_path: Path, idp: TokenServer,
                                         monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """file:// → PostgreSQL: outputs and resources equal before and after; nothing to redo."""
    pg_url = os.environ["PULUMI_BACKEND_URL"]
    monkeypatch.delenv("PULUMI_BACKEND_URL")  # the stacks start on the local file:// backend
    stacks = ("dev", "staging")
    proj = stack_project(tmp_path, idp, stacks)
    file_url = f"file://{proj.state_dir.resolve()}"
    before: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {}
    for name in stacks:
        proj.stack_name = name
        st = proj.stack()
        assert st.up(color="never").summary.resource_changes == {"create": 3}
        st.workspace.set_tag(name, "team", "identity")
        before[name] = (plain_outputs(st), backend(proj.root, file_url).export(name))
    config_files = {p.name: p.read_text() for p in proj.root.glob("Pulumi.*.yaml")}
    requests_before = idp.requests_seen

    parser = argparse.ArgumentParser()
    cmd_migrate.add_arguments(parser)
    monkeypatch.setenv("CELLOSIGN_PROJECT_DIR", str(proj.root))  # what `cellosign-iac --project-dir` sets
    argv = ["--to", pg_url]
    with monkeypatch.context() as env:
        env.setenv("PULUMI_BACKEND_URL", file_url)  # "the current backend": the source by default
        # A stack locked by a running update is not moved.
        lock = proj.state_dir / ".pulumi/locks/organization/cellosign-iac/dev/0d9e.json"
        lock.parent.mkdir(parents=True, exist_ok=True)
        lock.write_text('{"pid": 1, "username": "ci", "hostname": "runner", "timestamp": "2026-01-01T00:00:00Z"}')
        assert cmd_migrate.run(parser.parse_args(argv + ["--stack", "dev"])) == 1
        assert "locked" in capsys.readouterr().out
        lock.unlink()
        assert cmd_migrate.run(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    print(out)
    assert "dev: migrated" in out and "staging: migrated" in out and "identical" in out
    assert pg_password(pg, pg_db) not in out

    # The Pulumi.<stack>.yaml files (config, encryptionsalt) are untouched; the source is kept.
    assert {p.name: p.read_text() for p in proj.root.glob("Pulumi.*.yaml")} == config_files
    assert sorted(backend(proj.root, file_url).stack_names()) == sorted(stacks)

    monkeypatch.setenv("PULUMI_BACKEND_URL", pg_url)  # from now on every command uses PostgreSQL
    for name in stacks:
        proj.stack_name = name
        st = proj.stack()
        outputs, checkpoint = before[name]
        assert plain_outputs(st) == outputs
        migrated = assert_state_whole(proj.root, name, {"crm-api", "graph-mail"})["deployment"]
        # Same resources, field for field; secrets stay encrypted (Pulumi re-encrypts them on import
        # with the same provider state: new nonces, same plaintext, which migrate compared in memory).
        assert masked(migrated["resources"]) == masked(checkpoint["deployment"]["resources"])
        assert migrated["secrets_providers"] == checkpoint["deployment"]["secrets_providers"]
        assert st.workspace.list_tags(name).get("team") == "identity"
        # The engine sees nothing to do: state, secrets and config all made it.
        assert st.up(color="never").summary.resource_changes == {"same": 3}
    assert idp.requests_seen == requests_before, "an up after the migration re-ran token tests"
    assert_no_plaintext(pg, pg_db, canaries(*stacks),
                        visible=["svc-crm-dev", "svc-crm-staging"])

    # Running it again is harmless; a target that drifted is not overwritten without --force.
    with monkeypatch.context() as env:
        env.setenv("PULUMI_BACKEND_URL", file_url)
        assert cmd_migrate.run(parser.parse_args(argv + ["--stack", "staging"])) == 0
        assert "staging: already migrated" in capsys.readouterr().out
        proj.stack_name = "dev"
        env.setenv("PULUMI_BACKEND_URL", pg_url)
        rotated = "CANARY-pg-crm-dev-rotated-90ab"
        idp.set_account("svc-crm-dev", rotated)
        proj.set_config({"crmPassword": rotated}, secret={"crmPassword"})
        assert proj.up().summary.resource_changes == {"same": 2, "update": 1}
        drifted = backend(proj.root, pg_url).view("dev")
        env.setenv("PULUMI_BACKEND_URL", file_url)
        assert cmd_migrate.run(parser.parse_args(argv + ["--stack", "dev"])) == 1
        assert "different state" in capsys.readouterr().out
    # The refused run changed nothing in PostgreSQL.
    assert cmd_migrate.differences(drifted, backend(proj.root, pg_url).view("dev")) == []


def test_migrate_refuses_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    parser = argparse.ArgumentParser()
    cmd_migrate.add_arguments(parser)
    assert cmd_migrate.run(parser.parse_args(["--to", "not-a-url"])) == 2
    monkeypatch.setenv("CELLOSIGN_PROJECT_DIR", str(tmp_path))  # no Pulumi.yaml there
    assert cmd_migrate.run(parser.parse_args(["--to", "postgres://x@127.0.0.1:1/db"])) == 2
    assert "not a backend URL" in capsys.readouterr().err
    assert cmd_migrate.redact("postgres://u:s3cret@h:5432/db?sslmode=disable") == \
        "postgres://u:****@h:5432/db?sslmode=disable"


def test_differences_name_fields_never_values() -> None:
    secret = {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "plaintext": '"CANARY-old-5e1"'}
    urn = "urn:pulumi:dev::cellosign-iac::pulumi-python:dynamic/cellosign:Secret::crm-api"
    old = cmd_migrate.StackView({"secrets": ({"a": 1}, False)}, {urn: {"urn": urn, "outputs": {"password": secret}}})
    changed = {**secret, "plaintext": '"CANARY-new-9f"'}
    new = cmd_migrate.StackView({"secrets": ({"a": 2}, True)}, {urn: {"urn": urn, "outputs": {"password": changed}}})
    found = cmd_migrate.differences(old, new)
    assert found == ["stack output 'secrets' has a different value", f"resource {urn}: outputs.password differs"]
    assert "CANARY" not in " ".join(found) + repr(old) + repr(new)
    assert cmd_migrate.differences(old, old) == []


def test_missing_postgres_fails_naming_the_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CELLOSIGN_PG_BINDIR", str(tmp_path))
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(pg_server.glob, "glob", lambda pattern: [])
    with pytest.raises(PostgresUnavailable, match=r"apt-get install -y postgresql.*|\.ci/postgres"):
        PostgresServer()
