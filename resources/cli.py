"""`cellosign-iac`: the command line. Each subcommand lives in its own module."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from .errors import CellosignError


def build_parser() -> argparse.ArgumentParser:
    from . import (
        cmd_example,
        cmd_migrate,
        cmd_promote,
        cmd_recover,
        cmd_render,
        cmd_stack,
        cmd_test_token,
        cmd_validate,
    )

    parser = argparse.ArgumentParser(prog="cellosign-iac", description="Cellosign secrets and webhooks as code.")
    parser.add_argument("--project-dir", type=Path, default=None,
                        help="folder with Pulumi.yaml, the stack files and cellosign.yaml (default: this repository)")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "validate", help="check declaration files against the schemas (exit 0 valid, 1 invalid, 2 unreadable)"
    )
    cmd_validate.add_arguments(p)
    p.set_defaults(handler=cmd_validate.run)

    for action in ("up", "preview", "refresh", "destroy"):
        p = sub.add_parser(action, help=f"pulumi {action} for one stack (local backend, passphrase secrets)")
        cmd_stack.add_arguments(p)
        p.set_defaults(handler=lambda a, action=action: cmd_stack.run_action(action, a.stack, a.file, a.diff))

    p = sub.add_parser("test-token", help="live token test of the declared secrets for one stack "
                       "(exit 0 all ok, 1 any failed, 2 usage or unresolvable)")
    cmd_test_token.add_arguments(p)
    p.set_defaults(handler=cmd_test_token.run)

    p = sub.add_parser("render", help="print or write the redacted Cellosign configuration of a stack")
    cmd_render.add_arguments(p)
    p.set_defaults(handler=cmd_render.run)

    p = sub.add_parser("promote", help="is the target stack ready for what the source runs? (exit 0 ready, 1 not)")
    cmd_promote.add_arguments(p)
    p.set_defaults(handler=cmd_promote.run)

    p = sub.add_parser("recover", help="after a killed run: remove its stale lock and pending operations, "
                       "rewrite the review copy (exit 0 recovered, 1 refused)")
    cmd_recover.add_arguments(p)
    p.set_defaults(handler=cmd_recover.run)

    p = sub.add_parser("migrate",
                       help="move stacks to another state backend (file:// -> postgres://), outputs compared")
    cmd_migrate.add_arguments(p)
    p.set_defaults(handler=cmd_migrate.run)

    p = sub.add_parser("example", help="run the main job on the bundled example: local token server + pulumi up")
    cmd_example.add_arguments(p)
    p.set_defaults(handler=cmd_example.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.project_dir is not None:
        os.environ["CELLOSIGN_PROJECT_DIR"] = str(args.project_dir.resolve())
    try:
        return int(args.handler(args))
    except CellosignError as exc:
        print(f"cellosign-iac: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
