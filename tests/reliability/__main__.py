"""``.venv/bin/python -m tests.reliability``: the whole reliability suite, one table.

Runs pytest on the suite's tests and the existing checks it builds on (see
``kinds.py``), collects every test's outcome per fault kind (with what each test
records: ``cases`` tried, anything ``lost`` or ``leaked``), prints a markdown
table and writes it, with every test's result, as JSON.

    .venv/bin/python -m tests.reliability [--json FILE] [--examples N] [PYTEST ARGS...]

Exit 0 when every test passed and nothing was lost or leaked, 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.reliability.kinds import KINDS, files, kind_of

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_JSON = ROOT / ".pulumi" / "reliability" / "latest.json"


@dataclass
class TestResult:
    nodeid: str
    kind: str
    outcome: str = "passed"  # passed | failed | skipped
    cases: int = 1
    lost: list[str] = field(default_factory=list)
    leaked: list[str] = field(default_factory=list)
    seconds: float = 0.0


@dataclass
class Row:
    kind: str
    tests: list[TestResult] = field(default_factory=list)

    @property
    def cases(self) -> int:
        return sum(t.cases for t in self.tests if t.outcome != "skipped")

    @property
    def failed(self) -> list[TestResult]:
        return [t for t in self.tests if t.outcome == "failed"]

    @property
    def outcome(self) -> str:
        ran = [t for t in self.tests if t.outcome != "skipped"]
        skipped = len(self.tests) - len(ran)
        note = f", {skipped} skipped" if skipped else ""
        if not self.tests:
            return "not run"
        if self.failed:
            return f"**FAILED**: {len(self.failed)} of {len(ran)} tests{note}"
        return f"handled: {len(ran)}/{len(ran)} tests passed{note}"

    @property
    def lost_or_leaked(self) -> str:
        lost = [x for t in self.tests for x in t.lost]
        leaked = [x for t in self.tests for x in t.leaked]
        parts = ([f"lost: {'; '.join(lost[:3])}"] if lost else []) + \
                ([f"leaked: {'; '.join(leaked[:3])}"] if leaked else [])
        if parts:
            return "**" + " / ".join(parts) + "**"
        if self.failed:
            return f"unknown: {len(self.failed)} tests failed"
        return "nothing" if self.tests else "-"

    @property
    def seconds(self) -> float:
        return sum(t.seconds for t in self.tests)


class Collector:
    """A pytest plugin: keeps the tests of the report, records how each one ended."""

    def __init__(self) -> None:
        self.results: dict[str, TestResult] = {}

    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        keep, drop = [], []
        for item in items:
            kind = kind_of(item.nodeid)
            if kind is None:
                drop.append(item)
            else:
                keep.append(item)
                self.results[item.nodeid] = TestResult(item.nodeid, kind)
        items[:] = keep
        if drop:
            config.hook.pytest_deselected(items=drop)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        result = self.results.get(report.nodeid)
        if result is None:
            return
        result.seconds += report.duration
        if report.failed:
            result.outcome = "failed"
        elif report.skipped and result.outcome != "failed":
            result.outcome = "skipped"
        if report.when == "call":
            for key, value in report.user_properties:
                if key == "cases":
                    result.cases = int(str(value))
                elif key in ("lost", "leaked") and isinstance(value, (list, tuple)):
                    getattr(result, key).extend(str(v) for v in value)


def table(rows: list[Row]) -> str:
    lines = ["| fault kind | cases tried | outcome | lost or leaked | time |",
             "| --- | ---: | --- | --- | ---: |"]
    for row in rows:
        lines.append(f"| {row.kind} | {row.cases} | {row.outcome} | {row.lost_or_leaked} | {row.seconds:.0f} s |")
    total = sum(r.cases for r in rows)
    failed = sum(len(r.failed) for r in rows)
    tests = sum(len(r.tests) for r in rows)
    lines.append(f"| **all** | {total} | {'**FAILED**' if failed else 'handled'}: {tests - failed}/{tests} tests "
                 f"passed | {'nothing' if all(r.lost_or_leaked in ('nothing', '-') for r in rows) else '**see above**'}"
                 f" | {sum(r.seconds for r in rows):.0f} s |")
    return "\n".join(lines)


def _pulumi_version() -> str:
    try:
        out = subprocess.run([str(Path(sys.prefix) / "bin" / "pulumi"), "version"], capture_output=True, text=True,
                             timeout=30)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.reliability", description=__doc__.split("\n")[0])
    parser.add_argument("--json", type=Path, default=DEFAULT_JSON,
                        help=f"where to write the JSON (default {DEFAULT_JSON})")
    parser.add_argument("--examples", type=int, default=300,
                        help="hypothesis examples per property (default 300; 100 in the normal pytest run)")
    args, pytest_args = parser.parse_known_args(argv)
    os.chdir(ROOT)
    os.environ["RELIABILITY_EXAMPLES"] = str(args.examples)

    collector = Collector()
    targets = [f for f in files() if (ROOT / f).exists()]
    started = time.monotonic()
    code = pytest.main(["-q", "-p", "no:cacheprovider", *targets, *pytest_args], plugins=[collector])
    elapsed = time.monotonic() - started

    rows = {kind: Row(kind) for kind, _ in KINDS}
    for result in collector.results.values():
        rows[result.kind].tests.append(result)
    ordered = [rows[kind] for kind, _ in KINDS]
    text = table(ordered)
    clean = code == 0 and all(not r.failed and r.lost_or_leaked in ("nothing", "-") for r in ordered)

    print(f"\n## Reliability suite ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {elapsed:.0f} s)\n")
    print(text)
    report: dict[str, Any] = {
        "generated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "elapsed_s": round(elapsed, 1),
        "pulumi": _pulumi_version(),
        "python": platform.python_version(),
        "pytest_exit": int(code),
        "ok": clean,
        "rows": [{"kind": r.kind, "cases": r.cases, "tests": len(r.tests), "failed": len(r.failed),
                  "outcome": r.outcome, "lost_or_leaked": r.lost_or_leaked, "seconds": round(r.seconds, 1)}
                 for r in ordered],
        "tests": [vars(t) for t in collector.results.values()],
        "markdown": text,
    }
    args.json.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.json.with_name(f".{args.json.name}.tmp")
    tmp.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, args.json)
    print(f"\nwritten: {args.json}")
    return 0 if clean else 1


if __name__ == "__main__":
    sys.exit(main())
