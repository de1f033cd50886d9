"""`validate FILE... [--format text|json]`: output, exit codes, secrets never shown."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from resources import cmd_validate
from resources.report import format_json, format_text, summary
from resources.validation import Problem

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
EXAMPLE = ROOT / "cellosign.yaml"
SEVERAL = DATA / "bad" / "several-mistakes.yaml"
CANARY = "CANARY-pw-7f3a9"


def validate(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "resources.cmd_validate", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def marked_lines(path: Path) -> list[int]:
    lines = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.startswith("#") and "#" in line:
            lines += [number] * line.split("#", 1)[1].count("<-")
    return lines


def test_valid_files_exit_0_with_a_summary() -> None:
    proc = validate(str(EXAMPLE), str(DATA / "good" / "full.yaml"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.strip() == "2 files checked, no problems"


def test_every_problem_of_every_file_is_listed_with_its_line() -> None:
    other = DATA / "bad" / "misspelt-field.yaml"
    proc = validate(str(SEVERAL), str(EXAMPLE), str(other))
    assert proc.returncode == 1
    out = proc.stdout.splitlines()
    several = [line for line in out if line.startswith(f"{SEVERAL}:")]
    assert [int(line.split(":")[1]) for line in several] == marked_lines(SEVERAL)
    assert f"{other}:11:5: secrets[0].pasword: unknown field 'pasword' — did you mean 'password'?" in out
    assert f"{SEVERAL}:17:12: secrets[0].scope: must not be an empty list" in out[1]
    assert out[-1] == f"3 files checked, {len(several) + 1} problems in 2 files"
    assert all(re.match(r"^\S+:\d+:\d+: \S+: .+", line) for line in out[:-1]), out


def test_bad_yaml_exits_1_with_its_line() -> None:
    bad = DATA / "unusable" / "duplicate-key.yaml"
    proc = validate(str(bad))
    assert proc.returncode == 1
    assert proc.stdout.splitlines()[0].startswith(f"{bad}:9:5: duplicate key 'password': first at line 8")


@pytest.mark.parametrize(
    "args",
    [
        ["does-not-exist.yaml"],
        [str(DATA / "unusable" / "not-utf8.yaml")],
        [str(DATA)],
    ],
    ids=["missing", "not-utf8", "directory"],
)
def test_unreadable_input_exits_2(args: list[str]) -> None:
    proc = validate(*args)
    assert proc.returncode == 2
    assert proc.stdout.splitlines()[-1] == "1 file checked, 1 problem in 1 file"


def test_unreadable_wins_over_invalid_and_all_files_are_still_reported() -> None:
    proc = validate(str(SEVERAL), "does-not-exist.yaml", str(EXAMPLE))
    assert proc.returncode == 2
    assert "does-not-exist.yaml: cannot read the declarations file: it does not exist" in proc.stdout.splitlines()
    assert any(line.startswith(f"{SEVERAL}:") for line in proc.stdout.splitlines())


@pytest.mark.parametrize("args", [[], ["--format", "xml", str(EXAMPLE)], ["--nope", str(EXAMPLE)]])
def test_usage_errors_exit_2(args: list[str]) -> None:
    proc = validate(*args)
    assert proc.returncode == 2
    assert "usage:" in proc.stderr


def test_json_format_parses_and_carries_every_problem() -> None:
    proc = validate("--format", "json", str(SEVERAL), str(EXAMPLE), "does-not-exist.yaml")
    assert proc.returncode == 2
    report = json.loads(proc.stdout)
    assert report["valid"] is False
    assert [f["file"] for f in report["files"]] == [str(SEVERAL), str(EXAMPLE), "does-not-exist.yaml"]
    several, example, missing = report["files"]
    assert example == {"file": str(EXAMPLE), "valid": True, "problems": []}
    assert several["valid"] is False
    assert [p["line"] for p in several["problems"]] == marked_lines(SEVERAL)
    assert set(several["problems"][0]) == {"line", "column", "path", "field", "message", "expected"}
    guid = next(p for p in several["problems"] if p["field"] == "client_id")
    assert guid["path"] == "secrets[1].client_id" and guid["expected"].startswith("a GUID")
    assert missing["problems"][0]["line"] is None and "does not exist" in missing["problems"][0]["message"]


def test_json_format_valid_file() -> None:
    proc = validate(str(EXAMPLE), "--format", "json")
    assert proc.returncode == 0
    assert json.loads(proc.stdout) == {"files": [{"file": str(EXAMPLE), "valid": True, "problems": []}], "valid": True}


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_secret_values_never_appear_in_the_output(fmt: str) -> None:
    files = [p for p in sorted((DATA / "bad").glob("*.yaml")) if CANARY in p.read_text(encoding="utf-8")]
    assert len(files) >= 3
    proc = validate("--format", fmt, *map(str, files))
    assert proc.returncode == 1
    assert CANARY not in proc.stdout and CANARY not in proc.stderr
    assert "pulumi config set --secret KEY" in proc.stdout


def test_run_takes_the_namespace_the_cli_builds(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="cellosign-iac")
    sub = parser.add_subparsers(dest="command", required=True)
    cmd_validate.add_arguments(sub.add_parser("validate"))
    args = parser.parse_args(["validate", str(EXAMPLE), str(SEVERAL), "--format", "json"])
    assert args.files == [str(EXAMPLE), str(SEVERAL)] and args.format == "json"
    assert cmd_validate.run(args) == 1
    assert json.loads(capsys.readouterr().out)["valid"] is False
    assert cmd_validate.run(argparse.Namespace(files=[str(EXAMPLE)], format="text")) == 0
    assert capsys.readouterr().out.strip() == "1 file checked, no problems"


def test_report_formats() -> None:
    p = Problem("a.yaml", 3, 5, "secrets[0].url", "url", "URL has no host", "an https:// URL")
    bare = Problem("b.yaml", None, None, "", "", "cannot read the declarations file: it does not exist", None)
    results = [("a.yaml", [p, p]), ("b.yaml", [bare]), ("c.yaml", [])]
    assert format_text(results).splitlines() == [
        "a.yaml:3:5: secrets[0].url: URL has no host",
        "a.yaml:3:5: secrets[0].url: URL has no host",
        "b.yaml: cannot read the declarations file: it does not exist",
        "3 files checked, 3 problems in 2 files",
    ]
    assert summary([("x", [p])]) == "1 file checked, 1 problem in 1 file"
    data = json.loads(format_json(results))
    assert [f["valid"] for f in data["files"]] == [False, False, True] and data["valid"] is False
    assert data["files"][0]["problems"][0] == {
        "line": 3,
        "column": 5,
        "path": "secrets[0].url",
        "field": "url",
        "message": "URL has no host",
        "expected": "an https:// URL",
    }
