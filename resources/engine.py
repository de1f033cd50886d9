"""Driving the real Pulumi engine through the Automation API, offline.

Every Pulumi call of this project goes through here, so each one runs with the
same settings: a local ``file://`` backend (inside the project unless
``PULUMI_BACKEND_URL`` says otherwise), the passphrase secrets provider, no
update check and no automatic plugin download.

The program runs *inline*: the Automation API serves it from this Python
process, and the CLI (built by ``.ci/setup``) runs the engine and starts the
Python dynamic provider plugin from the project's virtual environment.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from pulumi import automation as auto

PROJECT_ROOT = Path(__file__).resolve().parents[1]
PROJECT_NAME = "cellosign-iac"
# Only for the bundled example and the tests: real stacks set PULUMI_CONFIG_PASSPHRASE
# (or PULUMI_CONFIG_PASSPHRASE_FILE). The example's Pulumi.<stack>.yaml files were
# encrypted with it, which is why it is fixed and public.
EXAMPLE_PASSPHRASE = "cellosign-iac-example-only"


def project_dir() -> Path:
    """The folder with Pulumi.yaml, the stack files, cellosign.yaml and review/:
    this repository, unless CELLOSIGN_PROJECT_DIR (or `cellosign-iac --project-dir`) says otherwise."""
    return Path(os.environ.get("CELLOSIGN_PROJECT_DIR") or PROJECT_ROOT).resolve()


class EngineSetupError(RuntimeError):
    """The Pulumi CLI or its settings are not usable; the message says how to fix it."""


def pulumi_bin_dir() -> Path:
    """The folder holding ``pulumi`` and the Python dynamic provider plugin."""
    candidates = [Path(sys.prefix) / "bin"]
    if os.environ.get("CELLOSIGN_PULUMI_DIR"):
        candidates.insert(0, Path(os.environ["CELLOSIGN_PULUMI_DIR"]))
    found = shutil.which("pulumi")
    if found:
        candidates.append(Path(found).resolve().parent)
    for folder in candidates:
        if (folder / "pulumi").exists() and (folder / "pulumi-resource-pulumi-python").exists():
            return folder
    raise EngineSetupError(
        "the Pulumi CLI was not found next to the Python dynamic provider plugin "
        "(pulumi-resource-pulumi-python); run `bash .ci/setup` first"
    )


def engine_env(state_dir: Path | None = None, passphrase: str | None = None) -> dict[str, str]:
    """Environment for every Pulumi process: offline, local, deterministic."""
    bin_dir = pulumi_bin_dir()
    env: dict[str, str] = {
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        # Secrets and webhooks are independent: one failed token test must not keep the
        # others from being committed (up and destroy go on; dependents of a failure are skipped).
        "PULUMI_CONTINUE_ON_ERROR": "true",
        "PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK": "true",
        # Pulumi's gRPC debug dump would write config and provider inputs (secrets) in plaintext.
        "PULUMI_DEBUG_GRPC": "",
        # The dynamic provider process must import this package: run it from our venv.
        "PULUMI_RUNTIME_VIRTUALENV": sys.prefix,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": os.environ.get("PULUMI_HOME", str(PROJECT_ROOT / ".pulumi" / "home")),
    }
    backend = os.environ.get("PULUMI_BACKEND_URL")
    if not backend:
        folder = state_dir or project_dir() / ".pulumi" / "state"
        folder.mkdir(parents=True, exist_ok=True)
        backend = f"file://{folder.resolve()}"
    env["PULUMI_BACKEND_URL"] = backend
    if passphrase is not None:
        env["PULUMI_CONFIG_PASSPHRASE"] = passphrase
    elif not (os.environ.get("PULUMI_CONFIG_PASSPHRASE") or os.environ.get("PULUMI_CONFIG_PASSPHRASE_FILE")):
        env["PULUMI_CONFIG_PASSPHRASE"] = EXAMPLE_PASSPHRASE
    return env


def open_stack(
    stack_name: str,
    program: Callable[[], None],
    *,
    work_dir: Path | None = None,
    state_dir: Path | None = None,
    passphrase: str | None = None,
    extra_env: Mapping[str, str] | None = None,
) -> auto.Stack:
    """Create or select ``stack_name`` for the project in ``work_dir`` (Pulumi.yaml + stack files)."""
    env = engine_env(state_dir, passphrase)
    if extra_env:
        env.update(extra_env)
    # The Automation API also reads some of these from our own environment.
    for key in ("PULUMI_SKIP_UPDATE_CHECK", "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION"):
        os.environ.setdefault(key, env[key])
    command = auto.PulumiCommand(root=str(pulumi_bin_dir().parent), skip_version_check=True)
    opts = auto.LocalWorkspaceOptions(
        work_dir=str(work_dir or project_dir()),
        pulumi_home=env["PULUMI_HOME"],
        env_vars=env,
        pulumi_command=command,
    )
    stack = auto.create_or_select_stack(
        stack_name=stack_name, project_name=PROJECT_NAME, program=program, opts=opts
    )
    from .stack_config import ensure_fingerprint_key  # late: stack_config builds on this module

    if ensure_fingerprint_key(stack):
        print(f"created a review fingerprint key for stack '{stack_name}' "
              f"(encrypted in Pulumi.{stack_name}.yaml; commit that file)", file=sys.stderr)
    return stack


def export_deployment(stack: auto.Stack) -> dict[str, Any]:
    """The stack's state as `pulumi stack export` prints it WITHOUT --show-secrets.

    (The Automation API's own export_stack passes --show-secrets: never used here.)
    """
    ws = stack.workspace
    assert isinstance(ws, auto.LocalWorkspace)
    result = ws._run_pulumi_cmd_sync(["stack", "export", "--stack", stack.name])
    deployment: dict[str, Any] = json.loads(result.stdout).get("deployment") or {}
    return deployment
