"""Lineage queries on hand-made ledgers: reference resolution, cycles, depth limits, reuse."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from pipetrail.errors import AmbiguousPrefixError, NotFoundError
from pipetrail.lineage.graph import Target
from pipetrail.lineage.queries import downstream, path, resolve_ref, upstream
from pipetrail.lineage.refs import upper_bound
from tests.unit.lineage.conftest import digest

if TYPE_CHECKING:
    from tests.unit.lineage.conftest import LedgerBuilder

RUN = "01JAAAAAAAAAAAAAAAAAAAAAAA"
RUN2 = "01JBBBBBBBBBBBBBBBBBBBBBBB"


def _ids(graph: object) -> set[str]:
    return {s.step_run_id for s in graph.step_runs}  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("prefix", "bound"),
    [
        ("blake3:a9", "blake3:aa"),  # not ":" after "9": linguistic collations ignore it
        ("blake3:af", "blake3:ag"),
        ("01Z", "02"),
        ("0Z9", "0ZA"),
        ("ZZ", "~"),
    ],
)
def test_upper_bound_stays_in_the_alphabet(prefix: str, bound: str) -> None:
    assert upper_bound(prefix) == bound


def test_digest_prefixes(ledger: LedgerBuilder) -> None:
    ledger.run(RUN)
    abc1, abc2 = ledger.artifact(digest("abc1")), ledger.artifact(digest("abc2"))
    a9, aa = ledger.artifact(digest("a9ff")), ledger.artifact(digest("aa00"))
    by_reference = ledger.source(RUN, "data/big.bin", digest("dd"), stored=False)
    reader = ledger.reader
    with pytest.raises(AmbiguousPrefixError, match=f"artifact {abc1}, artifact {abc2}"):
        resolve_ref(reader, "abc")
    assert resolve_ref(reader, "a9") == Target("artifact", a9)
    assert resolve_ref(reader, "blake3:AA") == Target("artifact", aa)
    assert resolve_ref(reader, "ABC2") == Target("artifact", abc2)
    assert resolve_ref(reader, "dd") == Target("artifact", by_reference)
    for missing in ("abc3", "blake3:zz", "x-y", "   "):
        with pytest.raises(NotFoundError, match="nothing matches"):
            resolve_ref(reader, missing)


def test_ids_and_kinds(ledger: LedgerBuilder) -> None:
    ledger.run(RUN)
    ledger.run(RUN2)
    step = ledger.step("01JAAB0000000000000000000Z", RUN, {}, {})
    reader = ledger.reader
    assert resolve_ref(reader, RUN.lower()) == Target("run", RUN)
    assert resolve_ref(reader, "latest") == Target("run", RUN2)
    assert resolve_ref(reader, "01jaab") == Target("step_run", step)
    with pytest.raises(AmbiguousPrefixError, match=f"run {RUN}, step run {step}"):
        resolve_ref(reader, "01JAA")
    with pytest.raises(AmbiguousPrefixError, match=r"run .*run .*step run"):
        resolve_ref(reader, "01J")


def test_cycles_end(ledger: LedgerBuilder) -> None:
    ledger.run(RUN)
    a, b = ledger.artifact(digest("a1")), ledger.artifact(digest("b1"))
    s1 = ledger.step("01JAAS1", RUN, {"x": a}, {"output": b})
    s2 = ledger.step("01JAAS2", RUN, {"x": b}, {"output": a})
    same = ledger.step("01JAAS3", RUN, {"x": a}, {"output": a})  # returns its input
    assert _ids(upstream(ledger.reader, a)) == {s1, s2, same}
    assert _ids(downstream(ledger.reader, a)) == {s1, s2, same}
    assert _ids(upstream(ledger.reader, a, max_depth=1)) == {s2, same}
    graph = upstream(ledger.reader, s1)
    assert graph.depth(s1) == 0
    assert graph.depth(s2) == 1


def test_depth_limits_count_steps_not_cache_reuse(ledger: LedgerBuilder) -> None:
    ledger.run(RUN)
    ledger.run(RUN2)
    src = ledger.source(RUN, "data/in.csv", ledger.artifact(digest("5c")))
    ledger.source(RUN2, "data/in.csv", src)
    x, y, z = (ledger.artifact(digest(h)) for h in ("e1", "e2", "e3"))
    s1 = ledger.step("01JAAS1", RUN, {"raw": src}, {"output": x}, node="prep")
    s2 = ledger.step("01JAAS2", RUN, {"x": x}, {"output": y}, node="fit")
    s1b = ledger.step("01JBBS1", RUN2, {"raw": src}, {"output": x}, node="prep", reused=s1)
    s2b = ledger.step("01JBBS2", RUN2, {"x": x}, {"output": z}, node="fit", params={"k": 2})
    assert _ids(downstream(ledger.reader, s1, max_depth=0)) == {s1, s1b}
    assert _ids(downstream(ledger.reader, s1, max_depth=1)) == {s1, s1b, s2, s2b}
    assert _ids(downstream(ledger.reader, src)) == {s1, s1b, s2, s2b}
    assert len(upstream(ledger.reader, z, max_depth=0).step_runs) == 0
    up = upstream(ledger.reader, z)
    assert _ids(up) == {s2b, s1}  # the cache hit's place is taken by what it reused
    assert up.depth(src) == 2
    fit = up.step_run(s2b)
    assert fit is not None
    assert fit.params == {"k": 2}
    run2 = upstream(ledger.reader, RUN2)
    assert _ids(run2) == {s1, s1b, s2b}
    assert [(e.target, e.kind) for e in run2.edges_from(s1b)] == [(s1, "reuses"), (x, "output")]
    reuse = [e for e in run2.edges if e.kind == "reuses"]
    assert [(e.source, e.target) for e in reuse] == [(s1b, s1)]
    source = run2.artifact(src)
    assert source is not None
    assert (source.kind, source.paths) == ("source", ("data/in.csv",))


def test_paths(ledger: LedgerBuilder) -> None:
    ledger.run(RUN)
    ledger.run(RUN2)
    src = ledger.source(RUN, "data/in.csv", digest("5c"), stored=False)
    x, y = ledger.artifact(digest("e1")), ledger.artifact(digest("e2"))
    s1 = ledger.step("01JAAS1", RUN, {"raw": src}, {"output": x})
    s2 = ledger.step("01JAAS2", RUN, {"x": x}, {"output": y})
    alone = ledger.artifact(digest("f0"))
    found = path(ledger.reader, y, src)
    assert found is not None
    assert found.roots == (src,)
    assert [(e.source, e.target) for e in found.edges] == sorted(
        [(src, s1), (s1, x), (x, s2), (s2, y)]
    )
    by_ref = found.artifact(src)
    assert by_ref is not None
    assert (by_ref.type_name, by_ref.size, by_ref.kind) == (None, 10, "source")
    assert path(ledger.reader, y, alone) is None
    itself = path(ledger.reader, alone, alone)
    assert itself is not None
    assert itself.node_ids == [alone]
    from_run = path(ledger.reader, RUN, y)
    assert from_run is not None
    assert from_run.roots in ((s1,), (s2,))


def test_negative_depth_is_refused(ledger: LedgerBuilder) -> None:
    ledger.run(RUN)
    with pytest.raises(ValueError, match="max_depth"):
        upstream(ledger.reader, RUN, max_depth=-1)
