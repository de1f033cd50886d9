"""A throwaway PostgreSQL server for tests: real binaries from the machine's packages.

``with PostgresServer() as pg: url = pg.new_database()`` gives a
``postgres://`` URL (a database of its own, owned by a password user) for
Pulumi's ``postgres://`` state backend. The server:

- is a fresh cluster (``initdb``) in a temporary folder, deleted afterwards;
- listens on 127.0.0.1 only, on a free ephemeral port, and on a Unix socket
  inside that folder (never the system's ``/var/run/postgresql``);
- runs as the ``postgres`` system user when the tests run as root (PostgreSQL
  refuses to run as root); the user is created when missing;
- needs password (SCRAM) authentication over TCP.

When the binaries are missing, :class:`PostgresUnavailable` names the Debian
package to install (``bash .ci/postgres`` does it). Nothing here skips: a test
that needs PostgreSQL fails loudly when it cannot start.
"""

from __future__ import annotations

import base64
import glob
import gzip
import json
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

INSTALL_HINT = (
    "install the Debian package `postgresql` (server binaries initdb, pg_ctl, postgres) and "
    "`postgresql-client` (psql, pg_dump): run `bash .ci/postgres`, or `apt-get install -y postgresql`"
)
SERVER_TOOLS = ("initdb", "pg_ctl", "postgres")
CLIENT_TOOLS = ("psql", "pg_dump")
RUN_AS = "postgres"  # system user that owns the cluster when we are root
SUPERUSER = "cellosign_admin"


class PostgresUnavailable(RuntimeError):
    """PostgreSQL could not be found or started; the message says why and what to install."""


def _has_tools(folder: Path, tools: tuple[str, ...]) -> bool:
    return all(os.access(folder / tool, os.X_OK) for tool in tools)


def _version_key(path: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", path)) or (0,)


def find_bindir() -> Path:
    """The folder holding initdb, pg_ctl, postgres, psql and pg_dump."""
    candidates: list[Path] = []
    if os.environ.get("CELLOSIGN_PG_BINDIR"):
        candidates.append(Path(os.environ["CELLOSIGN_PG_BINDIR"]))
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(out.stdout.strip()))
        except (OSError, subprocess.SubprocessError):
            pass
    # Debian's layout: /usr/lib/postgresql/<major>/bin, newest first.
    candidates += [Path(p) for p in sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)]
    initdb = shutil.which("initdb")
    if initdb:
        candidates.append(Path(os.path.realpath(initdb)).parent)
    for folder in candidates:
        if _has_tools(folder, SERVER_TOOLS + CLIENT_TOOLS):
            return folder
    for folder in candidates:
        if _has_tools(folder, SERVER_TOOLS):
            return folder
    raise PostgresUnavailable(f"PostgreSQL server binaries not found (looked in pg_config --bindir, "
                              f"/usr/lib/postgresql/*/bin and PATH): {INSTALL_HINT}")


