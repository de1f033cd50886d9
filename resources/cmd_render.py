"""`cellosign-iac render --stack S`: the redacted Cellosign configuration of a stack.

By default it renders what the declarations and the stack's config describe
(what `up` would produce: useful in a pull request); `--state` renders what the
stack's state holds (what `up` last wrote to review/<stack>.cellosign.yaml).
Prints to stdout, or writes atomically with `--output FILE`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .desired import resolve_desired
from .engine import export_deployment, open_stack
from .program import default_declarations, program_for
from .render import render, write_atomically
from .review import model_from_state
from .stack_config import stack_lookup


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", "-s", required=True)
    parser.add_argument("--file", "-f", type=Path, default=None, help="declarations file (default: cellosign.yaml)")
    parser.add_argument("--state", action="store_true", help="render from the stack's state instead")
    parser.add_argument("--output", "-o", type=Path, default=None, help="write to this file (atomically)")
    parser.add_argument("--templates", type=Path, default=None, help="a folder with your own cellosign-config.yaml.j2")


def redacted_desired(stack_name: str, file: Path | None, templates: Path | None = None) -> str:
    path = file or default_declarations()
    stack = open_stack(stack_name, program_for(path))
    desired = resolve_desired(path, stack_lookup(stack), stack_name)
    return render(desired.model(redacted=True), redacted=True, template_dir=templates)


def redacted_state(stack_name: str, file: Path | None, templates: Path | None = None) -> str:
    stack = open_stack(stack_name, program_for(file))
    return render(model_from_state(stack_name, export_deployment(stack)), redacted=True, template_dir=templates)


def run(args: argparse.Namespace) -> int:
    text = (redacted_state if args.state else redacted_desired)(args.stack, args.file, args.templates)
    if args.output is None:
        sys.stdout.write(text)
    else:
        write_atomically(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    return 0
