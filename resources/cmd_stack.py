"""`cellosign-iac up|preview|refresh|destroy --stack S`: the Pulumi lifecycle,
run by the real engine through the Automation API with the project's settings."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pulumi import automation as auto

from .engine import export_deployment, open_stack
from .program import program_for
from .review import write_review


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", "-s", required=True, help="stack name: dev, staging or prod")
    parser.add_argument("--file", "-f", type=Path, default=None, help="declarations file (default: cellosign.yaml)")
    parser.add_argument("--diff", action="store_true", help="show a detailed diff (preview and up)")


def run_action(
    action: str, stack_name: str, file: Path | None = None, diff: bool = False, review_dir: Path | None = None
) -> int:
    stack = open_stack(stack_name, program_for(file))
    out = lambda line: print(line, flush=True)  # noqa: E731
    try:
        if action == "up":
            stack.up(on_output=out, diff=diff, color="never")
        elif action == "preview":
            stack.preview(on_output=out, diff=diff, color="never")
        elif action == "refresh":
            stack.refresh(on_output=out, color="never")
        elif action == "destroy":
            stack.destroy(on_output=out, color="never")
        else:  # pragma: no cover - argparse restricts the choices
            raise ValueError(action)
    except auto.ConcurrentUpdateError as exc:
        # Refused by the backend's lock: another run owns the stack (and its review copy).
        print(str(exc).rsplit("\n stderr:", 1)[-1].strip(), file=sys.stderr)
        print(f"cellosign-iac: stack '{stack_name}' is locked by another run; nothing was changed. "
              f"If that run was killed, `cellosign-iac recover --stack {stack_name}` clears its lock.", file=sys.stderr)
        return 1
    except auto.CommandError as exc:
        # The engine printed its diagnostics through on_output, except with --diff: then
        # Pulumi writes them (the failed token test, ...) to its stderr, held by the exception.
        diagnostics = str(exc).rsplit("\n stderr:", 1)[1].strip() if "\n stderr:" in str(exc) else ""
        if diagnostics:
            print(diagnostics, file=sys.stderr, flush=True)
        print(f"cellosign-iac: {action} of stack '{stack_name}' failed; see the messages above. "
              "Nothing that failed was committed to state.", file=sys.stderr)
        code = 1
    else:
        code = 0
    if action != "preview":
        # The review copy follows state, whatever succeeded: written after every up, refresh and destroy.
        path = write_review(stack_name, export_deployment(stack), review_dir)
        shown = path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path
        print(f"review copy (redacted, safe to commit): {shown}")
    return code
