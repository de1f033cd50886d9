"""`pulumi up` of N Cellosign secrets beside N no-op dynamic resources: the engine's floor.

For each size N and each repeat, on fresh stacks in a throw-away project:

* ``secret``: the real program (``resources.program``) on a generated declarations
  file of N secrets (general and msgraph alternating), every one token-tested
  against the local token server;
* ``noop``: the same engine, the same Automation API call, N ``resources.bench_noop.Noop``
  resources with the same inputs (same names, values, secret fields marked secret):
  what the engine costs for N dynamic resources doing nothing;
* ``secret+latency``: ``secret`` with the token server answering 100 ms late.

Operations, each measured: ``preview`` (fresh stack: N creates planned, every
check run), ``create`` (``up``), ``no-change`` (``up`` again), ``update`` (the
password of every secret rotated: N updates, N token tests). ``secret+latency``
runs ``create`` only.
"""

from __future__ import annotations

import contextlib
import io
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
from pulumi import automation as auto

from resources.bench_noop import Noop
from resources.engine import PROJECT_NAME, PROJECT_ROOT, open_stack
from resources.program import program_for
from resources.render import fingerprint

from .measure import Sample, measure
from .tokenserver_proc import TokenServerProcess

PASSPHRASE = "bench-passphrase-not-a-secret"
PASSWORDS = ("bench-password-one-6f1d", "bench-password-two-93ae")
LATENCY_S = 0.1
OPERATIONS = ("preview", "create", "no-change", "update")
KINDS = ("noop", "secret", "secret+latency")


def identity(i: int) -> tuple[str, str]:
    """(convention, username or client_id) of the i-th generated secret."""
    if i % 2 == 0:
        return "general", f"svc-bench-{i:04d}"
    return "msgraph", f"00000000-0000-4000-8000-{i:012d}"


def declarations_text(n: int) -> str:
    lines = ["version: 1", "secrets:"]
    for i in range(n):
        convention, ident = identity(i)
        lines += [f"  - name: bench-{i:04d}", f"    convention: {convention}",
                  f"    description: benchmark secret {i}",
                  "    url: {config: tokenUrl}", "    allow_insecure_http: true"]
        if convention == "general":
            lines += ["    grant_type: password", "    scope: [read, write]",
                      f"    username: {ident}", "    password: {config: benchPassword}"]
        else:
            lines += ["    grant_type: client_credentials", "    scope: https://graph.microsoft.com/.default",
                      f"    client_id: {ident}", "    client_secret: {config: benchPassword}"]
    return "\n".join(lines) + "\n"


def noop_program(n: int) -> Callable[[], None]:
    """N no-op resources with the inputs the N secrets get (as the program would normalize them)."""

    def program() -> None:
        config = pulumi.Config()
        url = config.require("tokenUrl")
        password = config.require_secret("benchPassword")
        # The review fingerprint changes with the password, as a secret's does.
        key = (config.get_secret("reviewFingerprintKey") or pulumi.Output.from_input("")).apply(str)
        secret_fingerprint = pulumi.Output.all(key, password).apply(lambda kp: fingerprint(kp[0].encode(), kp[1]))
        summary: dict[str, Any] = {}
        for i in range(n):
            convention, ident = identity(i)
            name = f"bench-{i:04d}"
            props: dict[str, Any] = {
                "name": name, "convention": convention, "url": url, "allow_insecure_http": True,
                "request_format": "json", "connect_timeout": 5.0, "read_timeout": 15.0,
                "description": f"benchmark secret {i}", "source": f"bench.yaml:{3 + 9 * i}",
                "secret_fingerprint": secret_fingerprint,
            }
            if convention == "general":
                props.update(grant_type="password", scope=["read", "write"], username=ident, password=password)
            else:
                props.update(grant_type="client_credentials", scope=["https://graph.microsoft.com/.default"],
                             client_id=ident, client_secret=password)
            res = Noop(name, props)
            summary[name] = {"convention": convention, "url": url, "token_expires_in": res.token_expires_in}
        pulumi.export("secrets", summary)

    return program


@dataclass
class Measured:
    kind: str
    n: int
    operation: str
    repeat: int
    sample: Sample
    token_tests: int | None = None


