"""``test-token FILE --stack S [--secret NAME] [--format text|json]``: the live token test, on demand.

Resolves the declarations of FILE for stack S exactly as ``pulumi up`` would
(the stack's config, decrypted, through the same Resolver and the same
validation as the program), then sends every secret's token request the way
Cellosign does (``tokentest.run_token_test``), a few at a time, and prints one
result per secret. No Pulumi operation runs and no state is written; a stack
without a Pulumi.<stack>.yaml is not even opened (opening would create it).

Text output, one block per secret, in declaration order::

    crm-api: OK (expires_in 3600 s)
      warning: ...
    graph-mail: FAILED [oauth_error] HTTP 401: the token endpoint refused the request: ...
      hint: ...

JSON output (``--format json``): a list with one object per secret, as
``TokenTestResult.to_json()`` writes it (secret, ok, kind, message, warnings,
status, expires_in, content_type, hint, tested_at, elapsed_ms).

No output ever contains a password, a client secret or an access token: the
token test redacts them from every message, and resolution problems never
quote a value.

Exit codes:

- 0: every token test passed;
- 1: at least one token test failed;
- 2: usage error, a declarations file that cannot be read or breaks its schema,
  an unknown ``--secret``, or values that cannot be resolved for the stack
  (missing or plaintext config, unset environment variables, invalid resolved
  values); the message names the fix, e.g. the ``pulumi config set`` command.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pulumi import automation as auto

from .conventions import CONVENTIONS
from .engine import EngineSetupError, open_stack, project_dir
from .errors import CellosignError
from .loader import DeclarationFileError, load_declarations
from .program import default_declarations, program_for
from .report import format_text
from .resolve import ConfigLookup, Resolver, mapping_lookup
from .secret_spec import normalize_inputs, token_request_for
from .stack_config import stack_lookup
from .tokentest import TokenTestResult, close_clients, run_token_test
from .validation import validate_document, validate_secret

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2

#: Token tests running at once (each waits on a remote endpoint, not on the CPU).
MAX_PARALLEL = 4

PROG = "cellosign-iac test-token"


class UsageProblem(CellosignError):
    """Nothing could be tested: the message says what to fix (exit 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", nargs="?", type=Path, default=None, metavar="FILE",
        help="declarations file (default: cellosign.yaml of the project, or $CELLOSIGN_DECLARATIONS)",
    )
    parser.add_argument("--stack", "-s", required=True, help="stack whose config the declarations are resolved with")
    parser.add_argument("--secret", metavar="NAME", default=None, help="test only this secret (default: every secret)")
    parser.add_argument(
        "--format", choices=("text", "json"), default="text",
        help="text: one line per secret (default); json: a list of result objects",
    )
    parser.add_argument(
        "--work-dir", type=Path, default=None, metavar="DIR",
        help="folder holding Pulumi.yaml and Pulumi.<stack>.yaml (default: the project folder: "
             "this repository, or $CELLOSIGN_PROJECT_DIR)",
    )


# --------------------------------------------------------------------------- resolution


def _config_lookup(stack_name: str, file: Path, work_dir: Path) -> ConfigLookup:
    """The stack's config (decrypted, with secret flags), read like cmd_example does.

    A stack without a config file in work_dir is not opened (opening creates the
    stack, and a test must change nothing): it has no config, and every
    ``{config: KEY}`` reference is then reported with the command that sets it.
    """
    if not (work_dir / f"Pulumi.{stack_name}.yaml").is_file():
        return mapping_lookup({})
    try:
        stack = open_stack(stack_name, program_for(file), work_dir=work_dir)
        return stack_lookup(stack)
    except auto.CommandError as exc:
        raise UsageProblem(
            f"cannot read the config of stack '{stack_name}' in {work_dir}: {_pulumi_error(exc)}"
        ) from None


def _pulumi_error(exc: auto.CommandError) -> str:
    """The useful part of a failed Pulumi command: its `error:` lines (never stdout, which may hold config)."""
    text = str(exc)
    stderr = text.rsplit("\n stderr:", 1)[1] if "\n stderr:" in text else ""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.lower().startswith("error:")]
    shown = "; ".join(errors or lines[-1:]) or "pulumi failed without a message"
    if "passphrase" in shown.lower():
        shown += " (set PULUMI_CONFIG_PASSPHRASE or PULUMI_CONFIG_PASSPHRASE_FILE to the stack's passphrase)"
    return shown


