"""The generator of benchmarks/README.md's results section, on made-up figures.

Pure formatting: nothing here runs a benchmark. The benchmark scripts import each other
as top-level modules (they run as scripts from benchmarks/), so the folder goes on
``sys.path`` for these tests only.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import math
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from collections.abc import Iterator

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture
def bench(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The benchmarks' ``_common`` and ``_report`` modules, imported from benchmarks/."""
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    import _common
    import _report

    yield _common, _report
    for name in ("_common", "_report"):
        sys.modules.pop(name, None)


def _info(common: Any, **kw: Any) -> Any:
    values: dict[str, Any] = {
        "commit": "0123456789ab",
        "dirty": [],
        "started": "2026-12-06 05:00:00 UTC",
        "python": "CPython 3.11.7",
        "system": "Linux 6.1.0 x86_64",
        "cpus": 2,
        "usable_cpus": 2,
        "memory_bytes": 24 * 2**30,
        "load_before": (0.25, 0.5, 0.75),
        "load_after": (1.5, 1.0, 0.875),
        "command": ["benchmarks/run_all.py", "--write-readme"],
        "quick": False,
    }
    values.update(kw)
    return common.RunInfo(**values)


def _results(common: Any) -> list[Any]:
    return [
        common.summarize(
            "chain.cached", "`run chain50.py -q`, cached", [0.18, 0.17, 0.2], "s", at_most=0.2
        ),
        common.summarize("hash.ratio", "hash / raw | cat", [0.5, 0.55, 0.52], "x", at_least=0.6),
        common.summarize("hash.raw", "raw read", [3.9, 4.1], "GiB/s"),
        common.not_measured(
            "src.vs_dvc.status.run",
            "dvc status / run",
            "x",
            "DVC: install failed",
            target=">= 3.00 x",
        ),
        common.not_measured("src.dvc.status", "`dvc status`", "s", "DVC: install failed"),
    ]


def test_the_section_states_commit_date_machine_and_load(bench: Any) -> None:
    common, report = bench
    section = report.render_results(
        _info(common), _results(common), {"cached_chain": 0.125, "hashing": None}, [], 312.4
    )
    lines = section.splitlines()
    assert lines[0] == report.BEGIN
    assert lines[-1] == report.END
    assert "| commit | `0123456789ab` |" in lines
    assert "| date | 2026-12-06 05:00:00 UTC; the run took 312 s |" in lines
    assert "| machine | Linux 6.1.0 x86_64, 2 CPUs, 24.0 GiB, CPython 3.11.7 |" in lines
    load = "| load average (1 / 5 / 15 min) |"
    assert f"{load} 0.25 / 0.50 / 0.75 before, 1.50 / 1.00 / 0.88 after |" in lines
    background = "| background load (CPUs other processes kept busy, of 2) |"
    assert f"{background} cached_chain 0.12, hashing n/a |" in lines
    assert "`python benchmarks/run_all.py --write-readme`" in section
    assert "One full run of every benchmark" in section


def test_the_table_and_the_verdicts(bench: Any) -> None:
    common, report = bench
    section = report.render_results(_info(common), _results(common), {}, [], 1.0)
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows == [
        "| `chain.cached` | `run chain50.py -q`, cached | 3 | 0.180 | 0.170 | 0.200 | s | <= 0.200 s | PASS |",  # noqa: E501
        "| `hash.ratio` | hash / raw \\| cat | 3 | 0.520 | 0.500 | 0.550 | x | >= 0.600 x | **FAIL** |",  # noqa: E501
        "| `hash.raw` | raw read | 2 | 4.00 | 3.90 | 4.10 | GiB/s | - | info |",
        "| `src.vs_dvc.status.run` | dvc status / run | 0 | - | - | - | x | >= 3.00 x | **not measured** |",  # noqa: E501
        "| `src.dvc.status` | `dvc status` | 0 | - | - | - | s | - | **not measured** |",
    ]
    assert (
        "**1 targets met, 1 missed (hash.ratio), 1 not measured "
        "(src.vs_dvc.status.run: DVC: install failed)**"
    ) in section


def test_a_row_not_measured_has_no_figures_and_no_verdict(bench: Any) -> None:
    common, _ = bench
    row = common.not_measured("a.b", "peer", "s", "offline", target=">= 3 x")
    assert row.passed is None
    assert row.verdict == "not measured"
    assert row.n == 0
    assert math.isnan(row.median)


