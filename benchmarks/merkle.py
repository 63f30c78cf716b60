"""The Merkle tree over the ledger: what it adds to an append, and checkpoint verification.

Two measurements (docs/adr/0020, docs/audit.md):

* ``append``: the per-event cost of :meth:`Ledger.append` on a SQLite file, one event
  per append (the commonest shape: a step's events), with the tree maintained and with
  its maintenance switched off in the same process, alternating append by append so
  that both see the same machine. Target: the tree adds at most 10%.
* ``verify``: ``pipetrail audit verify --checkpoints DIR`` (a whole process) on a ledger
  of ``EVENTS`` events with ``CHECKPOINTS`` signed checkpoints, evenly spaced. Target:
  at most 10 s. Reported beside it: that command's CPU time (on a shared machine the
  wall time is mostly waiting), the checkpoint verification alone (signatures and
  consistency proofs from stored nodes) and the hash chain's walk alone: the command
  also walks the chain, replays the derived tables and recomputes the tree, which the
  checkpoints' verdict rests on.

The large ledger is built once, by bulk appends of valid chained events (10,000 per
transaction, projections and tree included), into benchmarks/.work/merkle/ and reused
while the build recipe is unchanged (about a minute the first time).

Repetitions: ``append``, 15 rounds of 1,000 appends to each ledger after a warm-up round
(a round's figure is its median append); ``verify``, the command once. ``--quick``: 5
rounds; the command twice on a ledger of 100,000 events with 100 checkpoints (built
once, in a folder of its own), with no target (the 10 s is for 1,000,000 events).

Run: ``.venv/bin/python benchmarks/merkle.py [--quick]``.
"""

from __future__ import annotations

import json
import resource
import shutil
import statistics
import sys
import time
from typing import TYPE_CHECKING, Any

from _common import (
    PYTHON,
    WORK_DIR,
    Result,
    bench_env,
    log,
    main,
    run_timed,
    summarize,
)

if TYPE_CHECKING:
    from pathlib import Path

EVENTS = 1_000_000
CHECKPOINTS = 1_000
APPENDS = 1000
MAX_APPEND_OVERHEAD = 10.0
MAX_VERIFY_SECONDS = 10.0
RECIPE = "v2"  # bump when the built ledger changes shape
HERE = WORK_DIR / "merkle"


def _source(i: int) -> Any:
    from pipetrail.ledger import EventDraft, EventKind

    run_id = f"R{i // 1000:07d}"
    return EventDraft(
        EventKind.SOURCE_OBSERVED,
        {
            "run_id": run_id,
            "path": f"data/{i % 1000}.csv",
            "digest": "blake3:" + f"{i:064x}",
            "size": i,
            "mtime_ns": i,
            "observed_at": "2026-01-01T00:00:00.000000Z",
        },
        run_id=run_id,
    )


class _NoTree:
    def extend(self, db: Any, events: Any) -> None:
        return None


def _append_costs(quick: bool) -> list[Result]:
    from pipetrail.ledger.ledger import Ledger

    folder = HERE / "append"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    with_tree = Ledger.open(f"sqlite:///{folder / 'with.db'}", actor="bench")
    without = Ledger.open(f"sqlite:///{folder / 'without.db'}", actor="bench")
    without._tree = _NoTree()  # type: ignore[assignment]  # noqa: SLF001 - the tree off
    reps = 5 if quick else 15
    samples: dict[str, list[float]] = {"with": [], "without": []}
    i = 0
    for rep in range(reps + 1):
        spent: dict[str, list[float]] = {"with": [], "without": []}
        for _ in range(APPENDS):  # alternate append by append: both see the same machine
            for name, ledger in (("with", with_tree), ("without", without)):
                start = time.perf_counter()
                ledger.append([_source(i)])
                spent[name].append(time.perf_counter() - start)
                i += 1
        if rep:  # the first round warms both up; a round's figure is its median append
            for name, seconds in spent.items():
                samples[name].append(statistics.median(seconds) * 1e6)
    with_tree.close()
    without.close()
    ratios = [(a / b - 1) * 100 for a, b in zip(samples["with"], samples["without"], strict=True)]
    return [
        summarize("merkle.append_with_tree", "one event per append, tree kept", samples["with"],
                  "us"),
        summarize("merkle.append_without_tree", "the same, tree maintenance off",
                  samples["without"], "us"),
        summarize("merkle.append_overhead", "the tree's share of an append", ratios, "%",
                  at_most=MAX_APPEND_OVERHEAD),
    ]  # fmt: skip


