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
from collections.abc import Callable
from pathlib import Path

from .cmd_stack import run_action
from .engine import open_stack
from .errors import CellosignError
from .loader import load_declarations
from .program import default_declarations, program_for
from .resolve import Resolver
from .stack_config import stack_lookup
from .tokenserver import TokenServer
from .webhook_target import WebhookTarget

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


def seeded_target(stack_name: str, server: TokenServer, file: Path | None = None) -> WebhookTarget | None:
    """A webhook receiver on the stack's loopback webhook port, accepting tokens of the declared secrets."""
    path = file or default_declarations()
    stack = open_stack(stack_name, program_for(path))
    resolver = Resolver(stack_lookup(stack), stack=stack_name)
    data = load_declarations(path).data
    identities = {}
    for i, decl in enumerate(data.get("secrets") or []):
        props = resolver.secret_props(decl, where=f"secrets[{i}]")
        identities[decl.get("name")] = props.get("username") or props.get("client_id")
    ports: set[int] = set()
    allowed: set[str] = set()
    for i, hook in enumerate(data.get("webhooks") or []):
        url = urllib.parse.urlsplit(str(resolver.value(hook.get("url"), where=f"webhooks[{i}].url", secret=False)))
        if url.hostname not in LOOPBACK or url.port is None:
            raise CellosignError(f"webhook '{hook.get('name')}' of stack '{stack_name}' does not point at 127.0.0.1")
        ports.add(url.port)
        allowed.add(str(identities.get(hook.get("secret"))))
    resolver.raise_if_problems()
    if not ports:
        return None
    if len(ports) != 1:
        raise CellosignError(f"the example expects every webhook URL of stack '{stack_name}' on one port")
    return WebhookTarget(server, allowed_identities=allowed, port=ports.pop())


def _listen(what: str, start: Callable[[], object], port: int, stack: str) -> bool:
    try:
        start()
    except OSError as exc:
        print(f"cellosign-iac: cannot listen on 127.0.0.1:{port} for the example {what} ({exc.strerror}). "
              f"Stop whatever uses that port, or point stack '{stack}' elsewhere with pulumi config set.",
              file=sys.stderr)
        return False
    print(f"local {what} listening on 127.0.0.1:{port} (stopped when this command ends)", flush=True)
    return True


def run(args: argparse.Namespace) -> int:
    server = seeded_server(args.stack, args.file)
    target = seeded_target(args.stack, server, args.file)
    if not _listen("token server", server.start, server.port, args.stack):
        return 2
    try:
        if target is not None and not _listen("webhook target", target.start, target.port, args.stack):
            return 2
        return run_action("up", args.stack, args.file)
    finally:
        server.stop()
        if target is not None:
            target.stop()
