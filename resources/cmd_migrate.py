"""`cellosign-iac migrate --to URL [--stack S …]`: move stacks to another state backend.

Typical use: from the local ``file://`` backend to shared PostgreSQL state::

    export PGPASSWORD=…   # or put the password in the URL
    cellosign-iac migrate --to 'postgres://pulumi@db.example:5432/pulumi?sslmode=require'

For each stack (every stack of the project in the source backend unless
``--stack`` names some):

1. the source must be quiet: no lock held by a running update (file:// source)
   and no pending operation left in its checkpoint;
2. its checkpoint is exported *with secrets encrypted* (``pulumi stack
   export``, no ``--show-secrets``) into a private temporary file;
3. the stack is created in the target backend from this project folder, so
   ``Pulumi.<stack>.yaml`` (config, ``encryptionsalt``) is reused untouched,
   and the checkpoint is imported (``pulumi stack import``) with its secrets
   provider state; user stack tags are copied;
4. source and target are compared: every stack output (decrypted, with its
   secret flag) and every resource (URN, type, id, inputs and outputs, secrets
   decrypted in memory). Any difference fails the stack; the report names the
   field, never a value.

The source is never modified: it stays a backup, and ``--from`` the new URL
``--to`` the old one moves back. A target stack that already holds the same
state is reported as already migrated; one holding different state is left
alone unless ``--force``.

Secrets: both sides use the same passphrase (``PULUMI_CONFIG_PASSPHRASE`` or
``…_FILE``), as every command of this project does. The checkpoint travels
encrypted, with its secrets provider state (the passphrase salt); Pulumi
re-encrypts each value on import (new nonce, same key), which is why the
comparison decrypts both sides. Plaintext exists only in this process's memory
during the comparison and is never printed or written.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from .engine import engine_env, project_dir, pulumi_bin_dir
from .errors import CellosignError

SECRET_SIG = "4dabf18193072939515e22adb298388d"  # marks a secret value in a Pulumi checkpoint


class MigrationError(CellosignError):
    """A stack could not be moved, or the target does not match the source."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--to", dest="to_url", required=True, metavar="URL",
                        help="target backend, e.g. postgres://user@host:5432/db?sslmode=require "
                             "(the password may come from PGPASSWORD instead of the URL)")
    parser.add_argument("--from", dest="from_url", default=None, metavar="URL",
                        help="source backend (default: the current one: PULUMI_BACKEND_URL, "
                             "else file://<project-dir>/.pulumi/state)")
    parser.add_argument("--stack", "-s", dest="stacks", action="append", default=None, metavar="NAME",
                        help="stack to move (repeatable; default: every stack of the project in the source)")
    parser.add_argument("--force", action="store_true",
                        help="replace a target stack that already holds different state")
    parser.add_argument("--dry-run", action="store_true", help="check and list what would move; change nothing")


# ---------------------------------------------------------------- backends
def redact(url: str) -> str:
    """The URL with its password replaced, for messages."""
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError:
        return "<unparseable URL>"
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:****@{parts.hostname or ''}"
    if parts.port:
        netloc += f":{parts.port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@dataclass
