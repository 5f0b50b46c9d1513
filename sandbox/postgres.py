"""A throwaway PostgreSQL server for tests and benchmarks: `initdb` into a temp dir, start on a free port, remove.

Why a real server and not a mock: the PostgreSQL ledger's locking, transactions and SQL must be exercised against
the database it will run on. Why durability off (fsync, synchronous_commit, full_page_writes): the data dir is
deleted at stop, so crash safety buys nothing and costs most of the run time.

`python -m sandbox.postgres` starts one, prints the URL of database `postgres` and runs until SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import FrameType, TracebackType
from typing import IO, Any
from urllib.parse import quote

import psycopg

#: Debian's layout: one directory per installed major version, none of it on PATH.
DEBIAN_ROOT = Path("/usr/lib/postgresql")
BINARIES = ("initdb", "pg_ctl", "postgres")
SUPERUSER = "sync"
#: The system user initdb and postgres run as when we are root (both refuse root); the Debian package creates it.
SYSTEM_USER = "postgres"
START_TIMEOUT = 30.0
PORT_ATTEMPTS = 5
_SAFE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_BIND_ERRORS = ("could not bind", "Address already in use", "could not create any TCP/IP sockets")


def find_binaries() -> dict[str, Path]:
    """initdb, pg_ctl and postgres of the highest major under /usr/lib/postgresql, else from PATH."""
    majors = sorted(
        (int(d.name), d / "bin") for d in DEBIAN_ROOT.glob("*") if d.name.isdigit() and (d / "bin" / "initdb").is_file()
    )
    if majors:
        bin_dir = majors[-1][1]
        found = {name: bin_dir / name for name in BINARIES}
        if all(os.access(path, os.X_OK) for path in found.values()):
            return found
    on_path = {name: shutil.which(name) for name in BINARIES}
    if all(on_path.values()):
        return {name: Path(path) for name, path in on_path.items() if path}
    missing = ", ".join(name for name, path in on_path.items() if not path)
    raise RuntimeError(
        f"PostgreSQL server binaries not found ({missing}: not under {DEBIAN_ROOT}/*/bin nor on PATH); "
        "install the Debian package `postgresql` (`make system-deps` does it)"
    )


def free_port() -> int:
    """A port nothing listens on right now (another process may still take it before the server binds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class PostgresServer:
    """One PostgreSQL cluster in a fresh temp dir, superuser `sync`, password auth (scram-sha-256), 127.0.0.1 only.

    Use as a context manager, or `start()` / `stop()`. `port=None` picks a free port (retried if another process
    takes it first). The temp dir is made with `tempfile.mkdtemp` under `base_dir` (default: the system temp dir);
    as root it is handed to the `postgres` system user, so it must not sit under a directory only root can enter.
    """

    def __init__(self, password: str | None = None, port: int | None = None, base_dir: str | None = None) -> None:
        self.password = password if password is not None else secrets.token_urlsafe(24)
        self.port = port or 0
        self._fixed_port = port is not None
        self._base_dir = base_dir
        self.dir: Path | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._pg_ctl: Path | None = None
        self._lock = threading.Lock()

    # --- paths and commands -------------------------------------------------------------------------------
    @property
    def data_dir(self) -> Path:
        return self._require_dir() / "data"

    @property
    def log_file(self) -> Path:
        return self._require_dir() / "server.log"

    def _require_dir(self) -> Path:
        if self.dir is None:
            raise RuntimeError("PostgresServer is not started")
        return self.dir

    def _as_owner(self, argv: list[str]) -> list[str]:
        """The command as the `postgres` system user when we are root (initdb and postgres refuse root)."""
        return ["runuser", "-u", SYSTEM_USER, "--", *argv] if os.geteuid() == 0 else argv

    def _run(self, argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self._as_owner(argv), cwd=self.dir, capture_output=True, text=True, timeout=timeout, check=False
        )

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> PostgresServer:
        """initdb, start and wait until the server accepts connections; on any failure clean up and raise."""
        with self._lock:
            if self.dir is not None:
                return self
            binaries = find_binaries()
            self._pg_ctl = binaries["pg_ctl"]
            self.dir = Path(tempfile.mkdtemp(prefix="sandbox-pg-", dir=self._base_dir))
            try:
                self._initdb(binaries["initdb"])
                self._start_server(binaries["postgres"])
            except BaseException:
                self._stop_locked()
                raise
            atexit.register(self.stop)
            return self

    def _initdb(self, initdb: Path) -> None:
        tmp = self._require_dir()
        pwfile = tmp / "pwfile"
        pwfile.write_text(self.password + "\n")
        if os.geteuid() == 0:
            try:
                shutil.chown(tmp, SYSTEM_USER, SYSTEM_USER)
                shutil.chown(pwfile, SYSTEM_USER, SYSTEM_USER)
            except LookupError as exc:
                raise RuntimeError(
                    f"running as root, but there is no `{SYSTEM_USER}` system user to run PostgreSQL as; "
                    "install the Debian package `postgresql` (`make system-deps` does it)"
                ) from exc
        argv = [str(initdb), "-D", str(self.data_dir), "-U", SUPERUSER, f"--pwfile={pwfile}"]
        argv += ["--auth=scram-sha-256", "-E", "UTF8", "--locale=C", "--no-sync", "--no-instructions"]
        result = self._run(argv)
        pwfile.unlink()
        if result.returncode != 0:
            raise RuntimeError(f"initdb failed ({result.returncode}):\n{result.stdout}{result.stderr}")

    def _start_server(self, postgres: Path) -> None:
        for attempt in range(1 if self._fixed_port else PORT_ATTEMPTS):
            port = self.port if self._fixed_port else free_port()
            offset = self.log_file.stat().st_size if self.log_file.exists() else 0
            with self.log_file.open("ab") as log:
                self._proc = self._spawn(postgres, port, log)
            self.port = port
            if self._wait_ready(self._proc):
                return
            log_text = self._log_tail(offset)
            if self._fixed_port or attempt == PORT_ATTEMPTS - 1 or not any(e in log_text for e in _BIND_ERRORS):
                raise RuntimeError(f"PostgreSQL did not start on 127.0.0.1:{port}; server log:\n{log_text}")

    def _spawn(self, postgres: Path, port: int, log: IO[bytes]) -> subprocess.Popen[bytes]:
        settings = {
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "200",
            "logging_collector": "off",
        }
        argv = [str(postgres), "-D", str(self.data_dir), "-h", "127.0.0.1", "-p", str(port), "-k", str(self.dir)]
        for key, value in settings.items():
            argv += ["-c", f"{key}={value}"]
        # A session of its own: a Ctrl-C in the terminal reaches us, and we stop the server, not both at once.
        return subprocess.Popen(
            self._as_owner(argv), cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True
        )

    def _wait_ready(self, proc: subprocess.Popen[bytes]) -> bool:
        """True once a connection succeeds; False if the server exited (raises if it is still not up in time)."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return False
            try:
                psycopg.connect(self.url(), connect_timeout=1).close()
            except psycopg.OperationalError:
                time.sleep(0.1)
            else:
                return True
        raise RuntimeError(
            f"PostgreSQL did not accept connections within {START_TIMEOUT:.0f} s; server log:\n{self._log_tail()}"
        )

    def _log_tail(self, offset: int = 0, lines: int = 30) -> str:
        try:
            with self.log_file.open("rb") as f:
                f.seek(offset)
                text = f.read().decode(errors="replace")
        except OSError as exc:
            return f"(no server log: {exc})"
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop the server (`pg_ctl stop -m fast`, then kill) and remove the temp dir; safe to call twice."""
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        atexit.unregister(self.stop)
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            if self._pg_ctl is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._run([str(self._pg_ctl), "stop", "-D", str(self.data_dir), "-m", "fast", "-w", "-t", "15"], 20)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            if proc.poll() is None:
                self._kill_postmaster()
                proc.kill()
                proc.wait(timeout=10)
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def _kill_postmaster(self) -> None:
        """SIGKILL the postmaster itself (as root, `proc` is runuser, which might not pass the signal on)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGKILL)

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # --- using it ---------------------------------------------------------------------------------------------
    def url(self, dbname: str = "postgres") -> str:
        """postgresql://sync:<password>@127.0.0.1:<port>/<dbname>."""
        return f"postgresql://{SUPERUSER}:{quote(self.password, safe='')}@127.0.0.1:{self.port}/{quote(dbname)}"

    def execute(self, sql: str, dbname: str = "postgres", params: Any = None) -> list[tuple[Any, ...]]:
        """Run one statement in autocommit (CREATE DATABASE cannot run in a transaction); rows if it returns any."""
        with psycopg.connect(self.url(dbname), autocommit=True, connect_timeout=10) as conn:
            cur = conn.execute(sql.encode(), params)  # bytes: a runtime string, not a LiteralString
            return cur.fetchall() if cur.description is not None else []

    def create_database(self, name: str) -> str:
        """Create database `name` (lower-case letters, digits, `_`: it goes into SQL unquoted) and return its URL."""
        if not _SAFE_NAME.fullmatch(name):
            raise ValueError(f"unsafe database name {name!r}: use [a-z_][a-z0-9_]*, at most 63 characters")
        self.execute(f"CREATE DATABASE {name}")
        return self.url(name)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sandbox.postgres", description="throwaway PostgreSQL server")
    parser.add_argument("--port", type=int, default=None, help="default: a free port")
    parser.add_argument("--password", default=None, help="password of superuser `sync` (default: random)")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    with PostgresServer(password=args.password, port=args.port) as server:
        print(server.url(), flush=True)
        print(f"sandbox.postgres: data in {server.dir}; SIGINT/SIGTERM stops it", file=sys.stderr, flush=True)
        while not stopping.wait(0.5):
            pass


if __name__ == "__main__":
    main()
