"""``pipetrail gc --dry-run`` over 1,000,000 stored objects and 100,000 runs.

The project: a SQLite ledger of 100,000 runs (1.5 million events, appended through
``Ledger.append`` in big batches, so the chain, the projections and the payloads are
the real ones) and a local store of exactly 1,000,000 objects, written in bulk: 98.5%
pack rows of 200-400 bytes, 1% loose files and 0.5% segment objects (17 KiB each, 100 to
a segment file), every one stored a day ago (``stored_at``, file times).

Each run: ``run.started``, ``source.observed``, three steps (``step.started``,
``step.completed``) and ``run.completed``, with six ``artifact.recorded`` events; it
names ten objects of its own (three outputs, three logs, its source file, a git diff, a
metric series, a step's code), and every seventh run also reads the first output of the
run before it (what a cache hit shares). One run in ten is deleted (``run.deleted``), so
the objects only they name are garbage: the benchmark checks that the dry run reports
exactly that many (the model counts them while building).

Cached in benchmarks/.work/gc/ (about 3 GB; a few minutes to build) and reused only
while ``params.json`` (written last) matches both what this script would build (its
parameters, the schema revision) and what the project holds now: a manifest of the
ledger (events, the last event's hash, runs, deletions) and of the store (pack rows,
their newest and summed ``stored_at``, segment index rows and files, loose files, with
their sizes), read again before each use. Anything written into the project since it
was built (a run, an object, an edited rule) fails that check, and the fixture is
rebuilt. The benchmark's own commands are dry runs; the manifest is read again after
them, and a change is an error (the fixture is then marked for a rebuild).

Every stored object is a day old, the builder's first pack row too (which no run
names: the model counts it as garbage), so the expected counts do not change as the
fixture ages past ``gc``'s grace period (one hour by default).

Every odd run ended long ago and the project's ``[retention]`` rule
(``exploration_runs``, ten years) lets it go: ``gc --policy --dry-run`` must report those
50,000 runs and exactly the objects only they and the deleted runs name (the model
counts those too).

Rows: ``gc.dry_run`` (target <= 30 s): the whole process, ``pipetrail gc --dry-run``
in the project folder, as a user runs it (page cache warmed by a first, uncounted run);
``gc.dry_run_cpu`` (info): the CPU time that process spent, user and system;
``gc.policy_dry_run`` (target <= 30 s) and ``gc.policy_dry_run_cpu``: the same for
``pipetrail gc --policy --dry-run``, which also works out what each run would free.

Run: ``.venv/bin/python benchmarks/gc_dry_run.py [--quick]``. (Not ``gc.py``: ``gc`` is a
built-in module, which ``import gc`` always finds first.)
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import resource
import shutil
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from _common import PIPETRAIL, WORK_DIR, Result, bench_env, log, main, run_timed, summarize

from pipetrail.hashing import digest_bytes
from pipetrail.ledger.events import EventDraft, EventKind
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION
from pipetrail.store import LocalStore

if TYPE_CHECKING:
    from pathlib import Path

PARAMS: dict[str, Any] = {
    "runs": 100_000,
    "objects_per_run": 10,
    "delete_every": 10,
    "share_every": 7,
    "seed": 20261206,
    "shape": 3,
    "schema": HEAD_REVISION,
}
TARGET_S = 30.0
FOLDER = WORK_DIR / "gc"
_DAY = 86400
_BIG = 17 * 1024  # above the pack limit: a loose file or a segment object
_PER_SEGMENT = 100
_RUNS_PER_APPEND = 1000
# Odd runs ended long ago: the fixture's rule (exploration_runs, ten years) lets them go;
# the others ended within it. None of them is deleted yet (deleted runs are even).
_OLD_END = "2000-01-01T00:00:00.000000Z"
_RULES = '[retention]\nexploration_runs = "3650d"\n'


def _objects(run: int, rng: random.Random) -> list[bytes]:
    """The ten objects of one run (deterministic bytes; some of them large)."""
    found = []
    for j in range(PARAMS["objects_per_run"]):
        i = run * PARAMS["objects_per_run"] + j
        head = f"run {run} object {j} ".encode()
        if i % 100 == 3 or i % 200 == 7:
            found.append(head + rng.randbytes(64) * (_BIG // 64))
        else:
            found.append(head + rng.randbytes(rng.randint(200, 400)))
    return found


def _run_events(run: int, run_id: str, digests: list[str], shared: str | None) -> list[EventDraft]:
    """The events of one run, with the payload keys and sizes of real ones."""
    out = digests[0:3]
    logs = digests[3:6]
    source, diff, series, code = digests[6:10]
    ts = "2026-12-01T00:00:00.000000Z"
    drafts = [
        EventDraft(
            EventKind.RUN_STARTED,
            {
                "run_id": run_id,
                "pipeline": "train",
                "pipeline_fingerprint": digest_bytes(b"pipeline"),
                "owner": "bench@host",
                "host": "host",
                "process": f"{1000 + run % 30000}@1764547200.0",
                "params": {"lr": 0.001 * (run % 17), "depth": run % 9, "split": "a"},
                "seed": run,
                "git": {"commit": f"{run:040x}", "branch": "main", "dirty": True, "diff": diff},
                "environment": code,
                "started_at": ts,
                "steps_total": 3,
                "cache": True,
                "executor": "inline",
                "argv": ["pipetrail", "run", "train.py", "-p", f"depth={run % 9}"],
                "pipetrail_version": "0.1.0",
                "nodes": {
                    "load": {"step": "load", "upstream": []},
                    "fit": {"step": "fit", "upstream": ["load"]},
                    "score": {"step": "score", "upstream": ["fit"]},
                },
            },
            run_id,
        ),
        EventDraft(
            EventKind.SOURCE_OBSERVED,
            {
                "run_id": run_id,
                "path": "data/train.csv",
                "kind": "file",
                "digest": source,
                "size": 300,
                "mtime_ns": 1764547200000000000 + run,
                "observed_at": ts,
                "by_reference": False,
            },
            run_id,
        ),
    ]
    artifacts = [(source, "source"), (diff, "git-diff"), (series, "metric"), (code, "code")]
    previous = source
    for n, (node, output, log_digest) in enumerate(
        zip(("load", "fit", "score"), out, logs, strict=True)
    ):
        step_run_id = f"{run_id[:-2]}S{n}"
        inputs = {"x": previous}
        if n == 2 and shared is not None:
            inputs["reference"] = shared
        common = {
            "step_run_id": step_run_id,
            "run_id": run_id,
            "node_id": node,
            "step": node,
            "pipeline": "train",
            "started_at": ts,
        }
        drafts.append(EventDraft(EventKind.STEP_STARTED, {**common, "inputs": inputs}, run_id))
        drafts.append(
            EventDraft(
                EventKind.STEP_COMPLETED,
                {
                    **common,
                    "ended_at": ts,
                    "cache_key": digest_bytes(f"key {run} {n}".encode()),
                    "decision": "miss",
                    "reason": "no earlier step run with this key",
                    "code_digest": code,
                    "components": {"code": code, "inputs": inputs, "params": {"n": n}},
                    "inputs": inputs,
                    "outputs": {"output": output},
                    "output_formats": {"output": {"serializer": "json", "format_version": 1}},
                    "resources": {"cpu_s": 0.01, "wall_s": 0.02, "peak_rss": 50_000_000},
                    "logs": log_digest,
                    "seed": run + n,
                },
                run_id,
            )
        )
        artifacts.append((output, "output"))
        previous = output
    drafts.extend(
        EventDraft(
            EventKind.ARTIFACT_RECORDED,
            {
                "digest": digest,
                "blob": digest,
                "serializer": "json",
                "type_name": "builtins.dict",
                "size": 300,
                "meta": {"format_version": 1},
                "role": role,
                "run_id": run_id,
                "step_run_id": None,
            },
            run_id,
        )
        for digest, role in artifacts[:6]
    )
    ended = _OLD_END if _expires(run) else ts
    drafts.append(
        EventDraft(EventKind.RUN_COMPLETED, {"run_id": run_id, "ended_at": ended}, run_id)
    )
    return drafts


def _expires(run: int) -> bool:
    """Whether the retention rule of the fixture lets the run go (every odd run)."""
    return run % 2 == 1


def _run_id(run: int) -> str:
    return f"01BENCH{run:017d}XX"


def build(folder: Path, runs: int = PARAMS["runs"]) -> tuple[int, int]:
    """Create the project of ``runs`` runs; return how many objects each dry run must report.

    Returns:
        The objects ``gc --dry-run`` frees (only deleted runs name them), and those
        ``gc --policy --dry-run`` frees (only deleted runs and runs the rule lets go).
    """
    shutil.rmtree(folder, ignore_errors=True)
    state = folder / ".pipetrail"
    state.mkdir(parents=True)
    (folder / "pipetrail.toml").write_text("[pipetrail]\n\n" + _RULES)
    rng = random.Random(PARAMS["seed"])
    store = LocalStore(state / "objects")
    marker = store.put_bytes(b"created by benchmarks/gc_dry_run.py")  # creates the pack
    old = int(time.time()) - _DAY
    pack = sqlite3.connect(state / "objects" / "pack.db")
    pack.execute("PRAGMA synchronous=OFF")
    # As old as every other object: were it young, it would turn into garbage an hour
    # after the build, and the expected counts with it.
    pack.execute("UPDATE objects SET stored_at = ? WHERE digest = ?", (old, marker))
    segments = state / "objects" / "segments"
    segments.mkdir()
    ledger = Ledger.open(f"sqlite:///{state / 'ledger.db'}", actor="bench@host")
    named: dict[str, set[int]] = {}  # digest -> runs naming it
    deleted = set(range(0, runs, PARAMS["delete_every"]))
    drafts: list[EventDraft] = []
    rows: list[tuple[str, bytes, int]] = []
    segment_rows: list[tuple[str, str, int, int]] = []
    segment_file: Any = None
    segment_name, segment_count, offset = "", 0, 0
    previous_first: str | None = None
    started = time.perf_counter()
    for run in range(runs):
        objects = _objects(run, rng)
        digests = [digest_bytes(data) for data in objects]
        for j, (digest, data) in enumerate(zip(digests, objects, strict=True)):
            named.setdefault(digest, set()).add(run)
            i = run * PARAMS["objects_per_run"] + j
            if i % 100 == 3:
                path = state / "objects" / digest[7:9] / digest[9:]
                path.parent.mkdir(exist_ok=True)
                path.write_bytes(data)
                os.utime(path, (old, old))
            elif i % 200 == 7:
                if segment_file is None or segment_count == _PER_SEGMENT:
                    if segment_file is not None:
                        segment_file.close()
                    segment_name = f"{rng.randbytes(16).hex()}.seg"
                    segment_file = open(segments / segment_name, "wb")  # noqa: SIM115
                    segment_count, offset = 0, 0
                segment_file.write(data)
                segment_rows.append((digest, segment_name, offset, len(data)))
                offset += len(data)
                segment_count += 1
            else:
                rows.append((digest, data, old))
        shared = previous_first if run % PARAMS["share_every"] == 0 else None
        if shared is not None:
            named.setdefault(shared, set()).add(run)
        drafts.extend(_run_events(run, _run_id(run), digests, shared))
        previous_first = digests[0]
        if (run + 1) % _RUNS_PER_APPEND == 0:
            ledger.append(drafts)
            pack.executemany("INSERT INTO objects (digest, data, stored_at) VALUES (?, ?, ?)", rows)
            pack.commit()
            drafts, rows = [], []
            if (run + 1) % 10_000 == 0:
                log(f"gc: {run + 1} runs built ({time.perf_counter() - started:.0f} s)")
    if segment_file is not None:
        segment_file.close()
    for path in segments.iterdir():
        os.utime(path, (old, old))
    pack.executemany("INSERT INTO objects (digest, data, stored_at) VALUES (?, ?, ?)", rows)
    pack.executemany("INSERT INTO segment_objects VALUES (?, ?, ?, ?)", segment_rows)
    pack.commit()
    pack.close()
    ledger.append(drafts)
    for start in range(0, len(deleted), 5000):
        ledger.append(
            [
                EventDraft(
                    EventKind.RUN_DELETED, {"run_id": _run_id(r), "reason": "bench"}, _run_id(r)
                )
                for r in sorted(deleted)[start : start + 5000]
            ]
        )
    ledger.close()
    if marker in named:
        raise RuntimeError("the pack's first row is named by a run")
    named[marker] = set()  # no run names it: garbage for both dry runs
    if len(named) != runs * PARAMS["objects_per_run"] + 1:
        raise RuntimeError(f"the fixture holds {len(named)} objects, not one per run's ten + 1")
    gone = deleted | {run for run in range(runs) if _expires(run)}
    return (
        sum(1 for runs in named.values() if runs <= deleted),
        sum(1 for runs in named.values() if runs <= gone),
    )


def manifest(project: Path) -> dict[str, Any]:
    """What the fixture's project holds now: its ledger, its store, its rules.

    Read-only (SQLite in ``mode=ro``); about two seconds on the full fixture. Any run,
    stored object, deletion or edited rule since the build changes it.
    """
    state = project / ".pipetrail"
    objects = state / "objects"
    found: dict[str, Any] = {
        "rules": hashlib.sha256((project / "pipetrail.toml").read_bytes()).hexdigest()
    }
    ledger = sqlite3.connect(f"file:{state / 'ledger.db'}?mode=ro", uri=True)
    try:
        count, last = ledger.execute("SELECT count(*), max(seq) FROM events").fetchone()
        head = ledger.execute("SELECT hash FROM events WHERE seq = ?", (last,)).fetchone()
        found["ledger"] = {
            "events": count,
            "last_seq": last,
            "last_hash": head[0] if head else None,
            "runs": ledger.execute("SELECT count(*) FROM runs").fetchone()[0],
            "deletions": ledger.execute("SELECT count(*) FROM run_deletions").fetchone()[0],
        }
    finally:
        ledger.close()
    pack = sqlite3.connect(f"file:{objects / 'pack.db'}?mode=ro", uri=True)
    try:
        rows, newest, total = pack.execute(
            "SELECT count(*), max(stored_at), total(stored_at) FROM objects"
        ).fetchone()
        segment_rows = pack.execute("SELECT count(*) FROM segment_objects").fetchone()[0]
    finally:
        pack.close()
    found["pack"] = {"rows": rows, "newest": newest, "stored_at_sum": total}
    found["segments"] = {"rows": segment_rows, **_files(objects / "segments")}
    loose = {"files": 0, "bytes": 0}
    for entry in os.scandir(objects):
        if entry.is_dir() and len(entry.name) == 2:
            counted = _files(objects / entry.name)
            loose["files"] += counted["files"]
            loose["bytes"] += counted["bytes"]
    found["loose"] = loose
    return found


def _files(folder: Path) -> dict[str, int]:
    """How many files ``folder`` holds and their total size."""
    files = size = 0
    for entry in os.scandir(folder):
        if entry.is_file(follow_symlinks=False):
            files += 1
            size += entry.stat(follow_symlinks=False).st_size
    return {"files": files, "bytes": size}


def reusable(saved: object, params: dict[str, Any], now: dict[str, Any] | None) -> bool:
    """Whether a fixture with this ``params.json`` content may be used as it is.

    Args:
        saved: the parsed ``params.json`` (anything: a file from an older script too).
        params: what this script would build from.
        now: the project's :func:`manifest` read now, or None when it cannot be read.
    """
    return (
        isinstance(saved, dict)
        and saved.get("params") == params
        and now is not None
        and saved.get("manifest") == now
        and isinstance(saved.get("garbage"), int)
        and isinstance(saved.get("policy_garbage"), int)
    )


def _read_manifest(project: Path) -> dict[str, Any] | None:
    try:
        return manifest(project)
    except (OSError, sqlite3.Error, TypeError):
        return None


def _fixture() -> tuple[Path, int, int, dict[str, Any]]:
    marker = FOLDER / "params.json"
    project = FOLDER / "project"
    try:
        saved = json.loads(marker.read_text())
    except (OSError, ValueError):
        saved = None
    if saved is not None:
        now = _read_manifest(project) if saved.get("params") == PARAMS else None
        if reusable(saved, PARAMS, now):
            assert now is not None
            return project, saved["garbage"], saved["policy_garbage"], now
        log("gc: the fixture is not what this script builds, or was changed since; rebuilding")
    log("gc: building the fixture (100,000 runs, 1,000,000 objects; a few minutes, once)")
    FOLDER.mkdir(parents=True, exist_ok=True)
    marker.unlink(missing_ok=True)
    garbage, policy = build(project)
    built = manifest(project)
    marker.write_text(
        json.dumps(
            {"params": PARAMS, "manifest": built, "garbage": garbage, "policy_garbage": policy}
        )
    )
    return project, garbage, policy, built


def _timed(
    argv: list[str], project: Path, env: dict[str, str], reps: int
) -> tuple[list[float], list[float]]:
    times, cpu = [], []
    for _ in range(reps):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        times.append(run_timed(argv, cwd=project, env=env)[0])
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return times, cpu


def run(quick: bool) -> list[Result]:
    reps = 2 if quick else 5
    project, garbage, policy_garbage, built = _fixture()
    env = bench_env()
    argv = [PIPETRAIL, "gc", "--dry-run", "--json"]
    _, out = run_timed(argv, cwd=project, env=env)  # warms the page cache; checked
    report = json.loads(out)
    if report["objects"] != garbage:
        raise RuntimeError(f"gc --dry-run reports {report['objects']} objects, the model {garbage}")
    log(f"gc: the dry run reports {garbage} objects to free, as the model says; {reps} timed runs")
    times, cpu = _timed(argv, project, env, reps)
    policy = [PIPETRAIL, "gc", "--policy", "--dry-run", "--json"]
    _, out = run_timed(policy, cwd=project, env=env)
    outcome = json.loads(out)
    expired = sum(1 for run in range(PARAMS["runs"]) if _expires(run))
    if len(outcome["expired"]) != expired:
        raise RuntimeError(
            f"gc --policy --dry-run lets {len(outcome['expired'])} runs go, not {expired}"
        )
    if outcome["would_free"]["objects"] != policy_garbage:
        raise RuntimeError(
            f"gc --policy --dry-run reports {outcome['would_free']['objects']} objects, the "
            f"model {policy_garbage}"
        )
    log(
        f"gc: the policy dry run lets {expired} runs go and frees {policy_garbage} "
        "objects, as the model says"
    )
    policy_times, policy_cpu = _timed(policy, project, env, reps)
    if manifest(project) != built:
        (FOLDER / "params.json").unlink(missing_ok=True)  # rebuilt next time
        raise RuntimeError(
            "the gc fixture changed while the benchmark ran (its dry runs must not write); "
            "it will be rebuilt on the next run"
        )
    return [
        summarize(
            "gc.dry_run",
            "`pipetrail gc --dry-run`, 1M objects, 100k runs",
            times,
            "s",
            at_most=TARGET_S,
        ),
        # What the process itself spent (user + system): on a machine other processes
        # keep busy, the wall time above waits for the CPUs; this does not.
        summarize("gc.dry_run_cpu", "same, CPU time of the process (user + sys)", cpu, "s"),
        summarize(
            "gc.policy_dry_run",
            "`pipetrail gc --policy --dry-run` (50k runs expire), same project",
            policy_times,
            "s",
            at_most=TARGET_S,
        ),
        summarize(
            "gc.policy_dry_run_cpu", "same, CPU time of the process (user + sys)", policy_cpu, "s"
        ),
    ]


if __name__ == "__main__":
    raise SystemExit(main(run, "pipetrail gc --dry-run over 1,000,000 objects and 100,000 runs."))
