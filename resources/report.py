"""Rendering validation problems for people (text) and for tools (JSON).

A result is ``(file, problems)``: the file as named on the command line and
every problem found in it (an empty list when the file is valid).
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .validation import Problem

Result = tuple[str, Sequence[Problem]]


def problem_line(file: str, problem: Problem) -> str:
    """``FILE:LINE:COL: PATH: message`` (parts that are unknown are left out)."""
    where = problem.file or file
    if problem.line is not None:
        where += f":{problem.line}"
        if problem.column is not None:
            where += f":{problem.column}"
    path = f"{problem.path}: " if problem.path else ""
    return f"{where}: {path}{problem.message}"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def summary(results: Sequence[Result]) -> str:
    """``2 files checked, 3 problems in 1 file`` or ``1 file checked, no problems``."""
    checked = _plural(len(results), "file")
    total = sum(len(problems) for _, problems in results)
    if total == 0:
        return f"{checked} checked, no problems"
    bad_files = sum(1 for _, problems in results if problems)
    return f"{checked} checked, {_plural(total, 'problem')} in {_plural(bad_files, 'file')}"


def format_text(results: Sequence[Result]) -> str:
    lines = [problem_line(file, p) for file, problems in results for p in problems]
    lines.append(summary(results))
    return "\n".join(lines)


def format_json(results: Sequence[Result]) -> str:
    files = [
        {
            "file": file,
            "valid": not problems,
            "problems": [
                {
                    "line": p.line,
                    "column": p.column,
                    "path": p.path,
                    "field": p.field,
                    "message": p.message,
                    "expected": p.expected,
                }
                for p in problems
            ],
        }
        for file, problems in results
    ]
    return json.dumps({"files": files, "valid": all(f["valid"] for f in files)}, indent=2, ensure_ascii=False)
