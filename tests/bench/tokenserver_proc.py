"""The local token server in a process of its own, steered over stdin.

It stands for the remote token endpoint: in its own process it neither shares
the benchmark's GIL with the inline program nor adds to the CPU seconds measured
(it is reaped only at the end). Commands, one per line, each answered by one line:

    accounts PASSWORD IDENTITY...   set these accounts (answer: ok)
    latency SECONDS                 sleep that long before each answer (answer: ok)
    count                           requests answered so far (answer: the number)
    quit                            stop (answer: bye)

The first line it prints is the token URL.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import TracebackType

from resources.tokenserver import TokenServer

ROOT = Path(__file__).resolve().parents[2]


def serve() -> int:
    server = TokenServer().start()
    print(server.url, flush=True)
    try:
        for line in sys.stdin:
            words = line.split()
            if not words:
                continue
            command, args = words[0], words[1:]
            if command == "accounts":
                for identity in args[1:]:
                    server.set_account(identity, args[0])
                print("ok", flush=True)
            elif command == "latency":
                server.latency_s = float(args[0])
                print("ok", flush=True)
            elif command == "count":
                print(server.requests_seen, flush=True)
            elif command == "quit":
                print("bye", flush=True)
                break
            else:
                print(f"error unknown command {command}", flush=True)
    finally:
        server.stop()
    return 0


class TokenServerProcess:
    """``with TokenServerProcess() as srv: srv.url; srv.set_accounts(pw, ids); srv.set_latency(0.1)``."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None
        self.url = ""

    def __enter__(self) -> TokenServerProcess:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.bench.tokenserver_proc"],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
        )
        self.url = self._readline()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        proc = self._proc
        if proc is None:
            return
        try:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
                proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
        self._proc = None

    def _readline(self) -> str:
        assert self._proc is not None and self._proc.stdout is not None
        line = self._proc.stdout.readline()
        if not line:
            raise RuntimeError("the benchmark token server stopped")
        return line.strip()

    def _ask(self, command: str) -> str:
        assert self._proc is not None and self._proc.stdin is not None
        self._proc.stdin.write(command + "\n")
        self._proc.stdin.flush()
        answer = self._readline()
        if answer.startswith("error"):
            raise RuntimeError(answer)
        return answer

    def set_accounts(self, password: str, identities: list[str]) -> None:
        # In chunks: one line per command, kept well below any pipe or line limit.
        for start in range(0, len(identities), 100):
            self._ask(" ".join(["accounts", password, *identities[start : start + 100]]))

    def set_latency(self, seconds: float) -> None:
        self._ask(f"latency {seconds}")

    def requests_seen(self) -> int:
        return int(self._ask("count"))


if __name__ == "__main__":
    raise SystemExit(serve())
