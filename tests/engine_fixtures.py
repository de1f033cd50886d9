"""Shared helpers for tests that drive the real Pulumi engine.

Each test project lives in a temporary folder: a copy of Pulumi.yaml, a
declarations file, and a file:// backend of its own, so tests never touch the
repository's stacks.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from resources.engine import PROJECT_ROOT, engine_env, open_stack, pulumi_bin_dir
from resources.program import program_for

PASSPHRASE = "test-passphrase-not-a-secret"


@dataclass
class Project:
    root: Path
    stack_name: str = "test"
    lines: list[str] = field(default_factory=list)

    @property
    def declarations(self) -> Path:
        return self.root / "cellosign.yaml"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    def write(self, yaml_text: str) -> None:
        self.declarations.write_text(textwrap.dedent(yaml_text))

    def stack(self) -> auto.Stack:
        return open_stack(self.stack_name, program_for(self.declarations), work_dir=self.root,
                          state_dir=self.state_dir, passphrase=PASSPHRASE)

    def set_config(self, values: dict[str, Any], secret: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        st = self.stack()
        for key, value in values.items():
            st.set_config(key, auto.ConfigValue(str(value), secret=key in secret))

    def _out(self, line: str) -> None:
        self.lines.append(line)

    def up(self) -> auto.UpResult:
        return self.stack().up(on_output=self._out, color="never")

    def preview(self) -> auto.PreviewResult:
        return self.stack().preview(on_output=self._out, color="never")

    def refresh(self) -> auto.RefreshResult:
        return self.stack().refresh(on_output=self._out, color="never")

    def destroy(self) -> auto.DestroyResult:
        return self.stack().destroy(on_output=self._out, color="never")

    def output_text(self) -> str:
        return "\n".join(self.lines)

    def state_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.state_dir.rglob("*") if p.is_file())

    def exported(self) -> dict[str, Any]:
        """`pulumi stack export` WITHOUT --show-secrets (the Automation API's
        export_stack passes --show-secrets, so it is not used here)."""
        env = {**os.environ, **engine_env(self.state_dir, PASSPHRASE)}
        proc = subprocess.run(
            [str(pulumi_bin_dir() / "pulumi"), "stack", "export", "--stack", self.stack_name],
            cwd=self.root, env=env, capture_output=True, text=True, check=True, timeout=120,
        )
        return json.loads(proc.stdout)["deployment"]  # type: ignore[no-any-return]

    def resources(self, type_suffix: str = "cellosign:Secret") -> dict[str, dict[str, Any]]:
        out = {}
        for res in self.exported().get("resources", []):
            if res["type"].endswith(type_suffix):
                out[res["urn"].rsplit("::", 1)[-1]] = res
        return out


def new_project(tmp_path: Path, stack_name: str = "test") -> Project:
    root = tmp_path / "project"
    root.mkdir()
    shutil.copy(PROJECT_ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
    return Project(root=root, stack_name=stack_name)
