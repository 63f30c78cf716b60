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

Cached in benchmarks/.work/gc/ (about 400 MB; a few minutes to build) and reused while
its parameters and the schema revision match (``params.json``, written last); delete
the folder to rebuild.

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
    "shape": 2,
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


def _build(folder: Path) -> tuple[int, int]:
    """Create the project; return how many objects each dry run must report.

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
    store.put_bytes(b"created by benchmarks/gc_dry_run.py")  # creates the pack (this row is young)
    pack = sqlite3.connect(state / "objects" / "pack.db")
    pack.execute("PRAGMA synchronous=OFF")
    segments = state / "objects" / "segments"
    segments.mkdir()
    ledger = Ledger.open(f"sqlite:///{state / 'ledger.db'}", actor="bench@host")
    old = int(time.time()) - _DAY
    named: dict[str, set[int]] = {}  # digest -> runs naming it
    deleted = set(range(0, PARAMS["runs"], PARAMS["delete_every"]))
    drafts: list[EventDraft] = []
    rows: list[tuple[str, bytes, int]] = []
    segment_rows: list[tuple[str, str, int, int]] = []
    segment_file: Any = None
    segment_name, segment_count, offset = "", 0, 0
    previous_first: str | None = None
    started = time.perf_counter()
    for run in range(PARAMS["runs"]):
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
    total = len(named) + 1  # the pack's first row
    if total != 1_000_001:
        raise RuntimeError(f"the fixture holds {total} objects, not 1,000,001")
    gone = deleted | {run for run in range(PARAMS["runs"]) if _expires(run)}
    return (
        sum(1 for runs in named.values() if runs <= deleted),
        sum(1 for runs in named.values() if runs <= gone),
    )


def _fixture() -> tuple[Path, int, int]:
    marker = FOLDER / "params.json"
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("params") == PARAMS:
            return FOLDER / "project", int(saved["garbage"]), int(saved["policy_garbage"])
    log("gc: building the fixture (100,000 runs, 1,000,000 objects; a few minutes, once)")
    FOLDER.mkdir(parents=True, exist_ok=True)
    garbage, policy = _build(FOLDER / "project")
    marker.write_text(json.dumps({"params": PARAMS, "garbage": garbage, "policy_garbage": policy}))
    return FOLDER / "project", garbage, policy


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
    project, garbage, policy_garbage = _fixture()
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
