"""Garbage collection on an S3 store (SeaweedFS on loopback): ``gc``, ``gc --policy`` and
``purge`` free what no kept run names, in batches, and never while a run writes.

The collector and the runs keep each other off the bucket with marker objects under
``PREFIX/control/``: a collection refuses while a run's marker is there (a run in
another process, as a user would have it), and a run waits while a collection's is.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

import pytest

from pipetrail.store.gc_lock import StoreBusyError
from pipetrail.store.s3 import S3Store
from pipetrail.store.s3_gc import (
    COLLECTOR,
    find_s3_garbage,
    remove_s3_garbage,
    s3_collector_lock,
    s3_writer_lease,
)
from tests.e2e.test_s3_store_cli import PIPETRAIL, _cli, _credentials, _listing, _project

if TYPE_CHECKING:
    from pathlib import Path

    from tests.support.seaweedfs import SeaweedServer

pytestmark = pytest.mark.e2e

SLOW = """
import time
from pathlib import Path
from pipetrail import pipeline, step

@step
def wait(flag: str) -> str:
    deadline = time.monotonic() + 120
    while not Path(flag).exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return "done"

@pipeline
def slow(flag: str = "go"):
    return wait(flag)
"""


def _store(seaweed: SeaweedServer, url: str) -> S3Store:
    return S3Store(url, cache_dir=seaweed.base_dir / "probe-cache", **_credentials(seaweed))


def _json(root: Path, *args: str, env: dict[str, str]) -> dict[str, object]:
    result = _cli(root, *args, "--json", env=env)
    assert result.returncode == 0, result.stderr
    data: dict[str, object] = json.loads(result.stdout)
    return data


def test_gc_frees_what_only_deleted_runs_name(
    tmp_path: Path, seaweed: SeaweedServer, s3_url: str
) -> None:
    root = _project(tmp_path / "proj", s3_url)
    env = seaweed.env()
    old = _json(root, "run", "pipeline.py", "-p", "factor=3", env=env)["run_id"]
    kept = _json(root, "run", "pipeline.py", "-p", "factor=4", env=env)["run_id"]
    before = set(_listing(seaweed, s3_url))
    assert _cli(root, "runs", "delete", str(old), "--reason", "wrong", env=env).returncode == 0

    dry = _json(root, "gc", "--dry-run", "--grace", "0", env=env)
    assert dry["objects"] > 0  # type: ignore[operator]
    assert list(dry["kinds"]) == ["s3"]  # type: ignore[call-overload]
    assert set(_listing(seaweed, s3_url)) == before  # a dry run removes nothing
    # A long grace period keeps everything: the objects were written seconds ago.
    young = _json(root, "gc", "--grace", "1h", env=env)
    assert young["objects"] == 0
    assert young["young"] == dry["objects"]

    done = _json(root, "gc", "--grace", "0", env=env)
    assert (done["objects"], done["bytes"]) == (dry["objects"], dry["bytes"])
    assert done["artifacts"] == s3_url
    after = set(_listing(seaweed, s3_url))
    # The removed list the event names was stored; everything else freed is gone.
    assert len(before - after) == done["objects"]
    verified = _json(root, "store", "verify", env=env)
    assert verified["ok"], verified
    assert verified["collected"]
    target = tmp_path / "kept.json"
    got = _cli(root, "get", f"{kept}:scale", "-o", str(target), env=env)
    assert got.returncode == 0, got.stderr
    # No control object is left behind.
    assert not _store(seaweed, s3_url).control().names("writers")
    assert _store(seaweed, s3_url).control().read(COLLECTOR) is None


def test_gc_policy_and_purge_on_s3(tmp_path: Path, seaweed: SeaweedServer, s3_url: str) -> None:
    root = _project(tmp_path / "proj", s3_url, extra='\n[retention]\nexploration_runs = "1s"\n')
    env = seaweed.env()
    old = _json(root, "run", "pipeline.py", "-p", "factor=5", env=env)["run_id"]
    pinned = _json(root, "run", "pipeline.py", "-p", "factor=6", env=env)["run_id"]
    assert _cli(root, "runs", "pin", str(pinned), "--reason", "baseline", env=env).returncode == 0
    time.sleep(1.2)
    dry = _json(root, "gc", "--policy", "--dry-run", "--grace", "0", env=env)
    assert list(dry["expired"]) == [old]  # type: ignore[call-overload]
    done = _json(root, "gc", "--policy", "--grace", "0", env=env)
    collection = done["collection"]
    assert collection["objects"] == dry["would_free"]["objects"] > 0  # type: ignore[index]
    assert collection["bytes"] == dry["would_free"]["bytes"]  # type: ignore[index]
    shown = _cli(root, "show", str(old), env=env)
    assert "PURGED" in shown.stdout

    # The pinned run read the folder source: a purge keeps it (a pin protects it).
    purged = _cli(root, "purge", "--source", "data", "--reason", "erasure", "--json", env=env)
    assert purged.returncode == 0, purged.stderr
    report = json.loads(purged.stdout)
    assert pinned in report["kept"]
    assert _json(root, "store", "verify", env=env)["ok"]


def test_gc_refuses_while_a_run_writes_and_a_dry_run_does_not(
    tmp_path: Path, seaweed: SeaweedServer, s3_url: str
) -> None:
    root = _project(tmp_path / "proj", s3_url)
    (root / "slow.py").write_text(SLOW)
    env = seaweed.env()
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")} | env
    flag = root / "go"
    proc = subprocess.Popen(
        [*PIPETRAIL, "run", "slow.py", "-p", f"flag={flag}"],
        cwd=root,
        env=full_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        control = _store(seaweed, s3_url).control()
        deadline = time.monotonic() + 60
        while not control.names("writers") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert control.names("writers"), "the run left no marker"
        busy = _cli(root, "gc", "--grace", "0", env=env)
        assert busy.returncode == 4, busy.stderr
        assert "a run is writing to the S3 store" in busy.stderr
        assert "--wait" in busy.stderr
        assert "Traceback" not in busy.stderr
        assert _cli(root, "gc", "--dry-run", "--grace", "0", env=env).returncode == 0
        assert control.read(COLLECTOR) is None  # the refused collection let go
        flag.write_text("")
        # Waiting for the run works: the collection starts once its marker is gone.
        waited = _cli(root, "gc", "--grace", "0", "--wait", "2m", env=env)
        assert waited.returncode == 0, waited.stderr
    finally:
        flag.write_text("")
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert not control.names("writers")


def test_a_run_waits_for_a_collection_and_dead_markers_are_cleared(
    seaweed: SeaweedServer, s3_url: str
) -> None:
    store = _store(seaweed, s3_url)
    control = store.control()
    with s3_collector_lock(store, exclude_writers=True):
        with (
            pytest.raises(StoreBusyError, match=r"a garbage collection .* holds the S3 store"),
            s3_writer_lease(store, wait=0.5),
        ):
            pass  # pragma: no cover - the lease is refused
        assert not control.names("writers")  # the refused run removed its marker
        with (
            pytest.raises(StoreBusyError, match="another garbage collection"),
            s3_collector_lock(store, exclude_writers=False),
        ):
            pass  # pragma: no cover - the lock is refused
    # A run started while a collection runs proceeds once it ends.
    entered = threading.Event()
    with s3_collector_lock(store, exclude_writers=True):

        def writer() -> None:
            with s3_writer_lease(store, wait=30):
                entered.set()

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(0.5)
        assert not entered.is_set()
    thread.join(30)
    assert entered.is_set()

    # Markers of a process of this machine that is gone do not block anyone.
    gone = json.dumps({"host": socket.gethostname(), "pid": _dead_pid(), "since": 0}).encode()
    assert control.put("writers/deadbeef", gone)
    assert control.put(COLLECTOR, gone)
    with s3_collector_lock(store, exclude_writers=True):
        assert control.names("writers") == []
    with s3_writer_lease(store, wait=0):
        assert len(control.names("writers")) == 1


def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_listing_and_removal_go_in_pages_and_batches(seaweed: SeaweedServer, s3_url: str) -> None:
    store = _store(seaweed, s3_url)
    blobs = [f"object {i}".encode() for i in range(2100)]  # more than two pages, batches
    with ThreadPoolExecutor(8) as pool:
        digests = list(pool.map(store.put_bytes, blobs))
    keep = set(digests[:100])
    young = find_s3_garbage(store, keep, grace=3600)
    assert (len(young.s3), young.young) == (0, 2000)
    garbage = find_s3_garbage(store, keep, grace=0)
    assert set(garbage.s3) == set(digests[100:])
    assert garbage.by_kind() == {"s3": {"objects": 2000, "bytes": sum(map(len, blobs[100:]))}}
    remove_s3_garbage(store, garbage)
    assert set(_listing(seaweed, s3_url)) == keep