def test_a_dirty_tree_a_quick_run_and_a_crash_are_said(bench: Any) -> None:
    common, report = bench
    info = _info(common, dirty=["benchmarks/", "src/"], quick=True, load_after=None, cpus=None)
    section = report.render_results(info, _results(common)[:1], {}, ["sources"], 5.0)
    assert "| commit | `0123456789ab + uncommitted changes in benchmarks/, src/` |" in section
    assert "One quick run (fewer repetitions) of every benchmark" in section
    assert "0.25 / 0.50 / 0.75 before, n/a after" in section
    assert "CPUs unknown" in section
    assert "**1 targets met, 0 missed; crashed: sources**" in section


def test_only_the_section_between_the_markers_is_replaced(bench: Any, tmp_path: Path) -> None:
    common, report = bench
    readme = tmp_path / "README.md"
    prose_before = "# Benchmarks\n\nHow each one works.\n\n"
    prose_after = "\n## Files\n\nWhat each file does.\n"
    readme.write_text(f"{prose_before}{report.BEGIN}\nold figures\n{report.END}\n{prose_after}")
    first = report.render_results(_info(common), _results(common), {}, [], 1.0)
    report.write_readme(readme, first)
    text = readme.read_text()
    assert text == prose_before + first + prose_after
    assert "old figures" not in text
    second = report.render_results(_info(common, commit="fedcba987654"), [], {}, [], 2.0)
    report.write_readme(readme, second)
    assert readme.read_text() == prose_before + second + prose_after


@pytest.mark.parametrize(
    "text",
    [
        "no markers at all\n",
        "<!-- END RESULTS -->\nbackwards\n{begin}\n",
        "{begin}\n{begin}\n<!-- END RESULTS -->\n",
    ],
)
def test_a_readme_without_its_markers_is_refused(bench: Any, tmp_path: Path, text: str) -> None:
    _, report = bench
    readme = tmp_path / "README.md"
    readme.write_text(text.format(begin=report.BEGIN))
    with pytest.raises(report.MarkersMissing, match="BEGIN RESULTS"):
        report.write_readme(readme, "x")
    assert readme.read_text() == text.format(begin=report.BEGIN)


def test_the_repository_readme_has_the_markers(bench: Any) -> None:
    _, report = bench
    text = (BENCHMARKS / "README.md").read_text(encoding="utf-8")
    assert text.count(report.BEGIN) == 1
    assert text.count(report.END) == 1
    assert text.index(report.BEGIN) < text.index(report.END)


@pytest.fixture
def rows(bench: Any) -> Iterator[Any]:
    """The sources benchmark's row builders (``_source_rows``), on made-up figures."""
    import _source_rows

    yield _source_rows
    for name in ("_source_rows", "peers"):
        sys.modules.pop(name, None)


def _by_name(results: list[Any]) -> dict[str, Any]:
    return {r.name: r for r in results}


def test_without_dvc_the_comparisons_are_not_measured(rows: Any) -> None:
    peer = rows.PeerFigures(reason="install failed: offline")
    added = _by_name(rows.add_rows(peer, [0.3, 0.3], [0.7, 0.8], [0.9, 1.0]))
    status = _by_name(rows.status_rows(peer, [0.01] * 4, [0.1, 0.1], [0.15, 0.14], 2.0))
    for found in (added, status):
        for name, row in found.items():
            if "dvc" in name:
                assert row.verdict == "not measured", name
                assert row.passed is None
                assert row.n == 0
                assert "install failed: offline" in (row.missing or "")
    assert added["sources.vs_dvc.add_copy.process"].target == ">= 3.00 x"
    assert status["sources.vs_dvc.status.run"].target == ">= 3.00 x"
    assert status["sources.run.cached"].verdict == "info"  # our own figure, still measured


def test_only_whole_process_comparisons_carry_a_verdict(rows: Any) -> None:
    peer = rows.PeerFigures(version="3.67.1", link="copy", add=[6.0, 5.0], add_sync=[6.5, 5.5])
    peer.status = [0.5, 0.45]
    # In process, pipetrail's first copy is 8x faster; as a whole process, 2.2x: FAIL.
    added = _by_name(rows.add_rows(peer, [0.3, 0.25], [0.75, 0.625], [2.5, 2.5]))
    unchanged = [0.01, 0.01, 0.01, 0.009]
    status = _by_name(rows.status_rows(peer, unchanged, [0.1, 0.15], [0.2, 0.125], 2.0))
    with_target = {n for n, r in {**added, **status}.items() if r.target != "-"}
    assert with_target == {"sources.vs_dvc.add_copy.process", "sources.vs_dvc.status.run"}
    assert added["sources.vs_dvc.add_copy"].median == pytest.approx(8.0)
    assert added["sources.vs_dvc.add_copy"].verdict == "info"
    assert added["sources.vs_dvc.add_copy.process"].median == pytest.approx(2.2)
    assert added["sources.vs_dvc.add_copy.process"].verdict == "FAIL"
    assert status["sources.vs_dvc.status.run"].median == pytest.approx((2.5 + 3.6) / 2)
    assert status["sources.vs_dvc.status.run"].verdict == "PASS"
    assert status["sources.vs_dvc.status"].verdict == "info"  # in process: context only
    assert status["sources.vs_dvc.status"].median == pytest.approx((50 + 0.45 / 0.009) / 2)