@dataclass
class EngineBench:
    sizes: tuple[int, ...]
    repeats: int
    latency_sizes: tuple[int, ...]
    log: Callable[[str], None] = print
    results: list[Measured] = field(default_factory=list)

    def run(self) -> list[Measured]:
        with self._workspace() as (root, server):
            for rep in range(self.repeats):
                for n in self.sizes:
                    # Alternate the order so that a drift in machine load does not favour one kind.
                    order = ("noop", "secret") if rep % 2 == 0 else ("secret", "noop")
                    for kind in order:
                        self._lifecycle(root, server, kind, n, rep)
                    if n in self.latency_sizes:
                        self._with_latency(root, server, n, rep)
        return self.results

    # ------------------------------------------------------------------ set-up

    @contextlib.contextmanager
    def _workspace(self) -> Iterator[tuple[Path, TokenServerProcess]]:
        root = Path(tempfile.mkdtemp(prefix="cellosign-bench-"))
        try:
            shutil.copy(PROJECT_ROOT / "Pulumi.yaml", root / "Pulumi.yaml")
            for n in set(self.sizes) | set(self.latency_sizes):
                (root / f"bench-{n}.yaml").write_text(declarations_text(n), encoding="utf-8")
            with TokenServerProcess() as server:
                yield root, server
        finally:
            shutil.rmtree(root, ignore_errors=True)

    def _stack(self, root: Path, server: TokenServerProcess, kind: str, n: int, rep: int) -> auto.Stack:
        program = noop_program(n) if kind == "noop" else program_for(root / f"bench-{n}.yaml")
        name = f"{kind.replace('+', '-')}-{n}-r{rep}"
        with contextlib.redirect_stderr(io.StringIO()):  # "created a review fingerprint key ..."
            stack = open_stack(name, program, work_dir=root, state_dir=root / "state", passphrase=PASSPHRASE)
        stack.set_all_config({
            f"{PROJECT_NAME}:tokenUrl": auto.ConfigValue(server.url),
            f"{PROJECT_NAME}:benchPassword": auto.ConfigValue(PASSWORDS[0], secret=True),
        })
        server.set_accounts(PASSWORDS[0], [identity(i)[1] for i in range(n)])
        return stack

    # ------------------------------------------------------------------ runs

    def _op(self, kind: str, n: int, rep: int, operation: str, server: TokenServerProcess,
            call: Callable[[], Any], expected: dict[str, int]) -> None:
        before = server.requests_seen()
        result, sample = measure(call)
        tests = server.requests_seen() - before
        changes = dict(result.change_summary if isinstance(result, auto.PreviewResult)
                       else result.summary.resource_changes or {})
        if changes != expected:
            raise RuntimeError(f"{kind} N={n} {operation}: expected {expected}, the engine did {changes}")
        self.results.append(Measured(kind, n, operation, rep, sample, tests))
        peak = f", provider peak {sample.provider_peak_kib / 1024:.0f} MiB" if sample.provider_peak_kib else ""
        self.log(f"  {kind:<15} N={n:<4} {operation:<9} #{rep + 1}: {sample.wall_s:6.2f} s wall, "
                 f"{sample.cpu_s:6.2f} s CPU (this process {sample.extra['cpu_this_process_s']:.2f}, "
                 f"provider {sample.extra['cpu_provider_sampled_s']:.2f}){peak}, "
                 f"{tests} token tests")

    def _lifecycle(self, root: Path, server: TokenServerProcess, kind: str, n: int, rep: int) -> None:
        stack = self._stack(root, server, kind, n, rep)
        total = n + 1  # the stack resource
        self._op(kind, n, rep, "preview", server, lambda: stack.preview(color="never"), {"create": total})
        self._op(kind, n, rep, "create", server, lambda: stack.up(color="never"), {"create": total})
        self._op(kind, n, rep, "no-change", server, lambda: stack.up(color="never"), {"same": total})
        stack.set_config(f"{PROJECT_NAME}:benchPassword", auto.ConfigValue(PASSWORDS[1], secret=True))
        server.set_accounts(PASSWORDS[1], [identity(i)[1] for i in range(n)])
        self._op(kind, n, rep, "update", server, lambda: stack.up(color="never"), {"same": 1, "update": n})

    def _with_latency(self, root: Path, server: TokenServerProcess, n: int, rep: int) -> None:
        kind = "secret+latency"
        stack = self._stack(root, server, kind, n, rep)
        server.set_latency(LATENCY_S)
        try:
            self._op(kind, n, rep, "create", server, lambda: stack.up(color="never"), {"create": n + 1})
        finally:
            server.set_latency(0)


def main() -> int:  # a quick manual run: python -m tests.bench.engine_bench N
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    EngineBench(sizes=(n,), repeats=1, latency_sizes=(n,)).run()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