def _missing_stack_note(stack_name: str, work_dir: Path) -> str:
    known = sorted(p.name[len("Pulumi."):-len(".yaml")] for p in work_dir.glob("Pulumi.*.yaml"))
    note = f"note: there is no Pulumi.{stack_name}.yaml in {work_dir}, so stack '{stack_name}' has no config"
    if known:
        close = difflib.get_close_matches(stack_name, known, n=1)
        note += f" (stacks with config there: {', '.join(known)}"
        note += f"; did you mean '{close[0]}'?)" if close else ")"
    return note


def resolve_secrets(
    file: Path, stack_name: str, *, only: str | None = None, work_dir: Path | None = None
) -> list[dict[str, Any]]:
    """The resolved, validated properties of the secrets to test, in declaration order.

    Raises UsageProblem (every problem at once) when that is not possible.
    """
    work_dir = (work_dir or project_dir()).resolve()
    try:
        loaded = load_declarations(file)
    except DeclarationFileError as exc:
        raise UsageProblem(str(exc)) from None
    problems = validate_document(loaded)
    if problems:
        raise UsageProblem(
            f"{file} breaks the declarations schema; fix it first (`cellosign-iac validate {file}`):\n"
            + format_text([(str(file), problems)])
        )
    decls = [(i, d) for i, d in enumerate(loaded.data.get("secrets") or []) if isinstance(d, Mapping)]
    if only is not None:
        names = [str(d.get("name")) for _, d in decls]
        decls = [(i, d) for i, d in decls if d.get("name") == only]
        if not decls:
            close = difflib.get_close_matches(only, names, n=3, cutoff=0.5)
            message = f"{file} declares no secret named '{only}'"
            message += f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            message += f" (declared: {', '.join(names)})" if names else " (it declares no secrets)"
            raise UsageProblem(message)

    resolver = Resolver(_config_lookup(stack_name, file, work_dir), stack=stack_name)
    resolved: list[tuple[dict[str, Any], str]] = []
    for i, decl in decls:
        source = f"{file.name}:{loaded.positions.get(('secrets', i), (0, 0))[0]}"
        props = resolver.secret_props(decl, where=f"{source}: secrets[{i}] ({decl.get('name')})")
        resolved.append((normalize_inputs(props), source))
    if resolver.problems:
        lines = list(resolver.problems)
        if not (work_dir / f"Pulumi.{stack_name}.yaml").is_file():
            lines.insert(0, _missing_stack_note(stack_name, work_dir))
        raise UsageProblem("\n".join(lines))
    # The same validation as the program and the provider's check, for every secret at once.
    bad = [
        f"{source}: {props['name']}: {p.path or p.field}: {p.message}"
        for props, source in resolved
        for p in validate_secret(props, resolved=True)
    ]
    if bad:
        raise UsageProblem(f"stack '{stack_name}': " + "\n".join(bad))
    return [props for props, _ in resolved]


# --------------------------------------------------------------------------- testing


def _test_one(props: Mapping[str, Any]) -> TokenTestResult:
    return run_token_test(str(props["name"]), token_request_for(props, CONVENTIONS[str(props["convention"])]))


def run_tests(secrets: Sequence[Mapping[str, Any]]) -> list[TokenTestResult]:
    """Every secret's token test, up to MAX_PARALLEL at once; results in the given order."""
    if not secrets:
        return []
    try:
        with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(secrets)), thread_name_prefix="token-test") as pool:
            return list(pool.map(_test_one, secrets))
    finally:
        close_clients()


def format_results_text(results: Sequence[TokenTestResult]) -> str:
    lines: list[str] = []
    for r in results:
        if r.ok:
            lines.append(f"{r.secret}: OK (expires_in {r.expires_in} s)")
        else:
            lines.append(f"{r.secret}: FAILED [{r.kind}] {r.message}")
            if r.hint:
                lines.append(f"  hint: {r.hint}")
        lines.extend(f"  warning: {w}" for w in r.warnings)
    return "\n".join(lines)


def format_results_json(results: Sequence[TokenTestResult]) -> str:
    return json.dumps([r.to_json() for r in results], indent=2, ensure_ascii=False)


def run(args: argparse.Namespace) -> int:
    file = args.file or default_declarations()
    try:
        secrets = resolve_secrets(file, args.stack, only=args.secret, work_dir=args.work_dir)
    except (CellosignError, EngineSetupError) as exc:
        print(f"{PROG}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    results = run_tests(secrets)
    if args.format == "json":
        print(format_results_json(results), flush=True)
    elif results:
        print(format_results_text(results), flush=True)
    else:
        print(f"{file} declares no secrets: nothing to test", flush=True)
    return EXIT_OK if all(r.ok for r in results) else EXIT_FAILED


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Run the live token test of the declared secrets for one stack; nothing is changed.",
    )
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
