"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a loopback port.

``initdb`` refuses to run as root, so when the tests run as root the cluster is created
and started as the ``postgres`` user with ``runuser``. The cluster lives in a temporary
folder and is stopped and removed at the end of the test session.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PG_BIN_CANDIDATES = [Path("/usr/lib/postgresql/15/bin"), Path("/usr/lib/postgresql/16/bin")]


def find_pg_bin() -> Path | None:
    env = os.environ.get("PIPETRAIL_PG_BIN")
    if env:
        return Path(env)
    for candidate in PG_BIN_CANDIDATES:
        if (candidate / "initdb").exists():
            return candidate
    found = shutil.which("initdb")
    return Path(found).parent if found else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PostgresCluster:
    bin_dir: Path
    data_dir: Path
    base_dir: Path
    port: int
    as_user: str | None
    _admin: Any = field(default=None, repr=False)

    def _cmd(self, *args: str) -> list[str]:
        if self.as_user:
            return ["runuser", "-u", self.as_user, "--", *args]
        return list(args)

    def url(self, database: str = "postgres") -> str:
        user = self.as_user or os.environ.get("USER", "postgres")
        return f"postgresql+psycopg://{user}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> str:
        """Create an empty database NAME; return its URL.

        One connection to the ``postgres`` database serves every call: a ``createdb``
        child process (through ``runuser`` as root) per test cost about twice as long.
        """
        import psycopg
        from psycopg import sql

        if self._admin is None or self._admin.closed:
            user = self.as_user or os.environ.get("USER", "postgres")
            self._admin = psycopg.connect(
                host="127.0.0.1", port=self.port, user=user, dbname="postgres", autocommit=True
            )
        self._admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url(name)

    def stop(self) -> None:
        if self._admin is not None:
            self._admin.close()
        subprocess.run(
            self._cmd(
                str(self.bin_dir / "pg_ctl"), "-D", str(self.data_dir), "-m", "immediate", "stop"
            ),
            capture_output=True,
            check=False,
        )
        shutil.rmtree(self.base_dir, ignore_errors=True)


def start_cluster() -> PostgresCluster:
    bin_dir = find_pg_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries (initdb, pg_ctl) were not found")
    as_user = "postgres" if os.geteuid() == 0 else None
    base = Path(tempfile.mkdtemp(prefix="pipetrail-pg-"))
    data = base / "data"
    if as_user:
        # The cluster runs as the postgres user, which must own its folder.
        shutil.chown(base, user=as_user)
        os.chmod(base, 0o700)
    port = _free_port()
    cluster = PostgresCluster(bin_dir, data, base, port, as_user)
    try:
        subprocess.run(
            cluster._cmd(
                str(bin_dir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                as_user or os.environ.get("USER", "postgres"),
                "--no-sync",
                "-E",
                "UTF8",
            ),
            check=True,
            capture_output=True,
        )
        opts = (
            f"-h 127.0.0.1 -p {port} -k {base} "
            "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        )
        subprocess.run(
            cluster._cmd(
                str(bin_dir / "pg_ctl"),
                "-D",
                str(data),
                "-l",
                str(base / "log.txt"),
                "-o",
                opts,
                "-w",
                "-t",
                "60",
                "start",
            ),
            check=True,
            capture_output=True,
        )
    except subprocess.CalledProcessError as exc:
        log = (base / "log.txt").read_text() if (base / "log.txt").exists() else ""
        cluster.stop()
        raise RuntimeError(
            f"starting PostgreSQL failed: {exc.stderr.decode(errors='replace')}\n{log}"
        ) from exc
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return cluster
        time.sleep(0.1)
    cluster.stop()
    raise RuntimeError("PostgreSQL did not start listening within 30 s")