def test_what_a_benchmark_does_to_the_environment_and_directory_is_undone(
    bench: Any, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    common, _ = bench
    # Registered with monkeypatch first, so a broken helper cannot leak into other tests.
    monkeypatch.setenv("PIPETRAIL_BENCH_KEPT", "before")
    monkeypatch.setenv("PIPETRAIL_BENCH_REMOVED", "before")
    monkeypatch.delenv("PIPETRAIL_BENCH_ADDED", raising=False)
    monkeypatch.chdir(tmp_path)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    before = dict(common.os.environ)

    def benchmark() -> None:
        common.os.environ["PIPETRAIL_BENCH_KEPT"] = "changed"
        del common.os.environ["PIPETRAIL_BENCH_REMOVED"]
        common.os.environ.setdefault("PIPETRAIL_BENCH_ADDED", "added")
        common.os.chdir(elsewhere)
        raise RuntimeError("a benchmark that crashes half-way")

    with pytest.raises(RuntimeError, match="half-way"), common.process_state_kept():
        benchmark()
    assert dict(common.os.environ) == before
    assert Path.cwd() == tmp_path
    # A later benchmark's own `setdefault` is then not shadowed by an earlier one's value.
    with common.process_state_kept():
        common.os.environ.setdefault("PIPETRAIL_BENCH_ADDED", "second")
        assert common.os.environ["PIPETRAIL_BENCH_ADDED"] == "second"
    assert "PIPETRAIL_BENCH_ADDED" not in common.os.environ


@pytest.fixture
def script(bench: Any) -> Iterator[Any]:
    """Import a benchmark script by name; the benchmarks' modules are forgotten afterwards."""
    yield importlib.import_module
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(BENCHMARKS)):
            del sys.modules[name]


def test_the_example_rerun_compares_with_the_pinned_commit_and_says_which(script: Any) -> None:
    example_rerun = script("example_rerun")
    parser = argparse.ArgumentParser()
    example_rerun._options(parser)
    assert parser.parse_args([]).baseline == example_rerun.BASELINE == "9802558"
    assert inspect.signature(example_rerun.run).parameters["baseline"].default == "9802558"
    commit = "98025586c30babd3531646388e8bf98f7ec61df5"
    found = _by_name(example_rerun.rows([1.0, 1.2], [2.4, 2.0], "9802558", commit))
    assert "98025586c30b" in found["example_rerun.baseline"].measured
    assert "98025586c30b" in found["example_rerun.speedup"].measured
    assert found["example_rerun.speedup"].median == pytest.approx((2.4 + 2.0 / 1.2) / 2)
    named = _by_name(example_rerun.rows([1.0], [2.0], "main", "0123456789abcdef"))
    assert "main = 0123456789ab" in named["example_rerun.baseline"].measured


def test_no_hashing_variant_claims_to_be_digest_file(script: Any, tmp_path: Path) -> None:
    # digest_file reads large files ahead (never a memory map) and reads small ones into a
    # reused buffer (never a new bytes per file): no variant is it, so none says "=".
    hashing = script("hashing")
    files = [tmp_path / "a"]
    files[0].write_bytes(b"x" * 1000)
    with hashing.ThreadPoolExecutor(max_workers=1) as pool:
        cases = {name: label for name, label, *_ in hashing.variant_cases(files, files, pool, 1)}
    assert not [label for label in cases.values() if "= digest_file" in label]
    assert "mapped mode" in cases["big.mmap_auto"]
    assert "digest_file reuses a buffer" in cases["small.read_whole"]


