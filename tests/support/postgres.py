"""A real PostgreSQL server for the tests: Debian's `postgresql` package (`make install-dev` installs it
when it is missing), on loopback, with its data in a temporary folder, stopped afterwards.

initdb and postgres refuse to run as root, so as root both run as the `postgres` system user (the
package creates it) and the data folder is that user's. The superuser `postgres` connects through the
Unix socket in the data folder's parent (trust, for the tests' own setup); the application user
`READER` connects over TCP with a password (scram-sha-256), so a job can only get in with the
credentials it reads from the environment variables its config names.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

READER = "segments_reader"
READER_PASSWORD = "pg-reader-secret-5e1d"  # a recognisable value: tests grep logs and tables for it
DATABASE = "analytics"
INSTALL_HINT = ("PostgreSQL's server programs (initdb, postgres) are missing: expected "
                "/usr/lib/postgresql/<version>/bin/initdb from Debian's `postgresql` package. "
                "Run `make install-dev` (as root it runs `apt-get install -y postgresql`), or install it by hand.")


def postgres_bin() -> Path:
    """The newest /usr/lib/postgresql/<version>/bin holding initdb (or the folder of initdb on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    on_path = shutil.which("initdb")
    if on_path:
        return Path(on_path).parent
    raise RuntimeError(INSTALL_HINT)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresServer:
    """One PostgreSQL cluster: `root` holds the data folder, the socket and the log."""

    root: Path
    port: int
    bin_dir: Path
    process: subprocess.Popen | None = None

    @property
    def jdbc_url(self) -> str:
        return f"jdbc:postgresql://127.0.0.1:{self.port}/{DATABASE}"

    def psql(self, sql: str, database: str = DATABASE) -> str:
        """Run SQL as the superuser over the Unix socket; returns psql's output (tuples only)."""
        result = subprocess.run(
            [str(self.bin_dir / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1", "-h", str(self.root),
             "-p", str(self.port), "-U", "postgres", "-d", database, "-c", sql],
            capture_output=True, text=True, timeout=120, check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"psql failed ({result.returncode}): {result.stderr.strip()}\nSQL: {sql[:500]}")
        return result.stdout.strip()

    def copy_csv(self, table: str, csv_path: Path, columns: str) -> None:
        """Load a CSV file with a header line into `table` (psql's client-side \\copy)."""
        self.psql(f"\\copy {table} ({columns}) FROM '{csv_path}' WITH (FORMAT csv, HEADER true)")


def _as_postgres(command: list[str]) -> list[str]:
    return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command


def _wait_ready(server: PostgresServer, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process is not None and server.process.poll() is not None:
            raise RuntimeError(f"postgres exited with {server.process.returncode}:\n{log.read_text()[-3000:]}")
        ready = subprocess.run([str(server.bin_dir / "pg_isready"), "-q", "-h", str(server.root), "-p",
                                str(server.port)], check=False)
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise TimeoutError(f"postgres did not accept connections within {timeout_s:.0f}s:\n{log.read_text()[-3000:]}")


@contextmanager
def postgres_server(timeout_s: float = 60.0) -> Iterator[PostgresServer]:
    """Yield a running server with the `analytics` database and the `READER` user; stop and remove it after.

    The folder is a fresh one under the system temp dir, not pytest's: pytest's base folder is private
    to root (0700), and the server runs as `postgres`.
    """
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="segments-pg-"))
    data, log = root / "data", root / "postgres.log"
    server = PostgresServer(root=root, port=free_port(), bin_dir=bin_dir)
    try:
        if os.geteuid() == 0:
            shutil.chown(root, "postgres", "postgres")
        subprocess.run(_as_postgres([str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-E", "UTF8",
                                     "--locale=C", "--auth-local=trust", "--auth-host=scram-sha-256"]),
                       check=True, capture_output=True, timeout=120)
        # Only the socket (trust, for setup) and loopback with a password: no other way in.
        (data / "pg_hba.conf").write_text("local all postgres trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        with log.open("ab") as out:
            server.process = subprocess.Popen(
                _as_postgres([str(bin_dir / "postgres"), "-D", str(data), "-p", str(server.port),
                              "-k", str(root), "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off",
                              "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                              "-c", "shared_buffers=32MB", "-c", "max_connections=40", "-c", "TimeZone=UTC"]),
                stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )
        _wait_ready(server, log, timeout_s)
        server.psql(f"CREATE DATABASE {DATABASE}", database="postgres")
        server.psql(f"CREATE ROLE {READER} LOGIN PASSWORD '{READER_PASSWORD}'")
        yield server
    finally:
        if server.process is not None and server.process.poll() is None:
            os.killpg(server.process.pid, signal.SIGINT)  # "fast" shutdown: no waiting for clients
            try:
                server.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(server.process.pid, signal.SIGKILL)
                server.process.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)
