"""The ledger contract, run against every metadata backend (SQLite and real PostgreSQL)."""

from __future__ import annotations

import itertools
import json
import multiprocessing
import os
from typing import Any

import pytest
import sqlalchemy as sa

from pipetrail.errors import TamperedLedgerError
from pipetrail.ledger import EventDraft, EventKind
from pipetrail.ledger.events import GENESIS_HASH, event_hash
from pipetrail.ledger.ledger import Ledger
from pipetrail.ledger.migrate import HEAD_REVISION, current_revision
from tests.support.spawned import run_spawned

pytestmark = pytest.mark.postgres


def _source(i: int, run_id: str = "R1") -> EventDraft:
    return EventDraft(
        EventKind.SOURCE_OBSERVED,
        {
            "run_id": run_id,
            "path": f"data/{i}.csv",
            "digest": "blake3:" + f"{i:064x}",
            "size": i,
            "mtime_ns": i,
            "observed_at": "2026-01-01T00:00:00.000000Z",
        },
        run_id=run_id,
    )


def _filled(url: str, n: int = 10) -> Ledger:
    ledger = Ledger.open(url, actor="tester")
    for i in range(n):
        ledger.append([_source(i)])
    return ledger


def _exec(ledger: Ledger, sql: str, **params: Any) -> None:
    with ledger.engine.begin() as conn:
        conn.execute(sa.text(sql), params)


def test_append_chains_and_verifies(metadata_url: str) -> None:
    ledger = _filled(metadata_url, 5)
    events = list(ledger.iter_events())
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for before, after in itertools.pairwise(events):
        assert after.prev_hash == before.hash
    report = ledger.verify()
    assert report.ok
    assert report.checked == 5
    ledger.close()


def test_batch_append_is_atomic_and_projects(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    ledger.append([_source(1), _source(2), _source(3)])
    assert len(ledger.reader().sources("R1")) == 3
    bad = EventDraft(EventKind.SOURCE_OBSERVED, {"run_id": "R1"}, run_id="R1")  # missing keys
    with pytest.raises(KeyError):
        ledger.append([_source(4), bad])
    # Nothing of the failed batch is left: no event, no projection row.
    assert [e.seq for e in ledger.iter_events()] == [1, 2, 3]
    assert len(ledger.reader().sources("R1")) == 3
    assert ledger.verify().ok
    ledger.close()


def test_schema_is_at_head_revision(metadata_url: str) -> None:
    ledger = Ledger.open(metadata_url, actor="tester")
    assert current_revision(ledger.engine) == HEAD_REVISION
    ledger.close()


def test_head_revision_matches_migration_scripts() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from pipetrail.ledger.migrate import SCRIPT_LOCATION

    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_edited_payload_is_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url)
    payload = json.loads(next(e for e in ledger.iter_events() if e.seq == 4).payload_text)
    payload["size"] = 999
    _exec(
        ledger,
        "UPDATE events SET payload = :p WHERE seq = 4",
        p=json.dumps(payload, sort_keys=True, separators=(",", ":")),
    )
    report = ledger.verify()
    assert not report.ok
    assert report.first_bad_seq == 4
    assert "edited" in report.reason
    ledger.close()


def test_edited_row_with_recomputed_hash_is_detected(metadata_url: str) -> None:
    """An attacker who recomputes the edited row's own hash still breaks the next link."""
    ledger = _filled(metadata_url)
    ev = next(e for e in ledger.iter_events() if e.seq == 6)
    forged = ev.payload_text.replace('"size":5', '"size":50')
    assert forged != ev.payload_text
    new_hash = event_hash(
        seq=6,
        ts=ev.ts,
        actor=ev.actor,
        kind=ev.kind,
        run_id=ev.run_id,
        payload_text=forged,
        prev_hash=ev.prev_hash,
    )
    _exec(ledger, "UPDATE events SET payload = :p, hash = :h WHERE seq = 6", p=forged, h=new_hash)
    report = ledger.verify()
    assert report.first_bad_seq == 7
    ledger.close()


