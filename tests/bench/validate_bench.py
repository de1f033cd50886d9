"""`cellosign-iac validate` against check-jsonschema on the same declaration files.

The files are generated (seeded, so every run checks the same text) into a
temporary folder: each holds one to four secrets of both conventions, a third
of them a webhook, written with the variety real files have (references and
literals, lists and comma-separated scopes, timeouts, comments). About one file
in eight carries a mistake (a misspelt or unknown field, a literal password, a
non-loopback http:// url, a client_id that is not a GUID, an empty scope, a
duplicate name, ...).

Both tools run as the user runs them, one process each over the same file list:

    .venv/bin/cellosign-iac validate FILE...
    .venv/bin/check-jsonschema --schemafile schemas/declarations.schema.json FILE...

Wall time and CPU seconds (process start-up included) are measured for each,
alternating which goes first, and the medians compared.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from resources.engine import PROJECT_ROOT

from .measure import Sample, measure

BIN = PROJECT_ROOT / ".venv" / "bin"
SCHEMA = PROJECT_ROOT / "schemas" / "declarations.schema.json"
TOOLS = ("cellosign-iac validate", "check-jsonschema")

_SCOPES = ["[read, write]", "read,write", "[https://graph.microsoft.com/.default]", "{config: scopes}", "read"]
_MISTAKES = (
    ("misspelt field", lambda t: t.replace("    grant_type:", "    grant_typ:", 1)),
    ("unknown field", lambda t: t.replace("    url:", "    colour: blue\n    url:", 1)),
    ("literal password", lambda t: re.sub(r"(password|client_secret): \{[^}]*\}", r"\1: hunter2-literal", t, count=1)),
    ("remote http url", lambda t: re.sub(r"url: https://", "url: http://", t, count=1)),
    ("client_id not a GUID", lambda t: re.sub(r"client_id: [0-9a-f-]{36}", "client_id: not-a-guid", t, count=1)),
    ("empty scope", lambda t: re.sub(r"scope: .*", "scope: []", t, count=1)),
    ("duplicate name", lambda t: re.sub(r"name: s1-", "name: s0-", t, count=1)),
    ("missing version", lambda t: t.replace("version: 1\n", "", 1)),
)


def _secret(rng: random.Random, file_no: int, index: int) -> list[str]:
    name = f"s{index}-{file_no:04d}"
    host = rng.choice(["login.example.com", "idp.example.org", "auth.example.net:8443"])
    url = rng.choice([f"https://{host}/oauth2/token", "{config: tokenUrl}", f"https://{host}/t?tenant=acme"])
    lines = [f"  - name: {name}"]
    if rng.random() < 0.5:
        lines += ["    convention: general", f"    url: {url}", "    grant_type: password",
                  f"    scope: {rng.choice(_SCOPES)}", f"    username: svc-{file_no}-{index}@example.com",
                  rng.choice(["    password: {config: crmPassword}", "    password: {env: CRM_PASSWORD}"])]
    else:
        lines += ["    convention: msgraph", f"    url: {url}", "    grant_type: client_credentials",
                  "    scope: https://graph.microsoft.com/.default",
                  f"    client_id: {rng.randrange(16**8):08x}-0f05-46cc-8741-{rng.randrange(16**12):012x}",
                  "    client_secret: {config: graphSecret}"]
    if rng.random() < 0.4:
        lines.append(f"    description: secret {index} of file {file_no} # for reviewers")
    if rng.random() < 0.2:
        lines.append(f"    timeouts: {{connect: {rng.choice([2, 2.5, 5])}, read: {rng.choice([10, 30, 120])}}}")
    if rng.random() < 0.15:
        lines.append("    request_format: form")
    return lines


def declaration_file(rng: random.Random, file_no: int) -> tuple[str, str | None]:
    """(text, the mistake it carries or None)."""
    count = rng.randint(1, 4)
    lines = ["# yaml-language-server: $schema=./schemas/declarations.schema.json", "version: 1", "", "secrets:"]
    for index in range(count):
        lines += _secret(rng, file_no, index)
    if rng.random() < 0.33:
        lines += ["", "webhooks:", f"  - name: hook-{file_no}", "    url: https://hooks.example.com/cellosign",
                  "    events: [document.signed, document.declined]", "    secret: s0-" + f"{file_no:04d}",
                  "    headers:", "      X-Request-Source: cellosign"]
    text = "\n".join(lines) + "\n"
    mistake = None
    if rng.random() < 0.125:
        label, mutate = rng.choice(_MISTAKES)
        changed = mutate(text)
        if changed != text:
            text, mistake = changed, label
    return text, mistake


def generate(folder: Path, count: int, seed: int = 6) -> tuple[list[Path], int]:
    """``count`` files in ``folder``; returns them and how many carry a mistake."""
    rng = random.Random(seed)
    files, bad = [], 0
    for file_no in range(count):
        text, mistake = declaration_file(rng, file_no)
        bad += mistake is not None
        path = folder / f"decl-{file_no:04d}.yaml"
        path.write_text(text, encoding="utf-8")
        files.append(path)
    return files, bad


def command(tool: str, files: list[Path]) -> list[str]:
    names = [str(f) for f in files]
    if tool == "cellosign-iac validate":
        return [str(BIN / "cellosign-iac"), "validate", *names]
    return [str(BIN / "check-jsonschema"), "--schemafile", str(SCHEMA), *names]


@dataclass
class ValidateBench:
    files: int
    repeats: int
    log: Callable[[str], None] = print
    samples: dict[str, list[Sample]] = field(default_factory=lambda: {t: [] for t in TOOLS})
    declarations: int = 0
    with_mistakes: int = 0
    reported: dict[str, str] = field(default_factory=dict)

    def run(self) -> dict[str, list[Sample]]:
        folder = Path(tempfile.mkdtemp(prefix="cellosign-bench-validate-"))
        try:
            files, self.with_mistakes = generate(folder, self.files)
            self.declarations = sum(f.read_text().count("\n  - name:") for f in files)
            for rep in range(self.repeats):
                order = TOOLS if rep % 2 == 0 else TOOLS[::-1]
                for tool in order:
                    argv = command(tool, files)
                    proc, sample = measure(lambda argv=argv: subprocess.run(  # type: ignore[misc]
                        argv, cwd=folder, capture_output=True, text=True, timeout=600), watch_provider=False)
                    if proc.returncode not in (0, 1):
                        raise RuntimeError(f"{tool} failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
                    self.reported[tool] = _summary(tool, proc.stdout + proc.stderr, len(files))
                    self.samples[tool].append(sample)
                    self.log(f"  {tool:<24} {len(files)} files #{rep + 1}: {sample.wall_s:6.2f} s wall, "
                             f"{sample.cpu_s:6.2f} s CPU ({self.reported[tool]})")
        finally:
            shutil.rmtree(folder, ignore_errors=True)
        return self.samples


def _summary(tool: str, output: str, count: int) -> str:
    if tool == "cellosign-iac validate":
        last = [line for line in output.splitlines() if "files checked" in line]
        return last[-1] if last else "no summary"
    bad = {m.group(1) for m in re.finditer(r"^\s+(\S+?\.yaml)::", output, re.M)}
    return f"{len(bad)} of {count} files rejected"


def have_check_jsonschema() -> bool:
    return (BIN / "check-jsonschema").exists() or shutil.which("check-jsonschema") is not None