def _build(events: int, checkpoints: int) -> Path:
    """The project with the large ledger and its checkpoints (built once, cached)."""
    root = HERE / f"project-{RECIPE}-{events}-{checkpoints}"
    if (root / "done").exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    (root / ".pipetrail").mkdir(parents=True)
    db = root / ".pipetrail" / "ledger.db"
    (root / "pipetrail.toml").write_text(f'[pipetrail]\nmetadata = "sqlite:///{db}"\n')
    from pipetrail.governance.checkpoint import Checkpoint, sign_checkpoint
    from pipetrail.governance.keys import create_key, load_signer
    from pipetrail.ledger.ledger import Ledger
    from pipetrail.ledger.merkle_store import read_tree

    log(f"merkle: building a ledger of {events} events (once)...")
    ledger = Ledger.open(f"sqlite:///{db}", actor="bench")
    batch = 10_000
    for start in range(0, events, batch):
        ledger.append([_source(i) for i in range(start, min(events, start + batch))])
    home = root / "home"
    create_key("bench", folder=home)
    signer = load_signer("bench", folder=home)
    witness = root / "witness"
    witness.mkdir()
    (witness / "keys").write_text(f"bench {signer.public_key.text}\n")
    reader = read_tree(ledger.db)
    first = ledger.db.rows("SELECT hash FROM events WHERE seq = 1")[0][0]
    origin = "pipetrail/" + first.removeprefix("blake3:")[:32]
    step = events // checkpoints
    for k in range(1, checkpoints + 1):
        size = k * step
        cp = Checkpoint(origin, size, reader.root(size), "2026-12-06T00:00:00Z")
        (witness / f"{size:012d}-20261206T000000Z.checkpoint").write_text(
            sign_checkpoint(cp, signer)
        )
    ledger.close()
    (root / "done").write_text("")
    return root


def _verify_costs(quick: bool) -> list[Result]:
    events = 100_000 if quick else EVENTS
    checkpoints = 100 if quick else CHECKPOINTS
    root = _build(events, checkpoints)
    env = bench_env()
    command = [PYTHON, "-m", "pipetrail.cli.main", "audit", "verify"]
    full: list[float] = []
    cpu: list[float] = []
    for _ in range(1 if not quick else 2):  # a long run: one is enough to see the figure
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        seconds, out = run_timed([*command, "--checkpoints", "witness", "--json"], cwd=root,
                                 env=env)  # fmt: skip
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        report = json.loads(out)
        if not report["ok"] or report["checkpoints"]["checked"] != checkpoints:
            raise RuntimeError(f"audit verify --checkpoints failed: {out[:500]}")
        full.append(seconds)
        cpu.append(after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime)
    from pipetrail.governance.audit_trail import verify_checkpoints
    from pipetrail.governance.witness import Witness
    from pipetrail.ledger.ledger import Ledger

    ledger = Ledger.open(f"sqlite:///{root / '.pipetrail' / 'ledger.db'}", actor="bench")
    witness = Witness(root / "witness")
    alone = []
    for _ in range(3):
        start = time.perf_counter()
        report_ok = verify_checkpoints(ledger.db, witness.notes(), witness.keys()).ok
        alone.append(time.perf_counter() - start)
        if not report_ok:
            raise RuntimeError("the checkpoints do not verify")
    start = time.perf_counter()
    chain_ok = ledger.verify(derived=False).ok
    walk = [time.perf_counter() - start]
    ledger.close()
    if not chain_ok:
        raise RuntimeError("the chain does not verify")
    label = f"{events:,} events, {checkpoints:,} checkpoints"
    return [
        summarize("merkle.verify_checkpoints", f"audit verify --checkpoints, {label}", full, "s",
                  at_most=None if quick else MAX_VERIFY_SECONDS),
        summarize("merkle.verify_checkpoints_cpu", "the same command's CPU time (user + sys)",
                  cpu, "s"),
        summarize("merkle.checkpoints_alone", f"signatures + consistency proofs, {label}",
                  alone, "s"),
        summarize("merkle.chain_walk", f"the hash chain alone (no tables, no tree), {label}",
                  walk, "s"),
    ]  # fmt: skip


def run(quick: bool) -> list[Result]:
    """Both measurements."""
    results = _append_costs(quick)
    results.extend(_verify_costs(quick))
    return results


if __name__ == "__main__":
    sys.exit(main(run, __doc__.splitlines()[0]))