def test_deleted_row_is_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url)
    _exec(ledger, "DELETE FROM events WHERE seq = 5")
    report = ledger.verify()
    assert report.first_bad_seq == 5
    assert "missing" in report.reason
    ledger.close()


def test_deleted_tail_is_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url)
    _exec(ledger, "DELETE FROM events WHERE seq >= 9")
    report = ledger.verify()
    assert not report.ok
    assert report.first_bad_seq == 9
    ledger.close()


def test_inserted_row_is_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url, 6)
    # Shift events 4.. up by one and insert a forged event 4 in the gap.
    _exec(ledger, "UPDATE events SET seq = seq + 100 WHERE seq >= 4")
    _exec(ledger, "UPDATE events SET seq = seq - 99 WHERE seq >= 100")
    ev3 = next(e for e in ledger.iter_events() if e.seq == 3)
    forged_hash = event_hash(
        seq=4,
        ts=ev3.ts,
        actor="mallory",
        kind="source.observed",
        run_id="R1",
        payload_text="{}",
        prev_hash=ev3.hash,
    )
    _exec(
        ledger,
        "INSERT INTO events (seq, ts, actor, kind, run_id, payload, prev_hash, hash) "
        "VALUES (4, :ts, 'mallory', 'source.observed', 'R1', '{}', :prev, :h)",
        ts=ev3.ts,
        prev=ev3.hash,
        h=forged_hash,
    )
    report = ledger.verify()
    assert report.first_bad_seq == 5  # the original event 4, now at 5, no longer links
    ledger.close()


def test_reordered_rows_are_detected(metadata_url: str) -> None:
    ledger = _filled(metadata_url)
    _exec(ledger, "UPDATE events SET seq = 1000 WHERE seq = 3")
    _exec(ledger, "UPDATE events SET seq = 3 WHERE seq = 7")
    _exec(ledger, "UPDATE events SET seq = 7 WHERE seq = 1000")
    report = ledger.verify()
    assert report.first_bad_seq == 3
    ledger.close()


def test_rebuild_projections_gives_the_same_rows(metadata_url: str) -> None:
    ledger = _filled(metadata_url, 7)
    before = ledger.reader().sources("R1")
    report = ledger.rebuild_projections()
    assert (report.events, report.rows, report.changed) == (7, 7, ())
    assert ledger.reader().sources("R1") == before
    assert ledger.verify().ok
    ledger.close()


def _append_many(url: str, worker: int, count: int) -> None:
    ledger = Ledger.open(url, actor=f"worker-{worker}")
    for i in range(count):
        ledger.append([_source(worker * 1000 + i, run_id=f"W{worker}")])
    ledger.close()


def test_concurrent_appends_from_processes_keep_the_chain(metadata_url: str) -> None:
    Ledger.open(metadata_url, actor="setup").close()
    run_spawned(_append_many, [(metadata_url, w, 40) for w in range(3)])
    ledger = Ledger.open(metadata_url, actor="checker")
    report = ledger.verify()
    assert report.ok, report
    assert report.checked == 120
    for w in range(3):
        assert len(ledger.reader().sources(f"W{w}")) == 40
    ledger.close()


def test_migrations_create_exactly_the_schema_module(metadata_url: str) -> None:
    """A change to pipetrail.ledger.schema without a migration fails here."""
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from pipetrail.ledger.schema import metadata

    ledger = Ledger.open(metadata_url, actor="tester")
    with ledger.engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    ledger.close()
    assert diffs == []


