"""Faults through the real Pulumi engine and the CLI: a partial failure, a run
killed with SIGKILL while token tests are in flight, two runs on one stack at
once, and writers killed mid-write. Nothing committed is lost, nothing secret
leaks, and the next run converges."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from resources import cli, cmd_recover
from resources.engine import PROJECT_ROOT
from resources.tokenserver import TokenServer
from tests.engine_fixtures import PASSPHRASE, Project, new_project
from tests.reliability import stacks
from tests.reliability.servers import OK_BODY, GatedTokenServer, wait_for
from tests.replay_server import ReplayServer

TOTAL, BROKEN = 20, 3


@pytest.fixture()
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Project:
    proj = new_project(tmp_path)
    proj.state_dir.mkdir()
    # The CLI, when run in-process, works on this project and its own backend.
    monkeypatch.setenv("CELLOSIGN_PROJECT_DIR", str(proj.root))
    monkeypatch.setenv("PULUMI_BACKEND_URL", f"file://{proj.state_dir}")
    monkeypatch.setenv("PULUMI_CONFIG_PASSPHRASE", PASSPHRASE)
    return proj


@pytest.fixture()
def good() -> Iterator[TokenServer]:
    with TokenServer() as srv:
        for i in range(1, TOTAL + 1):
            srv.set_account(f"u{i:02d}", stacks.password(i))
        yield srv


def everything_written(project: Project, out: str) -> dict[str, str]:
    review = project.root / "review" / "test.cellosign.yaml"
    return {"CLI output": out, "engine output": project.output_text(), "state files": project.state_text(),
            "stack export": json.dumps(project.exported()),
            "review copy": review.read_text(encoding="utf-8") if review.exists() else ""}


ALL_PASSWORDS = [stacks.password(i) for i in range(1, TOTAL + 1)]


# --------------------------------------------------------------------------- partial failure


@pytest.mark.parametrize("where", ["first", "last"])
def test_partial_failure_commits_the_good_reports_the_bad_and_converges(
        where: str, project: Project, good: TokenServer, capsys: pytest.CaptureFixture[str],
        record_property: Any) -> None:
    # 17 secrets against a working endpoint; 3 whose endpoints fail three different ways,
    # declared first (their failures come while the good ones still wait) or last.
    down, bad_password, timeout = (1, 2, 3) if where == "first" else (18, 19, 20)
    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))  # bound, not listening: connection refused
    down_port = holder.getsockname()[1]
    slow = ReplayServer({"delay_s": 30, "body": OK_BODY.decode()}, path="/oauth2/token").start()
    good.remove_account(f"u{bad_password:02d}")  # unknown user: invalid_grant
    broken = {down: "connection_failed", bad_password: "oauth_error", timeout: "timeout"}
    urls = {i: good.url for i in range(1, TOTAL + 1)}
    urls[down] = f"http://127.0.0.1:{down_port}/oauth2/token"
    urls[timeout] = slow.url
    project.write(stacks.declarations(TOTAL))
    stacks.configure(project, urls)
    fixed_server: TokenServer | None = None
    try:
        assert cli.main(["up", "--stack", "test"]) == 1
        out = capsys.readouterr()
        first_out = out.out + out.err
        committed = set(project.resources())
        good_names = {stacks.name(i) for i in range(1, TOTAL + 1) if i not in broken}
        lost = sorted(good_names - committed)
        unreported = [f"{stacks.name(i)} [{kind}]" for i, kind in broken.items()
                      if f"token test failed for secret '{stacks.name(i)}' [{kind}]" not in first_out]
        record_property("lost", lost)
        assert not lost, f"good secrets not committed: {lost}"
        assert committed == good_names, committed
        assert not unreported, f"failures not reported with their kind: {unreported}\n{first_out[-4000:]}"
        assert stacks.review_names(project) == good_names  # the review copy follows state
        requests_before = good.requests_seen

        # The endpoints are fixed: the next up touches only the three.
        holder.close()
        fixed_server = TokenServer(port=down_port).start()
        fixed_server.set_account(f"u{down:02d}", stacks.password(down))
        good.set_account(f"u{bad_password:02d}", stacks.password(bad_password))
        slow.spec = {"body": OK_BODY.decode()}
        result = project.up()
        assert result.summary.resource_changes == {"create": BROKEN, "same": TOTAL - BROKEN + 1}
        assert good.requests_seen - requests_before == 1, "a good secret was tested again"
        assert fixed_server.requests_seen == 1
        assert set(project.resources()) == good_names | {stacks.name(i) for i in broken}
        assert project.up().summary.resource_changes == {"same": TOTAL + 1}
        leaked = stacks.leaks(ALL_PASSWORDS, **everything_written(project, first_out))
        record_property("leaked", leaked)
        record_property("cases", TOTAL)
        assert not leaked
    finally:
        holder.close()
        slow.stop()
        if fixed_server is not None:
            fixed_server.stop()


# --------------------------------------------------------------------------- SIGKILL mid-flight

KILLED = 6


def test_sigkill_during_token_tests_then_documented_recovery_converges(
        project: Project, capsys: pytest.CaptureFixture[str], record_property: Any) -> None:
    with GatedTokenServer() as srv:
        for i in range(1, KILLED + 1):
            srv.set_account(f"u{i:02d}", stacks.password(i))
        project.write(stacks.declarations(KILLED, timeouts=(5, 90)))
        stacks.configure(project, dict.fromkeys(range(1, KILLED + 1), srv.url))
        proc = stacks.cli_process(project, "up", "--stack", "test")
        assert wait_for(srv.arrived.is_set, 120), "no token test started"
        wait_for(lambda: srv.held >= 4, 3)  # the provider runs up to four at once
        in_flight = srv.held
        killed = stacks.kill_tree(proc)
        proc.communicate(timeout=30)
        survivors = stacks.wait_gone([pid for pid, _, _ in killed])
    assert any(comm.startswith("pulumi-resource") for _, _, comm in killed), killed
    assert not survivors, f"processes survived SIGKILL: {survivors}"

    # What the killed run left: a lock, pending operations, no half-written file.
    half = stacks.half_written(project)
    pending = stacks.checkpoint(project)["checkpoint"]["latest"].get("pending_operations") or []
    assert stacks.lock_files(project), "no lock left behind"
    assert len(pending) >= 1 and all(op["type"] == "creating" for op in pending), pending
    assert not half, half
    assert in_flight >= 1

    with GatedTokenServer() as srv:
        srv.release()
        for i in range(1, KILLED + 1):
            srv.set_account(f"u{i:02d}", stacks.password(i))
        stacks.configure(project, dict.fromkeys(range(1, KILLED + 1), srv.url))
        capsys.readouterr()
        # Before recovery: refused by the lock, and the operator is told so.
        assert cli.main(["up", "--stack", "test"]) == 1
        refused = capsys.readouterr()
        assert "locked" in refused.out + refused.err
        # The documented recovery, then up converges.
        assert cmd_recover.recover("test") == 0
        recovered = capsys.readouterr().out
        assert "removed the lock" in recovered and "cleared pending operation" in recovered
        assert not stacks.lock_files(project)
        assert not stacks.checkpoint(project)["checkpoint"]["latest"].get("pending_operations")
        assert cli.main(["up", "--stack", "test"]) == 0
        converged = capsys.readouterr().out
        assert "interrupted while" not in converged  # no pending operation left to warn about
        assert project.up().summary.resource_changes == {"same": KILLED + 1}
        assert cmd_recover.recover("test") == 0  # nothing left to recover: says so, changes nothing
        assert "no lock" in capsys.readouterr().out
    names = {stacks.name(i) for i in range(1, KILLED + 1)}
    lost = sorted(names - set(project.resources()))
    leaked = stacks.leaks(ALL_PASSWORDS, **everything_written(project, refused.out + recovered + converged))
    record_property("lost", lost + half)
    record_property("leaked", leaked)
    assert not lost and stacks.review_names(project) == names
    assert not leaked


# --------------------------------------------------------------------------- two ups at once


def test_second_up_on_one_stack_is_refused_by_the_lock(project: Project, record_property: Any) -> None:
    with GatedTokenServer() as srv:
        for i in range(1, 4):
            srv.set_account(f"u{i:02d}", stacks.password(i))
        project.write(stacks.declarations(3, timeouts=(5, 90)))
        stacks.configure(project, dict.fromkeys(range(1, 4), srv.url))
        first = stacks.cli_process(project, "up", "--stack", "test")
        try:
            # All three token tests held in flight: the first run's checkpoint is written and waits.
            assert wait_for(lambda: srv.held == 3, 120), "the first up never reached its token tests"
            state_before = (project.state_dir / ".pulumi" / "stacks" / "cellosign-iac" / "test.json").read_bytes()
            code, second_out = stacks.finish(stacks.cli_process(project, "up", "--stack", "test"))
            assert code == 1 and "locked" in second_out, second_out[-3000:]
            state_after = (project.state_dir / ".pulumi" / "stacks" / "cellosign-iac" / "test.json").read_bytes()
            assert state_after == state_before, "the refused run changed the state"
            # recover refuses too: the lock holder is alive.
            code, recover_out = stacks.finish(subprocess.Popen(
                [sys.executable, "-m", "resources.cmd_recover", "--project-dir", str(project.root),
                 "--stack", "test"], cwd=PROJECT_ROOT, env=stacks.cli_env(project), stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT, text=True))
            assert code == 1 and "still going on" in recover_out, recover_out
            assert first.poll() is None, "the first up did not survive the second one"
            srv.release()
            code, first_out = stacks.finish(first)
        finally:
            if first.poll() is None:
                stacks.kill_tree(first)
                first.communicate(timeout=30)
        assert code == 0, first_out[-3000:]
        assert srv.held == 3
    names = {stacks.name(i) for i in range(1, 4)}
    latest = stacks.checkpoint(project)["checkpoint"]["latest"]
    lost = sorted(names - set(project.resources())) + stacks.half_written(project)
    record_property("lost", lost)
    leaked = stacks.leaks(ALL_PASSWORDS, first=first_out, second=second_out, recover=recover_out,
                          state=project.state_text())
    record_property("leaked", leaked)
    assert not latest.get("pending_operations") and not stacks.lock_files(project)
    assert not lost and stacks.review_names(project) == names
    assert not leaked


# --------------------------------------------------------------------------- writers killed mid-write

WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from resources.render import write_atomically
    target, a, b = Path(sys.argv[1]), Path(sys.argv[2]).read_text(), Path(sys.argv[3]).read_text()
    print("ready", flush=True)
    for i in range(100000):
        write_atomically(target, a if i % 2 else b)
""")