def test_without_dask_every_dask_row_and_target_is_not_measured(script: Any) -> None:
    common, dask_overhead = script("_common"), script("dask_overhead")
    found = _by_name(dask_overhead.not_measured_rows("dask.distributed is not installed"))
    measured = {f"dask_overhead.{name}" for name, *_ in dask_overhead.rows(dask_overhead.STEPS)}
    assert set(found) == measured
    assert {"dask_overhead.chain_pipetrail", "dask_overhead.chain_ratio"} <= set(found)
    for row in found.values():
        assert row.verdict == "not measured"
        assert row.missing == "dask.distributed is not installed"
    # The targets read as a measured row's would.
    with_target = {n: r.target for n, r in found.items() if r.target != "-"}
    expected = common.summarize("x", "x", [1.0], "x", at_most=dask_overhead.TARGET_RATIO).target
    assert with_target == {
        "dask_overhead.fanout_ratio": expected,
        "dask_overhead.chain_ratio": expected,
    }


def test_without_seaweedfs_the_s3_targets_read_as_percentages(script: Any) -> None:
    s3_store = script("s3_store")
    found = _by_name(s3_store.not_measured_rows("SeaweedFS could not be started: no weed"))
    assert found["s3_store.put_ratio"].target == ">= 70.0 %"
    assert found["s3_store.get_ratio"].target == ">= 70.0 %"
    assert {r.verdict for r in found.values()} == {"not measured"}
    assert {"s3_store.put", "s3_store.get", "s3_store.s3fs_put"} <= set(found)
    # The labels give the size actually moved: 8 x 100 MiB + 2,000 x 100 KiB.
    labels = [r.measured for r in found.values() if r.unit == "MiB/s"]
    assert labels
    assert all("995 MiB" in label and "GiB" not in label for label in labels)
    seconds = {"raw_put": 2.0, "ours_put": 2.5, "raw_get": 1.0, "ours_get": 1.25}
    measured = _by_name(s3_store._rows([seconds], "s3fs not installed"))
    assert measured["s3_store.put_ratio"].median == pytest.approx(80.0)
    assert measured["s3_store.put_ratio"].target == ">= 70.0 %"
    assert measured["s3_store.put"].measured == "995 MiB put, S3Store.put_files"
    assert measured["s3_store.s3fs_get"].missing == "s3fs not installed"


def test_a_private_virtualenv_with_its_marker_is_reused(script: Any, tmp_path: Path) -> None:
    peers = script("peers")
    folder = tmp_path / "venv"
    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "python").write_text("")
    (folder / "INSTALLED").write_text("s3fs==1.0\n")
    assert peers.ensure_venv(folder, "s3fs==1.0") == folder / "bin" / "python"


def test_a_drift_fixture_is_reused_only_when_built_from_the_same_parameters(
    script: Any, tmp_path: Path
) -> None:
    profiles = script("profiles")
    sources = [(0.0, 5), (1.5, 5)]
    params = profiles.fixture_params(sources)
    (tmp_path / "run_ids.txt").write_text("r1 r2")  # the old marker, with no parameters
    assert profiles.built_runs(tmp_path, params) is None
    (tmp_path / "params.json").write_text(
        profiles.json.dumps({"params": params, "runs": ["r1", "r2"]})
    )
    assert profiles.built_runs(tmp_path, profiles.fixture_params(sources)) == ["r1", "r2"]
    for changed in (
        {**params, "schema": "another revision"},
        {**params, "rows": params["rows"] + 1},
        {**params, "pipeline": "0" * 64},
        profiles.fixture_params([(0.0, 5), (1.5, 6)]),
    ):
        assert profiles.built_runs(tmp_path, changed) is None
    (tmp_path / "params.json").write_text("{truncated")
    assert profiles.built_runs(tmp_path, params) is None


def test_the_structured_logs_help_gives_the_docstring_first_line_only() -> None:
    script = BENCHMARKS / "structured_logs.py"
    first = script.read_text(encoding="utf-8").split('"""')[1].splitlines()[0]
    found = subprocess.run(
        [sys.executable, str(script), "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert first in found
    assert "Run: " not in found
    assert "--quick" in found


def test_the_reproduce_ratio_is_one_statistic_of_the_per_pair_ratios(script: Any) -> None:
    reproduce = script("reproduce")
    plain, reproduced = [10.0, 1.0, 1.0], [11.0, 1.5, 1.0]  # per pair: 1.1, 1.5, 1.0
    row = _by_name(reproduce.rows(plain, reproduced))["reproduce.ratio"]
    # The median of the per-pair ratios; the ratio of the medians would be 1.5 / 1.0.
    assert (row.median, row.min, row.max, row.n) == (pytest.approx(1.1), 1.0, 1.5, 3)
    assert row.verdict == "PASS"
    assert "per pair" in row.measured
    slow = _by_name(reproduce.rows([1.0, 1.0, 1.0], [1.3, 1.25, 1.0]))["reproduce.ratio"]
    assert slow.median == pytest.approx(1.25)
    assert slow.verdict == "FAIL"