def _client(bindir: Path, tool: str) -> str:
    if (bindir / tool).exists():
        return str(bindir / tool)
    found = shutil.which(tool)
    if not found:
        raise PostgresUnavailable(f"`{tool}` not found: {INSTALL_HINT}")
    return found


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ensure_system_user(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    try:
        subprocess.run([useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", name], check=True, capture_output=True, text=True)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise PostgresUnavailable(f"PostgreSQL refuses to run as root and the system user `{name}` "
                                  f"could not be created: {detail.strip()}") from exc
    return pwd.getpwnam(name)


def _decode_blob(raw: str) -> str:
    """One row of Pulumi's state table: ``{"data": base64}``, possibly gzip inside."""
    try:
        data = base64.b64decode(json.loads(raw)["data"])
    except (ValueError, KeyError, TypeError):
        return raw
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return data.decode("utf-8", errors="replace")


@dataclass
class PostgresServer:
    """Start with ``with PostgresServer() as pg:``; every database it made goes away with it."""

    startup_timeout_s: int = 60
    bindir: Path = field(default_factory=find_bindir)
    port: int = 0
    root: Path | None = None
    superuser_password: str = field(default_factory=lambda: secrets.token_urlsafe(18))
    _run_as: pwd.struct_passwd | None = None
    _databases: list[tuple[str, str, str]] = field(default_factory=list)  # (db, user, password)

    # ------------------------------------------------------------ lifecycle
    @property
    def data_dir(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        assert self.root is not None, "server not started"
        return self.root / "server.log"

    def _cmd(self, argv: list[str]) -> list[str]:
        if self._run_as is None:
            return argv
        runuser = shutil.which("runuser") or "/sbin/runuser"
        return [runuser, "-u", self._run_as.pw_name, "--", *argv]

    def _run(self, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # cwd: a folder the unprivileged user can enter (pg tools complain about an unreadable cwd).
        return subprocess.run(self._cmd(argv), capture_output=True, text=True, timeout=timeout, cwd=self.root,
                              env={**os.environ, "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"})

    def start(self) -> PostgresServer:
        if os.geteuid() == 0:
            self._run_as = _ensure_system_user(RUN_AS)
        self.root = Path(tempfile.mkdtemp(prefix="cellosign-pg-"))
        try:
            self._init_cluster()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def _init_cluster(self) -> None:
        assert self.root is not None
        pwfile = self.root / "superuser.pw"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        if self._run_as is not None:
            for path in (self.root, pwfile):
                os.chown(path, self._run_as.pw_uid, self._run_as.pw_gid)
        res = self._run([str(self.bindir / "initdb"), "-D", str(self.data_dir), "-U", SUPERUSER,
                         f"--pwfile={pwfile}", "--auth-local=scram-sha-256", "--auth-host=scram-sha-256",
                         "-E", "UTF8", "--no-locale", "--no-sync"])
        pwfile.unlink()
        if res.returncode != 0:
            detail = res.stderr.strip() or res.stdout.strip()
            raise PostgresUnavailable(f"initdb failed (exit {res.returncode}): {detail}")

    def _start_server(self) -> None:
        assert self.root is not None
        last = ""
        for _attempt in range(3):  # the free port may be taken between probe and bind: retry
            self.port = free_port()
            options = (f"-c listen_addresses=127.0.0.1 -p {self.port} -c unix_socket_directories={self.root} "
                       "-c fsync=off -c synchronous_commit=off -c full_page_writes=off -c max_connections=100")
            res = self._run([str(self.bindir / "pg_ctl"), "start", "-D", str(self.data_dir), "-l", str(self.log_file),
                             "-w", "-t", str(self.startup_timeout_s), "-o", options],
                            timeout=self.startup_timeout_s + 30)
            if res.returncode == 0:
                return
            last = self._log_tail()
            if "could not bind" not in last and "Address already in use" not in last:
                break
        raise PostgresUnavailable(f"PostgreSQL did not start on 127.0.0.1:{self.port}:\n{last}")

    def _log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"

    def stop(self) -> None:
        if self.root is None:
            return
        if (self.data_dir / "postmaster.pid").exists():
            # Immediate: a throwaway cluster needs no shutdown checkpoint.
            self._run([str(self.bindir / "pg_ctl"), "stop", "-D", str(self.data_dir), "-m", "immediate",
                       "-w", "-t", "60"], timeout=90)
        shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------ databases
    def psql(self, sql: str, database: str = "postgres", user: str = SUPERUSER, password: str | None = None) -> str:
        """Run SQL over TCP (tuples only, unaligned); raises with psql's message on error."""
        env = {**os.environ, "PGPASSWORD": password or self.superuser_password, "PGCONNECT_TIMEOUT": "10"}
        res = subprocess.run([_client(self.bindir, "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                              "-h", "127.0.0.1", "-p", str(self.port), "-U", user, "-d", database, "-c", sql],
                             capture_output=True, text=True, timeout=60, env=env)
        if res.returncode != 0:
            raise RuntimeError(f"psql failed: {res.stderr.strip()}")
        return res.stdout

    def new_database(self, name: str | None = None) -> str:
        """A new database owned by a new password user; returns its postgres:// URL."""
        name = name or f"state_{secrets.token_hex(4)}"
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,50}", name):
            raise ValueError(f"unsafe database name {name!r}")
        user, password = f"{name}_owner", secrets.token_urlsafe(18)
        self.psql(f"CREATE ROLE {user} LOGIN PASSWORD '{password}'")
        self.psql(f"CREATE DATABASE {name} OWNER {user}")
        self._databases.append((name, user, password))
        return self.url(name)

    def url(self, database: str) -> str:
        for name, user, password in self._databases:
            if name == database:
                return f"postgres://{user}:{password}@127.0.0.1:{self.port}/{name}?sslmode=disable"
        raise KeyError(database)

    def dump(self, database: str) -> str:
        """``pg_dump`` of one database: schema and every row, as SQL text."""
        env = {**os.environ, "PGPASSWORD": self.superuser_password}
        res = subprocess.run([_client(self.bindir, "pg_dump"), "-h", "127.0.0.1", "-p", str(self.port),
                              "-U", SUPERUSER, "--no-owner", database], capture_output=True, text=True,
                             timeout=120, env=env)
        if res.returncode != 0:
            raise RuntimeError(f"pg_dump failed: {res.stderr.strip()}")
        return res.stdout

    def state_rows(self, database: str, table: str = "pulumi_state") -> dict[str, str]:
        """Every row of Pulumi's state table, key → the stored blob *decoded* (base64, gzip)."""
        out = self.psql(f"SELECT json_build_object('k', key, 'd', data)::text FROM {table} ORDER BY key", database)
        rows = {}
        for line in out.splitlines():
            if line.strip():
                row = json.loads(line)
                rows[row["k"]] = _decode_blob(json.dumps(row["d"]))
        return rows

    def lock_keys(self, database: str, table: str = "pulumi_state") -> list[str]:
        """Keys of Pulumi's stack lock objects currently in the table."""
        out = self.psql(f"SELECT key FROM {table} WHERE key LIKE '%.pulumi/locks/%' ORDER BY key", database)
        return [line for line in out.splitlines() if line.strip()]

    def wait_for_lock(self, database: str, timeout_s: float = 60, table: str = "pulumi_state") -> list[str]:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                keys = self.lock_keys(database, table)
            except RuntimeError:  # table not created yet
                keys = []
            if keys:
                return keys
            time.sleep(0.1)
        raise TimeoutError(f"no stack lock appeared in {database}.{table} within {timeout_s} s")
