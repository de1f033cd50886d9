"""The benchmark command works: every piece of `python -m tests.bench --quick`, at a tiny size.

Not a timed test: nothing here looks at how fast anything was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from resources.engine import PROJECT_ROOT
from tests.bench.validate_bench import declaration_file, generate


def test_generated_declarations_are_what_validate_expects(tmp_path: Path) -> None:
    import random

    from resources.loader import load_declarations
    from resources.validation import validate_document

    rng = random.Random(1)
    for file_no in range(40):
        text, mistake = declaration_file(rng, file_no)
        path = tmp_path / f"d{file_no}.yaml"
        path.write_text(text, encoding="utf-8")
        problems = validate_document(load_declarations(path))
        assert bool(problems) == (mistake is not None), (mistake, problems, text)
    (tmp_path / "gen").mkdir()
    files, bad = generate(tmp_path / "gen", 12)
    assert len(files) == 12 and all(f.read_text().startswith("# yaml-language-server") for f in files)
    assert 0 <= bad <= 12


def test_bench_command_runs_every_piece(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bench", "--quick", "--sizes", "2", "--repeats", "1",
         "--files", "6", "--validate-repeats", "1", "--json", str(out)],
        cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    data = json.loads(out.read_text())

    engine = data["engine"]
    kinds = {(s["kind"], s["operation"]) for s in engine["samples"]}
    assert kinds == {(k, op) for k in ("noop", "secret") for op in ("preview", "create", "no-change", "update")} | {
        ("secret+latency", "create")}
    tests = {(s["kind"], s["operation"]): s["token_tests"] for s in engine["samples"]}
    assert tests[("secret", "create")] == 2 and tests[("secret", "update")] == 2
    assert tests[("secret", "no-change")] == 0 and tests[("noop", "create")] == 0
    assert all(s["wall_s"] > 0 and s["cpu_s"] > 0 for s in engine["samples"])
    assert any(s["provider_peak_kib"] for s in engine["samples"] if s["kind"] == "secret")
    assert [r["operation"] for r in engine["summary"]] == ["preview", "create", "no-change", "update"]

    validate = data["validate"]
    assert validate["files"] == 6 and set(validate["tools"]) == {"cellosign-iac validate", "check-jsonschema"}
    assert "6 files checked" in validate["tools"]["cellosign-iac validate"]["reported"]

    table = proc.stdout
    for heading in ("the floor", "latency at the token server", "Peak memory", "check-jsonschema", "(1)", "(2)",
                    "(3)", "(4)"):
        assert heading in table
