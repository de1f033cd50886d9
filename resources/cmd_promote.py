"""`cellosign-iac promote --from dev --to staging [--live] [--deliveries]`.

Answers one question for a pipeline: is the target stack ready to receive what
the source stack runs? It never changes anything.

- the source must be applied: its state matches its declarations (else: run up there first);
- every config value the declarations need must exist in the target (each missing
  one is named with the command that sets it);
- the redacted diff shows what `up` on the target would change;
- `--live` runs the target's token tests now; `--deliveries` also sends the
  webhook test deliveries with the tokens obtained.

Exit codes: 0 ready, 1 not ready (the reasons are listed), 2 usage or unreadable input.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from .delivery import send_test_delivery
from .desired import Desired, resolve_desired
from .engine import export_deployment, open_stack
from .program import default_declarations, program_for
from .render import render
from .review import model_from_state
from .secret_spec import token_request_for
from .stack_config import stack_lookup
from .tokentest import obtain_token


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--from", dest="source", required=True, help="the stack the change was proven on")
    parser.add_argument("--to", dest="target", required=True, help="the stack to promote to")
    parser.add_argument("--file", "-f", type=Path, default=None, help="declarations file (default: cellosign.yaml)")
    parser.add_argument("--live", action="store_true", help="run the target's token tests now (commits nothing)")
    parser.add_argument("--deliveries", action="store_true", help="with --live: also send webhook test deliveries")
    parser.add_argument("--format", choices=("text", "json"), default="text")


def _live(desired: Desired, deliveries: bool) -> list[dict[str, Any]]:
    def test(item: tuple[dict[str, Any], str]) -> tuple[dict[str, Any], str | None]:
        props, _ = item
        result, token = obtain_token(str(props["name"]), token_request_for(props))
        return result.to_json(), token

    with ThreadPoolExecutor(max_workers=8) as pool:
        tested = list(pool.map(test, desired.secrets))
    results = [r for r, _ in tested]
    if deliveries:
        tokens = {r["secret"]: t for r, t in tested}
        for hook, _ in desired.webhooks:
            token = tokens.get(hook["secret"])
            if token is None:
                results.append({"webhook": hook["name"], "ok": False, "kind": "no_token",
                                "message": f"webhook '{hook['name']}': its secret '{hook['secret']}' got no token"})
                continue
            d = send_test_delivery(str(hook["name"]), str(hook["url"]), token, events=hook.get("events") or [],
                                   headers=hook.get("headers") or {})
            results.append({"webhook": d.webhook, "ok": d.ok, "kind": d.kind, "message": d.message,
                            "status": d.status})
    return results


def run(args: argparse.Namespace) -> int:
    path = args.file or default_declarations()
    reasons: list[str] = []

    source = open_stack(args.source, program_for(path))
    source_desired = resolve_desired(path, stack_lookup(source), args.source)
    source_doc = render(source_desired.model(redacted=True), redacted=True)
    if render(model_from_state(args.source, export_deployment(source)), redacted=True) != source_doc:
        reasons.append(f"stack '{args.source}' has changes that are not applied yet: "
                       f"run `cellosign-iac up --stack {args.source}` first, then promote")

    target = open_stack(args.target, program_for(path))
    missing: list[str] = []
    target_desired = resolve_desired(path, stack_lookup(target), args.target, collect=missing)
    reasons.extend(missing)
    current = render(model_from_state(args.target, export_deployment(target)), redacted=True)
    diff: list[str] = []
    if not missing:
        wanted = render(target_desired.model(redacted=True), redacted=True)
        diff = list(difflib.unified_diff(current.splitlines(), wanted.splitlines(),
                                         f"{args.target} (state)", f"{args.target} (after up)", lineterm=""))

    live: list[dict[str, Any]] = []
    if args.live and not missing:
        live = _live(target_desired, args.deliveries)
        reasons.extend(r["message"] for r in live if not r["ok"])

    ready = not reasons
    if args.format == "json":
        print(json.dumps({"source": args.source, "target": args.target, "ready": ready, "reasons": reasons,
                          "diff": diff, "live": live}, indent=2))
    else:
        print(f"promote {args.source} -> {args.target}")
        if missing:
            print("(no diff: the target's config is incomplete, see below)")
        else:
            print("\n".join(diff) if diff else "(no change to the target's Cellosign configuration)")
        for r in live:
            print(f"live: {'OK' if r['ok'] else 'FAILED'} {r.get('secret') or r.get('webhook')}: {r['message']}")
        if ready:
            print(f"READY: `cellosign-iac up --stack {args.target}` would apply the diff above")
        else:
            print("NOT READY:", file=sys.stderr)
            for reason in reasons:
                print(f"  - {reason}", file=sys.stderr)
    return 0 if ready else 1