def test_a_store_at_the_first_revision_is_upgraded_keeping_its_events(metadata_url: str) -> None:
    """Revision 0002 replaces the cache-key index; the events and their chain stay intact."""
    from alembic import command
    from alembic.config import Config

    ledger = _filled(metadata_url, n=5)
    engine = ledger.engine
    config = Config()
    config.set_main_option("script_location", "pipetrail.ledger:migrations")
    # Back to the first revision, as a store written before 0002 is.
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0001")
    assert current_revision(engine) == "0001"
    old = {ix["name"] for ix in sa.inspect(engine).get_indexes("step_runs")}
    assert ("ix_step_runs_cache_key" in old, "ix_step_runs_cache_key_seq" in old) == (True, False)
    ledger.close()

    ledger = Ledger.open(metadata_url, actor="tester")  # upgrades on open
    ledger.append([_source(99)])
    assert current_revision(ledger.engine) == HEAD_REVISION
    new = {ix["name"] for ix in sa.inspect(ledger.engine).get_indexes("step_runs")}
    assert ("ix_step_runs_cache_key" in new, "ix_step_runs_cache_key_seq" in new) == (False, True)
    report = ledger.verify()
    assert report.ok, report
    assert report.checked == 6
    ledger.close()


# -- the derived tables against the events -------------------------------------------------

TS = "2026-01-01T00:00:00.000000Z"


def _digest(char: str) -> str:
    return "blake3:" + char * 64


def _run_drafts(run_id: str, *, step_run_id: str, output: str, cache_key: str) -> list[EventDraft]:
    """The events of a one-step run, shaped as the runner writes them."""
    step = {
        "step_run_id": step_run_id, "run_id": run_id, "node_id": "train", "step": "train",
        "pipeline": "p", "seed": 7, "started_at": TS,
    }  # fmt: skip
    return [
        EventDraft(
            EventKind.RUN_STARTED,
            {
                "run_id": run_id,
                "pipeline": "p",
                "pipeline_fingerprint": _digest("f"),
                "owner": "me",
                "host": "h",
                "process": "1",
                "params": {"lr": 0.1},
                "seed": 7,
                "git": None,
                "environment": None,
                "started_at": TS,
                "steps_total": 1,
            },
            run_id=run_id,
        ),
        EventDraft(
            EventKind.SOURCE_OBSERVED,
            {
                "run_id": run_id,
                "path": "data/in.csv",
                "digest": _digest("5"),
                "size": 3,
                "mtime_ns": 1,
                "observed_at": TS,
            },
            run_id=run_id,
        ),
        EventDraft(EventKind.STEP_STARTED, step, run_id=run_id),
        EventDraft(
            EventKind.ARTIFACT_RECORDED,
            {
                "digest": output,
                "blob": output,
                "serializer": "json",
                "type_name": "dict",
                "size": 9,
                "meta": {},
                "role": "output",
                "run_id": run_id,
                "step_run_id": step_run_id,
            },
            run_id=run_id,
        ),
        EventDraft(
            EventKind.STEP_COMPLETED,
            {
                **step,
                "cache_key": cache_key,
                "decision": "miss",
                "reason": "new",
                "code_digest": _digest("c"),
                "components": {"code": _digest("c")},
                "inputs": {"data": _digest("5")},
                "outputs": {"output": output},
                "resources": {"wall_ns": 1},
                "logs": None,
                "ended_at": TS,
            },
            run_id=run_id,
        ),
        EventDraft(EventKind.RUN_COMPLETED, {"run_id": run_id, "ended_at": TS}, run_id=run_id),
    ]


def _with_runs(url: str) -> Ledger:
    """A ledger with two one-step runs (R1 then R2), each with its own output and key."""
    ledger = Ledger.open(url, actor="tester")
    ledger.append(_run_drafts("R1", step_run_id="S1", output=_digest("a"), cache_key=_digest("1")))
    ledger.append(_run_drafts("R2", step_run_id="S2", output=_digest("b"), cache_key=_digest("2")))
    return ledger


