"""`cellosign-iac example`: the main job on the bundled example.

Starts a local identity provider on the loopback address and port that the
stack's token URLs name, seeds it with the stack's own credentials (the
accounts that exist at the identity provider), runs `pulumi up` for the stack
with live token tests, and stops the server.
"""

from __future__ import annotations

import argparse
import sys
import urllib.parse
from pathlib import Path

from .cmd_stack import run_action
from .engine import open_stack
from .errors import CellosignError
from .loader import load_declarations
from .program import default_declarations, program_for
from .resolve import Resolver
from .stack_config import stack_lookup
from .tokenserver import TokenServer

LOOPBACK = {"127.0.0.1", "localhost", "::1"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", "-s", default="dev", help="stack whose token URLs point at 127.0.0.1 (default: dev)")
    parser.add_argument("--file", "-f", type=Path, default=None, help="declarations file (default: cellosign.yaml)")


def seeded_server(stack_name: str, file: Path | None = None) -> TokenServer:
    """A token server on the stack's loopback port, knowing the stack's credentials."""
    path = file or default_declarations()
    stack = open_stack(stack_name, program_for(path))
    resolver = Resolver(stack_lookup(stack), stack=stack_name)
    server = TokenServer()
    ports: set[int] = set()
    for i, decl in enumerate(load_declarations(path).data.get("secrets") or []):
        props = resolver.secret_props(decl, where=f"secrets[{i}] ({decl.get('name')})")
        url = urllib.parse.urlsplit(str(props.get("url") or ""))
        if url.hostname not in LOOPBACK or url.port is None:
            raise CellosignError(
                f"secret '{decl.get('name')}' of stack '{stack_name}' does not point at 127.0.0.1 "
                f"with an explicit port; the example only runs against the local token server"
            )
        ports.add(url.port)
        identity = props.get("username") or props.get("client_id")
        secret = props.get("password") or props.get("client_secret")
        if identity and secret:
            server.set_account(str(identity), str(secret))
    resolver.raise_if_problems()
    if len(ports) != 1:
        raise CellosignError(
            f"the example expects every token URL of stack '{stack_name}' on one port, found {sorted(ports)}"
        )
    server.port = ports.pop()
    return server


def run(args: argparse.Namespace) -> int:
    server = seeded_server(args.stack, args.file)
    try:
        server.start()
    except OSError as exc:
        print(f"cellosign-iac: cannot listen on 127.0.0.1:{server.port} for the example token server ({exc.strerror}). "
              f"Stop whatever uses that port, or point the stack elsewhere: "
              f"pulumi config set --stack {args.stack} crmTokenUrl http://127.0.0.1:<port>/oauth2/token",
              file=sys.stderr)
        return 2
    print(f"local token server listening on 127.0.0.1:{server.port} (stopped when this command ends)", flush=True)
    try:
        return run_action("up", args.stack, args.file)
    finally:
        server.stop()
