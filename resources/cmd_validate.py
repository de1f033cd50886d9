"""``validate FILE... [--format text|json]``: check declarations files without touching any stack.

Every file is reported, with every problem in it (schema and rules), one line
per problem ``FILE:LINE:COL: PATH: message`` and a summary line, or as JSON.
Nothing is resolved: references to the stack config or the environment are
checked for their shape only.

Exit codes:

- 0: every file is valid;
- 1: at least one file is invalid: schema or rule problems, and also YAML that
  cannot be used (syntax errors, duplicate keys, anchors/aliases, tabs used for
  indentation, nesting too deep), which is reported with its line;
- 2: usage error, or a file that could not be read as text: missing, not a
  regular file, unreadable, larger than 1 MiB, or not UTF-8. Takes precedence
  over 1 when files of both kinds are given.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .loader import DeclarationFileError, UnreadableFileError, load_declarations
from .report import Result, format_json, format_text
from .validation import Problem, validate_document

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("files", nargs="+", metavar="FILE", help="declarations file(s) to check, e.g. cellosign.yaml")
    parser.add_argument(
        "--format",
        choices=("text", "json"),
        default="text",
        help="text: one line per problem and a summary (default); json: a machine-readable report",
    )


def check_file(file: str) -> tuple[list[Problem], int]:
    """The problems of one file and the exit code it alone would give."""
    try:
        loaded = load_declarations(file)
    except UnreadableFileError as exc:
        return [Problem(file, exc.line, exc.column, "", "", exc.message, None)], EXIT_UNREADABLE
    except DeclarationFileError as exc:
        return [Problem(file, exc.line, exc.column, "", "", exc.message, None)], EXIT_INVALID
    problems = validate_document(loaded)
    return problems, EXIT_INVALID if problems else EXIT_VALID


def run(args: argparse.Namespace) -> int:
    results: list[Result] = []
    code = EXIT_VALID
    for file in args.files:
        problems, file_code = check_file(file)
        results.append((file, problems))
        code = max(code, file_code)
    output = format_json(results) if args.format == "json" else format_text(results)
    print(output, file=sys.stdout)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="cellosign-iac validate", description="Check Cellosign declarations files (schema and rules)."
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