def test_verify_compares_the_derived_tables_with_the_events(metadata_url: str) -> None:
    ledger = _with_runs(metadata_url)
    report = ledger.verify()
    assert report.ok, report
    assert report.derived_checked
    # 2 runs, 2 step runs, 2 artifacts, 2 sources, 2 x (1 input + 1 output) edges,
    # 2 x 1 param row
    assert report.derived_rows == 14
    assert not ledger.verify(derived=False).derived_checked
    ledger.close()


# (statement, its parameters, table, key, words the problem's message must hold)
TAMPERING: dict[str, tuple[str, dict[str, Any], str, str, str]] = {
    "artifact serializer": (
        "UPDATE artifacts SET serializer = 'pickle' WHERE digest = :a", {"a": _digest("a")},
        "artifacts", _digest("a"), "serializer is 'pickle', the events say 'json'",
    ),
    "artifact blob": (
        "UPDATE artifacts SET blob = :e WHERE digest = :a", {"a": _digest("a"), "e": _digest("e")},
        "artifacts", _digest("a"), f"blob is '{_digest('e')}', the events say '{_digest('a')}'",
    ),
    "artifact meta": (
        "UPDATE artifacts SET meta = :m WHERE digest = :a",
        {"a": _digest("a"), "m": '{"trusted":true}'},
        "artifacts", _digest("a"), "meta is '{\"trusted\":true}', the events say '{}'",
    ),
    "step outputs": (
        "UPDATE step_runs SET outputs = :o WHERE step_run_id = 'S1'",
        {"o": json.dumps({"output": _digest("b")}, separators=(",", ":"))},
        "step_runs", "S1", "outputs is",
    ),
    "step cache key": (
        "UPDATE step_runs SET cache_key = :k WHERE step_run_id = 'S1'", {"k": _digest("2")},
        "step_runs", "S1", f"cache_key is '{_digest('2')}', the events say '{_digest('1')}'",
    ),
    "run status": (
        "UPDATE runs SET status = 'failed' WHERE run_id = 'R1'", {},
        "runs", "R1", "status is 'failed', the events say 'completed'",
    ),
    "deleted source": (
        "DELETE FROM sources WHERE run_id = 'R1'", {},
        "sources", "R1, data/in.csv", "missing",
    ),
    "deleted edge": (
        "DELETE FROM step_run_io WHERE step_run_id = 'S1' AND direction = 'out'", {},
        "step_run_io", "S1, out, output", "missing",
    ),
    "extra artifact": (
        "INSERT INTO artifacts (digest, blob, serializer, type_name, size, meta, role, "
        "created_at, first_seq) VALUES (:n, :n, 'pickle', 'x', 1, '{}', 'output', 'now', 4)",
        {"n": _digest("9")},
        "artifacts", _digest("9"), "no event records this row",
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(TAMPERING))
def test_edited_derived_row_is_named_and_rebuilt(metadata_url: str, case: str) -> None:
    statement, params, table, key, words = TAMPERING[case]
    ledger = _with_runs(metadata_url)
    _exec(ledger, statement, **params)

    report = ledger.verify()
    assert report.chain_ok  # the events are intact: only the derived row lies
    assert not report.ok
    assert [(p.table, p.key) for p in report.derived] == [(table, key)]
    message = report.derived[0].message
    assert message.startswith(f"{table}[{key}]: ")
    assert words in message

    rebuilt = ledger.rebuild_projections()
    assert [(p.table, p.key, p.problem) for p in rebuilt.changed] == [
        (table, key, report.derived[0].problem)
    ]
    assert ledger.verify().ok
    assert ledger.rebuild_projections().changed == ()
    reader = ledger.reader()
    assert reader.artifact(_digest("a"))["serializer"] == "json"
    assert reader.cache_lookup(_digest("1"))["outputs"] == {"output": _digest("a")}
    assert len(reader.sources("R1")) == 1
    ledger.close()


@pytest.mark.parametrize(
    ("case", "read"),
    [
        ("artifact serializer", "artifact"),
        ("artifact blob", "artifact"),
        ("artifact meta", "artifact"),
        ("step outputs", "cache"),
        ("step cache key", "moved key"),
    ],
)
def test_trusted_reads_refuse_an_edited_row(metadata_url: str, case: str, read: str) -> None:
    statement, params, table, key, words = TAMPERING[case]
    ledger = _with_runs(metadata_url)
    _exec(ledger, statement, **params)
    if read == "moved key":
        # S1's row now claims S2's key; with S2's row gone it is the one a lookup finds.
        _exec(ledger, "DELETE FROM step_runs WHERE step_run_id = 'S2'")
    reader = ledger.reader()
    lookups = {
        "artifact": lambda: reader.artifact(_digest("a")),
        "cache": lambda: reader.cache_lookup(_digest("1")),
        "moved key": lambda: reader.cache_lookup(_digest("2")),
    }
    with pytest.raises(TamperedLedgerError) as caught:
        lookups[read]()
    message = str(caught.value)
    assert message.startswith(f"{table}[{key}]: ")
    assert words in message
    assert "pipetrail audit rebuild" in message
    ledger.close()


def test_trusted_reads_return_what_the_events_say(metadata_url: str) -> None:
    ledger = _with_runs(metadata_url)
    reader = ledger.reader()
    record = reader.artifact(_digest("a"))
    assert record == {
        "digest": _digest("a"), "blob": _digest("a"), "serializer": "json",
        "type_name": "dict", "size": 9, "meta": {}, "role": "output", "first_run_id": "R1",
        "first_step_run_id": "S1", "created_at": record["created_at"],
    }  # fmt: skip
    assert reader.artifact(_digest("d")) is None
    hit = reader.cache_lookup(_digest("2"))
    assert hit is not None
    assert (hit["step_run_id"], hit["outputs"], hit["status"]) == (
        "S2",
        {"output": _digest("b")},
        "completed",
    )
    assert reader.cache_lookup(_digest("3")) is None
    ledger.close()


def _forge(ledger: Ledger, seq: int, old: str, new: str) -> None:
    """Edit one event's payload and recompute its own hash (not the next event's link)."""
    ev = next(e for e in ledger.iter_events() if e.seq == seq)
    forged = ev.payload_text.replace(old, new)
    assert forged != ev.payload_text
    digest = event_hash(
        seq=seq, ts=ev.ts, actor=ev.actor, kind=ev.kind, run_id=ev.run_id,
        payload_text=forged, prev_hash=ev.prev_hash,
    )  # fmt: skip
    _exec(
        ledger,
        "UPDATE events SET payload = :p, hash = :h WHERE seq = :s",
        p=forged,
        h=digest,
        s=seq,
    )


def test_trusted_reads_refuse_an_event_cut_from_the_chain(metadata_url: str) -> None:
    ledger = _with_runs(metadata_url)
    # Event 4 records artifact a; rewrite it (and its row) to say pickle.
    _forge(ledger, 4, '"serializer":"json"', '"serializer":"pickle"')
    _exec(ledger, "UPDATE artifacts SET serializer = 'pickle' WHERE digest = :a", a=_digest("a"))
    with pytest.raises(TamperedLedgerError, match=r"artifacts\[.*event 5 does not link to event 4"):
        ledger.reader().artifact(_digest("a"))
    # An event no other follows must be the recorded head: here the tail was deleted.
    _exec(ledger, "DELETE FROM events WHERE seq = 12")
    with pytest.raises(TamperedLedgerError, match=r"step_runs\[S2\].*recorded head is event 12"):
        ledger.reader().cache_lookup(_digest("2"))  # S2's step.completed is event 11
    ledger.close()


def test_rebuild_refuses_a_broken_chain_and_changes_nothing(metadata_url: str) -> None:
    ledger = _with_runs(metadata_url)
    _forge(ledger, 4, '"serializer":"json"', '"serializer":"pickle"')
    _exec(ledger, "UPDATE runs SET status = 'failed' WHERE run_id = 'R2'")
    report = ledger.verify()
    assert report.first_bad_seq == 5
    assert not report.derived_checked
    with pytest.raises(TamperedLedgerError, match=r"broken at sequence 5.*not rebuilt"):
        ledger.rebuild_projections()
    assert ledger.reader().get_run("R2")["status"] == "failed"
    ledger.close()


def test_running_runs_refuse_a_run_edited_back_to_running(metadata_url: str) -> None:
    ledger = _with_runs(metadata_url)
    assert ledger.reader().running_runs() == []
    _exec(ledger, "UPDATE runs SET status = 'running' WHERE run_id = 'R1'")
    with pytest.raises(TamperedLedgerError, match=r"runs\[R1\]: status is 'running'"):
        ledger.reader().running_runs()
    ledger.close()


def _append_runs(url: str, count: int) -> None:
    ledger = Ledger.open(url, actor="writer")
    for i in range(count):
        ledger.append(
            _run_drafts(f"W{i}", step_run_id=f"WS{i}", output=_digest("7"), cache_key=_digest("8"))
        )
    ledger.close()


def test_verify_reads_one_snapshot_while_others_append(metadata_url: str) -> None:
    ledger = _with_runs(metadata_url)
    ctx = multiprocessing.get_context("spawn")
    writer = ctx.Process(target=_append_runs, args=(metadata_url, 60))
    writer.start()
    reports = []
    while writer.is_alive() or not reports:
        reports.append(ledger.verify())
    writer.join(120)
    assert writer.exitcode == 0
    assert all(r.ok for r in reports), next(r for r in reports if not r.ok)
    final = ledger.verify()
    assert final.ok
    assert final.checked == 12 + 60 * 6
    ledger.close()


def test_a_forked_child_opens_its_own_connection(metadata_url: str) -> None:
    ledger = _with_runs(metadata_url)
    inherited = ledger.db.connection
    reader = ledger.reader()
    assert reader.event_count() == 12
    pid = os.fork()
    if pid == 0:  # the child: use the same Ledger object, then close it
        code = 1
        try:
            own = ledger.db.connection is not inherited
            ledger.append([_source(i, run_id="child") for i in range(5)])
            counted = reader.event_count() >= 17
            ledger.close()
            code = 0 if own and counted else 2
        finally:
            os._exit(code)
    for i in range(5):  # the parent appends meanwhile, on its own connection
        ledger.append([_source(100 + i, run_id="parent")])
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert ledger.db.connection is inherited  # the child did not close or replace it
    ledger.append([_source(200, run_id="parent")])
    report = ledger.verify()
    assert report.ok, report
    assert report.checked == 12 + 5 + 6
    assert len(ledger.reader().sources("child")) == 5
    ledger.close()


def test_trusted_reads_select_every_column_of_their_tables() -> None:
    """A column added to artifacts or step_runs must be checked against the event too."""
    from pipetrail.ledger.schema import artifacts, step_runs
    from pipetrail.ledger.trusted_sql import ARTIFACT_COLUMNS, STEP_COLUMNS

    assert set(ARTIFACT_COLUMNS) == {c.name for c in artifacts.columns}
    assert set(STEP_COLUMNS) == {c.name for c in step_runs.columns}


def test_cache_lookup_rows_are_named_as_the_query_names_its_columns(metadata_url: str) -> None:
    """The lookup reads its row as a tuple: the names it gives follow the query's order."""
    from pipetrail.ledger.trusted_sql import CACHE_LOOKUP_COLUMNS, CACHE_LOOKUP_SQL

    ledger = _with_runs(metadata_url)
    reader = ledger.reader()
    by_name = reader.fetch(CACHE_LOOKUP_SQL, {"k": _digest("1")})
    assert list(by_name[0]) == list(CACHE_LOOKUP_COLUMNS)
    assert reader.cache_lookup(_digest("1"))["step_run_id"] == by_name[0]["step_run_id"]
    ledger.close()