class Backend:
    """One state backend seen from the project folder, driven through the Pulumi CLI."""

    url: str
    work_dir: Path
    _env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # The project's settings for every Pulumi process, with this backend (and no local
        # state folder created on the way, which engine_env does when no backend is set).
        saved = os.environ.get("PULUMI_BACKEND_URL")
        os.environ["PULUMI_BACKEND_URL"] = self.url
        try:
            self._env = engine_env()
        finally:
            if saved is None:
                del os.environ["PULUMI_BACKEND_URL"]
            else:
                os.environ["PULUMI_BACKEND_URL"] = saved
        for key in ("PULUMI_SKIP_UPDATE_CHECK", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"):
            os.environ.setdefault(key, self._env[key])
        self._command = auto.PulumiCommand(root=str(pulumi_bin_dir().parent), skip_version_check=True)

    @property
    def label(self) -> str:
        return redact(self.url)

    def _scrub(self, text: str) -> str:
        password = urllib.parse.urlsplit(self.url).password
        if password:
            text = text.replace(password, "****").replace(urllib.parse.quote(password, safe=""), "****")
        return text

    def pulumi(self, *args: str) -> str:
        try:
            return self._command.run(list(args), str(self.work_dir), self._env).stdout
        except auto.CommandError as exc:
            raise MigrationError(f"`pulumi {' '.join(args[:2])}` on {self.label} failed:\n"
                                 f"{self._scrub(str(exc)).strip()}") from None

    def stack_names(self) -> list[str]:
        listed = json.loads(self.pulumi("stack", "ls", "--json") or "[]")
        return [str(item["name"]).rsplit("/", 1)[-1] for item in listed]

    def export(self, stack: str, show_secrets: bool = False) -> dict[str, Any]:
        args = ["stack", "export", "--stack", stack] + (["--show-secrets"] if show_secrets else [])
        return json.loads(self.pulumi(*args))  # type: ignore[no-any-return]


    def tags(self, stack: str) -> dict[str, str]:
        try:
            tags = json.loads(self.pulumi("stack", "tag", "ls", "--json", "--stack", stack) or "{}")
        except MigrationError:
            return {}
        return {str(k): str(v) for k, v in tags.items() if not str(k).startswith("pulumi:")}

    def create_stack(self, stack: str) -> None:
        # From the project folder: an existing Pulumi.<stack>.yaml (encryptionsalt, config) is reused as is.
        self.pulumi("stack", "init", stack, "--secrets-provider", "passphrase")

    def import_(self, stack: str, checkpoint: dict[str, Any], force: bool = False) -> None:
        with tempfile.TemporaryDirectory(prefix="cellosign-migrate-") as folder:
            path = Path(folder) / f"{stack}.checkpoint.json"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                json.dump(checkpoint, handle)
            self.pulumi("stack", "import", "--stack", stack, "--file", str(path), *(["--force"] if force else []))

    def lock_files(self, stack: str, project: str) -> list[Path]:
        """Locks held on a file:// backend (other backends: the import itself is refused while locked)."""
        if not self.url.startswith("file://"):
            return []
        locks = Path(urllib.parse.unquote(urllib.parse.urlsplit(self.url).path)) / ".pulumi" / "locks"
        # Project-scoped stacks lock under organization/<project>/<stack>/<id>.json.
        return sorted(locks.glob(f"**/{project}/{stack}/*.json")) if locks.is_dir() else []

    def view(self, stack: str) -> StackView:
        """The stack's state with secrets decrypted (one ``stack export --show-secrets``, kept in memory)."""
        deployment = self.export(stack, show_secrets=True).get("deployment") or {}
        resources = {str(r["urn"]): r for r in deployment.get("resources") or []}
        outputs: dict[str, tuple[Any, bool]] = {}
        for res in resources.values():
            if res.get("type") == "pulumi:pulumi:Stack" and not res.get("parent"):
                # What `pulumi stack output --show-secrets` prints, with the secret flag.
                for key, value in (res.get("outputs") or {}).items():
                    if isinstance(value, dict) and SECRET_SIG in value:
                        outputs[key] = (json.loads(value.get("plaintext") or "null"), True)
                    else:
                        outputs[key] = (value, False)
        return StackView(outputs=outputs, resources=resources,
                         secrets_provider=(deployment.get("secrets_providers") or {}).get("type"))


# ---------------------------------------------------------------- comparing
@dataclass
class StackView:
    """What a stack holds, secrets decrypted: kept in memory only, never printed."""

    outputs: dict[str, tuple[Any, bool]]
    resources: dict[str, dict[str, Any]]
    secrets_provider: str | None = None

    def __repr__(self) -> str:  # never show values
        return f"StackView({len(self.resources)} resources, outputs={sorted(self.outputs)})"


def differences(before: StackView, after: StackView) -> list[str]:
    """Where ``after`` differs from ``before``, naming fields only (values may be secret)."""
    found: list[str] = []
    for key in sorted(set(before.outputs) | set(after.outputs)):
        if key not in after.outputs:
            found.append(f"stack output '{key}' is missing")
        elif key not in before.outputs:
            found.append(f"stack output '{key}' is new")
        elif before.outputs[key][0] != after.outputs[key][0]:
            found.append(f"stack output '{key}' has a different value")
        elif before.outputs[key][1] != after.outputs[key][1]:
            found.append(f"stack output '{key}' lost or gained its secret flag")
    for urn in sorted(set(before.resources) | set(after.resources)):
        if urn not in after.resources:
            found.append(f"resource {urn} is missing")
            continue
        if urn not in before.resources:
            found.append(f"resource {urn} is new")
            continue
        old, new = before.resources[urn], after.resources[urn]
        for name in sorted(set(old) | set(new)):
            if isinstance(old.get(name), dict) and isinstance(new.get(name), dict):
                for sub in sorted(set(old[name]) | set(new[name])):
                    if old[name].get(sub) != new[name].get(sub):
                        found.append(f"resource {urn}: {name}.{sub} differs")
            elif old.get(name) != new.get(name):
                found.append(f"resource {urn}: {name} differs")
    if before.secrets_provider != after.secrets_provider:
        found.append(f"secrets provider changed from {before.secrets_provider} to {after.secrets_provider}")
    return found


# ---------------------------------------------------------------- migrating
@dataclass
class StackReport:
    stack: str
    status: str  # "migrated", "already migrated", "would migrate", "failed"
    resources: int = 0
    outputs: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "failed"

    def line(self) -> str:
        text = f"{self.stack}: {self.status} ({self.resources} resources, {self.outputs} stack outputs)"
        if self.status == "migrated":
            text += "; outputs and resources identical before and after"
        return text + "".join(f"\n    - {p}" for p in self.problems)


def _project_name(work_dir: Path) -> str:
    for line in (work_dir / "Pulumi.yaml").read_text().splitlines():
        if line.startswith("name:"):
            return line.split(":", 1)[1].strip().strip("'\"")
    raise MigrationError(f"{work_dir / 'Pulumi.yaml'} has no project name")


def migrate_stack(name: str, source: Backend, target: Backend, *, force: bool = False,
                  dry_run: bool = False, target_stacks: list[str] | None = None) -> StackReport:
    project = _project_name(source.work_dir)
    locks = source.lock_files(name, project)
    if locks:
        raise MigrationError(f"stack '{name}' is locked in {source.label} by a running update "
                             f"({locks[0].name}); wait for it to end, then run migrate again")
    checkpoint = source.export(name)
    deployment = checkpoint.get("deployment") or {}
    if deployment.get("pending_operations"):
        raise MigrationError(f"stack '{name}' has pending operations from an interrupted update; "
                             f"run `cellosign-iac refresh --stack {name}` against the source first")
    before = source.view(name)
    report = StackReport(name, "would migrate", resources=len(before.resources), outputs=len(before.outputs))

    existing = name in (target_stacks if target_stacks is not None else target.stack_names())
    replace = False
    if existing:
        current = target.view(name)
        if not differences(before, current):
            report.status = "already migrated"
            return report
        if current.resources and not force:
            report.status = "failed"
            report.problems = [f"the target already has a stack '{name}' with different state; "
                               "nothing was changed (use --force to replace it)"]
            return report
        replace = bool(current.resources)
    if dry_run:
        return report

    if not existing:
        target.create_stack(name)
    target.import_(name, checkpoint, force=replace)
    for key, value in source.tags(name).items():
        target.pulumi("stack", "tag", "set", key, value, "--stack", name)

    problems = differences(before, target.view(name))
    report.status = "failed" if problems else "migrated"
    report.problems = problems
    return report


def migrate(stacks: list[str] | None, source: Backend, target: Backend, *, force: bool = False,
            dry_run: bool = False, out: Any = None) -> list[StackReport]:
    out = out or sys.stdout
    if source.url.rstrip("/") == target.url.rstrip("/"):
        raise MigrationError(f"source and target are the same backend ({source.label})")
    names = stacks or source.stack_names()
    if not names:
        raise MigrationError(f"no stacks of this project in {source.label}")
    known = source.stack_names() if stacks else names
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MigrationError(f"no stack {', '.join(map(repr, unknown))} in {source.label} (it has: {', '.join(known)})")
    print(f"moving {len(names)} stack(s) from {source.label} to {target.label}", file=out, flush=True)
    target_stacks = target.stack_names()
    reports = []
    for name in names:
        try:
            report = migrate_stack(name, source, target, force=force, dry_run=dry_run, target_stacks=target_stacks)
        except MigrationError as exc:
            report = StackReport(name, "failed", problems=[str(exc)])
        reports.append(report)
        print(report.line(), file=out, flush=True)
    return reports


def current_backend(work_dir: Path) -> str:
    """What every other command of the project uses: PULUMI_BACKEND_URL, else the local file:// state."""
    if os.environ.get("PULUMI_BACKEND_URL"):
        return os.environ["PULUMI_BACKEND_URL"]
    folder = (work_dir / ".pulumi" / "state").resolve()
    if not folder.is_dir():
        raise MigrationError(f"no local state in {folder}; name the source with --from URL")
    return f"file://{folder}"


def run(args: argparse.Namespace) -> int:
    # The project folder: `cellosign-iac --project-dir`, CELLOSIGN_PROJECT_DIR, or this repository.
    given = getattr(args, "project_dir", None)
    work_dir = Path(given).resolve() if given else project_dir()
    if not (work_dir / "Pulumi.yaml").is_file():
        print(f"cellosign-iac: no Pulumi.yaml in {work_dir}", file=sys.stderr)
        return 2
    for url in (args.to_url, args.from_url):
        if url is not None and "://" not in url:
            print(f"cellosign-iac: {url!r} is not a backend URL (postgres://…, file://…)", file=sys.stderr)
            return 2
    try:
        source = Backend(args.from_url or current_backend(work_dir), work_dir)
        target = Backend(args.to_url, work_dir)
        reports = migrate(args.stacks, source, target, force=args.force, dry_run=args.dry_run)
    except MigrationError as exc:
        print(f"cellosign-iac: {exc}", file=sys.stderr)
        return 2
    failed = [r.stack for r in reports if not r.ok]
    if failed:
        print(f"cellosign-iac: migration failed for {', '.join(failed)}; the source is unchanged", file=sys.stderr)
        return 1
    if not args.dry_run:
        print(f"done. From now on set PULUMI_BACKEND_URL to the --to URL ({target.label}) for every command "
              "(the password in the URL or in PGPASSWORD). The source was not changed: it is a backup, "
              "and `migrate --from <new URL> --to <old URL>` moves back.")
    return 0
