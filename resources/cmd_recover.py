"""`cellosign-iac recover --stack S`: make a stack usable again after a run was killed.

A run killed hard (SIGKILL, the OOM killer, a cancelled CI job, a lost machine)
leaves behind:

1. its **lock** on the stack: every later `up`, `refresh` or `destroy` is refused
   ("the stack is currently locked by 1 lock(s)");
2. **pending operations** in the checkpoint: the resources it was creating,
   updating or deleting at that moment. Pulumi warns about them on every later
   run ("interrupted while creating") until they are cleared;
3. at most a temporary file next to the review copy (the review copy itself is
   written atomically: it is the old one or the new one, never half of one).

What ``recover`` does, in this order, printing each step:

1. Finds who holds the lock (the lock records user, host and pid). If that
   process still runs on this machine, it stops: that run is alive, not
   interrupted. A lock from another host is only removed with ``--force``.
   Otherwise the lock is removed (``pulumi cancel``).
2. Clears the pending operations: ``pulumi stack export`` (without secrets),
   ``pending_operations`` removed, ``pulumi stack import``. This is safe for this
   project because a Cellosign resource has no remote side: an interrupted create
   or update only ran a token test (or a test delivery) and never wrote state, so
   a pending create is dropped (the next ``up`` creates the resource, with a new
   token test), a pending update leaves the last committed state (the next ``up``
   updates it again) and a pending delete leaves the resource in state (the next
   ``up`` or ``destroy`` deletes it again).
3. Removes stale temporary files next to the review copy and rewrites the review
   copy from state.

Then ``cellosign-iac up --stack S`` converges. Exit codes: 0 recovered (or
nothing to recover), 1 refused (the lock holder is alive, or on another host
without ``--force``) or failed.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import sys
import tempfile
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from .engine import PROJECT_NAME, engine_env, project_dir, pulumi_bin_dir
from .errors import CellosignError
from .review import review_path, write_review

# "created by root@vm (pid 16973) at 2026-12-03T17:58:33Z" in Pulumi's lock refusal.
_HOLDER = re.compile(r"created by (?P<user>[^@\s]+)@(?P<host>\S+) \(pid (?P<pid>\d+)\)")


class RecoverRefused(CellosignError):
    """The stack is locked by a run that is still alive (or cannot be checked)."""


@dataclass(frozen=True)
class LockHolder:
    user: str
    host: str
    pid: int

    def __str__(self) -> str:
        return f"{self.user}@{self.host} (pid {self.pid})"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", "-s", required=True, help="the stack a killed run left locked")
    parser.add_argument("--force", action="store_true",
                        help="also remove a lock held from another host (make sure no run is going on there)")
    parser.add_argument("--review-dir", type=Path, default=None, help=argparse.SUPPRESS)


def run(args: argparse.Namespace) -> int:
    return recover(args.stack, force=args.force, review_dir=args.review_dir)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cellosign-iac recover", description=__doc__.split("\n")[0])
    parser.add_argument("--project-dir", type=Path, default=None)
    add_arguments(parser)
    args = parser.parse_args(argv)
    if args.project_dir is not None:
        os.environ["CELLOSIGN_PROJECT_DIR"] = str(args.project_dir.resolve())
    try:
        return run(args)
    except CellosignError as exc:
        print(f"cellosign-iac: {exc}", file=sys.stderr)
        return 1


# --------------------------------------------------------------------------- the steps


def recover(stack_name: str, *, force: bool = False, review_dir: Path | None = None) -> int:
    stack = _select(stack_name)
    say = lambda text: print(f"recover {stack_name}: {text}", flush=True)  # noqa: E731

    exported = _pulumi(stack, "stack", "export", "--stack", stack_name)
    document: dict[str, Any] = json.loads(exported.stdout)
    deployment = document.get("deployment") or {}
    pending = deployment.get("pending_operations") or []

    # 1. the lock
    holders = _lock_holders(stack, stack_name, document)
    if holders:
        for holder in holders:
            if holder.host == socket.gethostname() and _alive(holder.pid):
                raise RecoverRefused(
                    f"stack '{stack_name}' is locked by a run that is still going on: {holder}. "
                    "Wait for it to end (or stop that process), then run recover again."
                )
            if holder.host != socket.gethostname() and not force:
                raise RecoverRefused(
                    f"stack '{stack_name}' is locked from another host: {holder}. Make sure no run is "
                    "going on there, then run: cellosign-iac recover --stack " + f"{stack_name} --force"
                )
        _pulumi(stack, "cancel", "--yes", "--stack", stack_name)
        say(f"removed the lock left by {', '.join(map(str, holders))}, which no longer runs")
    else:
        say("no lock")

    # 2. pending operations
    if pending:
        for op in pending:
            resource = op.get("resource") or {}
            name = str(resource.get("urn", "?")).rsplit("::", 1)[-1]
            say(f"cleared pending operation: {op.get('type', '?')} {name} (interrupted; "
                f"the next up {_next_step(str(op.get('type')))})")
        deployment = dict(deployment)
        deployment.pop("pending_operations", None)
        _import(stack, stack_name, {**document, "deployment": deployment}, expected=document)
    else:
        say("no pending operations")

    # 3. the review copy
    path = review_path(stack_name, review_dir)
    for stale in sorted(path.parent.glob(f".{path.name}.*.tmp")):
        stale.unlink(missing_ok=True)
        say(f"removed a temporary file left by an interrupted write: {stale.name}")
    final = json.loads(_pulumi(stack, "stack", "export", "--stack", stack_name).stdout).get("deployment") or {}
    written = write_review(stack_name, final, review_dir)
    say(f"review copy rewritten from state: {written}")
    say(f"done; now run: cellosign-iac up --stack {stack_name}")
    return 0


def _next_step(kind: str) -> str:
    return {
        "creating": "creates it, with a new token test",
        "updating": "updates it again from its last committed state",
        "deleting": "deletes it again",
    }.get(kind, "re-applies it")


def _lock_holders(stack: auto.Stack, stack_name: str, document: dict[str, Any]) -> list[LockHolder]:
    """Who holds the stack's lock.

    A file:// backend keeps each lock as a JSON file (user, host, pid): read without
    writing anything. Elsewhere (s3://, postgres://, ...) importing the unchanged state
    is the probe: it needs the lock, and Pulumi's refusal names the holder.
    """
    backend = engine_env()["PULUMI_BACKEND_URL"]
    if backend.startswith("file://"):
        locks = Path(urllib.parse.urlparse(backend).path) / ".pulumi" / "locks"
        folders = [locks / "organization" / PROJECT_NAME / stack_name, locks / stack_name]
        holders = []
        for lock in sorted(f for folder in folders if folder.is_dir() for f in folder.glob("*.json")):
            try:
                info = json.loads(lock.read_text(encoding="utf-8"))
                holders.append(LockHolder(str(info["username"]), str(info["hostname"]), int(info["pid"])))
            except (OSError, ValueError, KeyError, TypeError):
                raise RecoverRefused(f"stack '{stack_name}' is locked by {lock}, which cannot be read") from None
        return holders
    try:
        _import(stack, stack_name, document, expected=document)
    except auto.ConcurrentUpdateError as exc:
        holders = [LockHolder(m["user"], m["host"], int(m["pid"])) for m in _HOLDER.finditer(str(exc))]
        if not holders:
            raise RecoverRefused(f"stack '{stack_name}' is locked, but the lock does not say by whom:\n{exc}") from None
        return holders
    return []


def _alive(pid: int) -> bool:
    """Does process ``pid`` still run (a zombie does not; a reused pid running something else does not)?"""
    proc = Path(f"/proc/{pid}")
    if proc.exists():
        try:
            stat = (proc / "stat").read_text()
            state = stat[stat.rindex(")") + 2]
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        except (OSError, ValueError, IndexError):
            return True
        return state not in "ZX" and comm.startswith("pulumi")
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return not Path("/proc").is_dir()  # no /proc here: trust the signal check


# --------------------------------------------------------------------------- Pulumi calls


def _select(stack_name: str) -> auto.Stack:
    """The existing stack (never creates one: a misspelt name is an error)."""
    env = engine_env()
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(project_dir()), pulumi_home=env["PULUMI_HOME"], env_vars=env,
        pulumi_command=auto.PulumiCommand(root=str(pulumi_bin_dir().parent), skip_version_check=True),
    )
    try:
        return auto.select_stack(stack_name=stack_name, project_name=PROJECT_NAME, program=lambda: None, opts=opts)
    except auto.StackNotFoundError:
        raise CellosignError(f"stack '{stack_name}' does not exist (backend {env['PULUMI_BACKEND_URL']})") from None


def _pulumi(stack: auto.Stack, *args: str) -> auto.CommandResult:
    ws = stack.workspace
    assert isinstance(ws, auto.LocalWorkspace)
    return ws._run_pulumi_cmd_sync(list(args))


def _import(stack: auto.Stack, stack_name: str, document: dict[str, Any], *, expected: dict[str, Any]) -> None:
    """`pulumi stack import` of ``document`` (ciphertext only: exported without --show-secrets),
    provided the stack still holds ``expected``: a run that changed it meanwhile is never overwritten."""
    current = json.loads(_pulumi(stack, "stack", "export", "--stack", stack_name).stdout)
    if current != expected:
        raise RecoverRefused(f"stack '{stack_name}' changed while recover was running (another run?); "
                             "nothing was imported: run recover again")
    with tempfile.TemporaryDirectory(prefix="cellosign-recover-") as folder:
        path = Path(folder) / "state.json"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(document, fh)
        _pulumi(stack, "stack", "import", "--file", str(path), "--stack", stack_name)


if __name__ == "__main__":
    sys.exit(main())
