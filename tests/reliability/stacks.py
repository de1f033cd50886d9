"""Test stacks for the fault tests: N general secrets, the CLI as a subprocess, process trees."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from resources.engine import PROJECT_ROOT
from tests.engine_fixtures import PASSPHRASE, Project


def name(i: int) -> str:
    return f"s{i:02d}"


def password(i: int) -> str:
    return f"CANARY-rel-pw-{i:02d}-7d1e"


def declarations(count: int, *, timeouts: tuple[float, float] = (2.0, 2.0)) -> str:
    """``count`` general secrets s01..sNN, each with its own url and password config value."""
    lines = ["version: 1", "secrets:"]
    for i in range(1, count + 1):
        lines += [
            f"  - name: {name(i)}",
            "    convention: general",
            f"    url: {{config: url{i:02d}}}",
            "    allow_insecure_http: true",
            "    grant_type: password",
            "    scope: [read]",
            f"    username: u{i:02d}",
            f"    password: {{config: pw{i:02d}}}",
            f"    timeouts: {{connect: {timeouts[0]:g}, read: {timeouts[1]:g}}}",
        ]
    return "\n".join(lines) + "\n"


def configure(project: Project, urls: dict[int, str]) -> None:
    """url and password config of every secret (passwords encrypted), in one Pulumi call per value kind."""
    from pulumi import automation as auto

    values = {f"cellosign-iac:url{i:02d}": auto.ConfigValue(url) for i, url in urls.items()}
    values |= {f"cellosign-iac:pw{i:02d}": auto.ConfigValue(password(i), secret=True) for i in urls}
    project.stack().set_all_config(values)


def cli_env(project: Project) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CELLOSIGN_PROJECT_DIR"}
    env.update(PULUMI_BACKEND_URL=f"file://{project.state_dir}", PULUMI_CONFIG_PASSPHRASE=PASSPHRASE)
    return env


def cli_process(project: Project, *args: str) -> subprocess.Popen[str]:
    """``cellosign-iac --project-dir ROOT ARGS`` in a session (process group) of its own."""
    return subprocess.Popen(
        [sys.executable, "-m", "resources.cli", "--project-dir", str(project.root), *args],
        cwd=PROJECT_ROOT, env=cli_env(project), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )


def finish(proc: subprocess.Popen[str], timeout: float = 180) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        kill_tree(proc)
        out, _ = proc.communicate(timeout=30)
        raise AssertionError(f"the CLI did not end within {timeout} s:\n{out[-3000:]}") from None
    return proc.returncode, out


# --------------------------------------------------------------------------- processes


def _stat(pid: int) -> tuple[int, int, str, str] | None:
    """(ppid, pgid, state, comm) of a process, None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[2]), rest[0], text[text.index("(") + 1 : text.rindex(")")]


def descendants(pid: int) -> list[tuple[int, int, str]]:
    """Every process below ``pid``: (pid, pgid, comm). The provider plugin runs in a process group of its own."""
    children: dict[int, list[tuple[int, int, str]]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            stat = _stat(int(entry))
            if stat is not None:
                children.setdefault(stat[0], []).append((int(entry), stat[1], stat[3]))
    found: list[tuple[int, int, str]] = []
    todo = [pid]
    while todo and len(found) < 1000:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child[0])
    return found


def alive(pid: int) -> bool:
    stat = _stat(pid)
    return stat is not None and stat[2] not in "ZX"


def kill_tree(proc: subprocess.Popen[str]) -> list[tuple[int, int, str]]:
    """SIGKILL the CLI's process group and every process below it (by pid); returns what was killed."""
    tree = descendants(proc.pid)
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    for pid, _pgid, _comm in tree:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return tree


def wait_gone(pids: list[int], timeout: float = 10) -> list[int]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        left = [p for p in pids if alive(p)]
        if not left:
            return []
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# --------------------------------------------------------------------------- state and files


def checkpoint(project: Project, stack: str = "test") -> dict[str, Any]:
    """The stack's checkpoint file as the file:// backend wrote it (parsed: it must be whole JSON)."""
    path = project.state_dir / ".pulumi" / "stacks" / "cellosign-iac" / f"{stack}.json"
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def lock_files(project: Project, stack: str = "test") -> list[Path]:
    return sorted((project.state_dir / ".pulumi" / "locks").rglob(f"{stack}/*.json"))


def half_written(project: Project) -> list[str]:
    """Files a reader could see half-written: temporary files, review copies or state that do not parse."""
    bad = [str(p) for p in project.root.rglob("*.tmp")]
    for review in (project.root / "review").glob("*.yaml"):
        try:
            yaml.safe_load(review.read_text(encoding="utf-8"))
        except yaml.YAMLError:
            bad.append(str(review))
    for state in (project.state_dir / ".pulumi" / "stacks").rglob("*.json"):
        try:
            json.loads(state.read_text(encoding="utf-8"))
        except ValueError:
            bad.append(str(state))
    return bad


def leaks(secrets: list[str], **texts: str) -> list[str]:
    return [f"a secret value in {where}" for where, text in texts.items() if any(s in text for s in secrets)]


def review_names(project: Project, stack: str = "test") -> set[str]:
    doc = yaml.safe_load((project.root / "review" / f"{stack}.cellosign.yaml").read_text(encoding="utf-8"))
    return {s["name"] for s in doc.get("secrets") or []}