def test_review_copy_is_never_half_written_when_the_writer_is_killed(tmp_path: Path, record_property: Any) -> None:
    rng = random.Random(5)
    versions = [tmp_path / "a.txt", tmp_path / "b.txt"]
    for n, path in enumerate(versions):
        path.write_text(yaml.safe_dump({"version": n, "pad": ["x" * 100] * 20000}))
    contents = {p.read_text() for p in versions}
    review = tmp_path / "review"
    review.mkdir()
    target = review / "test.cellosign.yaml"
    target.write_text(versions[0].read_text())
    kills, torn = 8, []
    for _ in range(kills):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(target), *map(str, versions)], cwd=PROJECT_ROOT,
                                stdout=subprocess.PIPE, text=True, start_new_session=True)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.05, 0.4))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        if target.read_text() not in contents:
            torn.append(f"after a kill: {len(target.read_text())} bytes")
    # Temporary files a kill may leave next to the review copy are what `recover` removes.
    leftovers = sorted(review.glob(f".{target.name}.*.tmp"))
    record_property("cases", kills)
    record_property("lost", torn)
    assert not torn
    assert all(p.name.startswith(".test.cellosign.yaml.") for p in leftovers)


def test_recover_never_removes_a_lock_it_cannot_prove_stale(project: Project, capsys: pytest.CaptureFixture[str],
                                                            record_property: Any) -> None:
    project.write(stacks.declarations(1))
    project.stack()  # the stack exists, empty
    # A lock taken on another machine (shared state): recover cannot see that process.
    folder = project.state_dir / ".pulumi" / "locks" / "organization" / "cellosign-iac" / "test"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "0f1e2d3c-0000-4000-8000-000000000001.json").write_text(json.dumps(
        {"pid": 4242, "username": "ci", "hostname": "build-agent-7", "timestamp": "2026-01-01T00:00:00Z"}))
    assert cli.main(["up", "--stack", "test"]) == 1
    assert "locked" in "".join(capsys.readouterr())
    with pytest.raises(cmd_recover.RecoverRefused, match="another host: ci@build-agent-7 \\(pid 4242\\)"):
        cmd_recover.recover("test")
    assert stacks.lock_files(project), "the lock was removed without --force"
    assert cmd_recover.recover("test", force=True) == 0
    assert not stacks.lock_files(project)
    # A stack that does not exist is an error, never created by recover.
    with pytest.raises(cmd_recover.CellosignError, match="does not exist"):
        cmd_recover.recover("no-such-stack")
    record_property("lost", [])
