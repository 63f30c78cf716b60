"""PSI, KS and Wasserstein from profiles, on distributions with known answers."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pytest

from pipetrail.errors import ProjectError
from pipetrail.observability.drift import _compare_columns
from pipetrail.observability.drift_config import DriftThresholds, load_thresholds
from pipetrail.observability.drift_stats import (
    categorical_distances,
    ks_noise,
    numeric_distances,
    psi,
    psi_noise,
    shared_histograms,
)
from pipetrail.store.serializers.table_profile import profile_table

if TYPE_CHECKING:
    from pathlib import Path


def _column(values: Any, name: str = "x") -> dict[str, Any]:
    profile = profile_table(pa.table({name: values}))
    column: dict[str, Any] = profile["columns"][0]
    return column


def test_psi_of_equal_shares_is_zero_and_matches_the_formula() -> None:
    assert psi([10, 20, 70], [10, 20, 70]) == 0.0
    expected = (0.5 - 0.2) * math.log(0.5 / 0.2) + (0.5 - 0.8) * math.log(0.5 / 0.8)
    assert psi([20_000, 80_000], [50_000, 50_000]) == pytest.approx(expected, rel=1e-4)
    # Half a row is added to each bucket: 1 row against 0 is not an infinite shift.
    assert psi([1, 0], [0, 1]) == pytest.approx(2 * (0.75 - 0.25) * math.log(3))


def test_an_empty_bucket_counts_as_rare_not_impossible() -> None:
    assert math.isfinite(psi([100, 0], [50, 50]))
    assert psi([100, 0], [50, 50]) > 1.0


def test_same_distribution_samples_have_small_distances() -> None:
    rng = np.random.default_rng(3)
    a = _column(rng.normal(0, 1, 50_000))
    b = _column(rng.normal(0, 1, 50_000))
    found = numeric_distances(a, b)
    assert found is not None
    assert found["psi"] < 0.01
    assert found["ks"] < 0.02
    assert found["wasserstein_std"] < 0.05


def test_a_shift_of_one_standard_deviation_is_found() -> None:
    rng = np.random.default_rng(4)
    a = _column(rng.normal(0, 1, 50_000))
    b = _column(rng.normal(1, 1, 50_000))
    found = numeric_distances(a, b)
    assert found is not None
    assert found["psi"] > 0.5  # about 1.0 for a one-sigma shift of a normal
    # KS of N(0,1) vs N(1,1) is 2*Phi(0.5)-1 = 0.383; Wasserstein-1 is the shift, 1.
    assert found["ks"] == pytest.approx(0.383, abs=0.03)
    assert found["wasserstein"] == pytest.approx(1.0, abs=0.1)


def test_histograms_are_rebinned_onto_shared_edges_keeping_their_counts() -> None:
    a = {"edges": [0.0, 1.0, 2.0], "counts": [10, 30]}
    b = {"edges": [1.0, 3.0], "counts": [8]}
    edges, counts_a, counts_b = shared_histograms(a, b)
    assert edges[0] == 0.0
    assert edges[-1] == 3.0
    assert sum(counts_a) == pytest.approx(40)
    assert sum(counts_b) == pytest.approx(8)
    assert sum(counts_b[: len(counts_b) // 3]) == pytest.approx(0)  # nothing of B below 1


def test_a_constant_column_is_a_point_mass() -> None:
    a = _column([5.0] * 200)
    b = _column([5.0] * 100 + [6.0] * 100)
    found = numeric_distances(a, b)
    assert found is not None
    assert found["ks"] == pytest.approx(0.5)
    same = numeric_distances(a, a)
    assert same is not None
    assert (same["psi"], same["ks"], same["wasserstein"]) == (0.0, 0.0, 0.0)


def test_categorical_psi_over_shared_top_values_and_other() -> None:
    a = _column(["x"] * 50_000 + ["y"] * 50_000)
    b = _column(["x"] * 90_000 + ["y"] * 10_000)
    found = categorical_distances(a, b)
    assert found["buckets"] == ["x", "y", "(other)"]
    assert found["psi"] == pytest.approx(
        (0.9 - 0.5) * math.log(0.9 / 0.5) + (0.1 - 0.5) * math.log(0.1 / 0.5), rel=1e-3
    )
    new = _column(["x"] * 50 + ["z"] * 50)
    assert categorical_distances(a, new)["buckets"] == ["x", "y", "z", "(other)"]
    assert categorical_distances(a, new)["psi"] > 1.0


def test_schema_changes_and_null_rates_drift() -> None:
    a = profile_table(pa.table({"k": [1, 2, 3, 4], "s": ["a", "b", "c", "d"], "n": [1.0] * 4}))
    b = profile_table(
        pa.table({"k": ["1", "2", "3", "4"], "t": [1, 2, 3, 4], "n": [1.0, None, None, 1.0]})
    )
    found = {c.column: c for c in _compare_columns(a, b, DriftThresholds())}
    assert found["k"].change == "type"
    assert found["s"].change == "removed"
    assert found["t"].change == "added"
    assert found["n"].drifted
    assert found["n"].reasons == ("null rate +50.0 points (limit 5)",)


def test_a_shift_within_sampling_noise_is_reported_but_does_not_drift() -> None:
    a = profile_table(pa.table({"v": [1.0, 2.0, 3.0]}))
    b = profile_table(pa.table({"v": [7.0, 8.0, 9.0]}))
    [column] = _compare_columns(a, b, DriftThresholds())
    assert column.psi is not None
    assert column.psi_noise is not None
    assert 0.2 < column.psi < column.psi_noise  # above the usual line, within noise
    assert not column.drifted
    [judged] = _compare_columns(a, b, DriftThresholds(significance=0.999))
    assert judged.drifted


def test_psi_noise_matches_the_chi_square_law() -> None:
    rng = np.random.default_rng(9)
    # Two samples of 200 rows of one distribution, many times: the 99th percentile of
    # their PSI is close to the noise level at significance 0.01.
    found = []
    for _ in range(300):
        a = np.bincount(rng.integers(0, 10, 200), minlength=10).tolist()
        b = np.bincount(rng.integers(0, 10, 200), minlength=10).tolist()
        found.append(psi(a, b))
    level = psi_noise([20.0] * 10, [20.0] * 10, 0.01)
    assert np.quantile(found, 0.99) == pytest.approx(level, rel=0.35)
    assert ks_noise(1e6, 1e6, 0.001) < 0.005


def test_thresholds_read_from_the_project_file(tmp_path: Path) -> None:
    assert load_thresholds(tmp_path) == DriftThresholds()
    (tmp_path / "pipetrail.toml").write_text("[drift]\npsi = 0.1\nks = 0.3\n")
    assert load_thresholds(tmp_path) == DriftThresholds(psi=0.1, ks=0.3)
    (tmp_path / "pipetrail.toml").write_text("[drift]\npsy = 0.1\n")
    with pytest.raises(ProjectError, match=r"unknown key\(s\) psy in \[drift\]"):
        load_thresholds(tmp_path)
    (tmp_path / "pipetrail.toml").write_text("[drift]\nnull_rate = -1\n")
    with pytest.raises(ProjectError, match="must be a non-negative number"):
        load_thresholds(tmp_path)
    (tmp_path / "pipetrail.toml").write_text("[drift]\nsignificance = 1\n")
    with pytest.raises(ProjectError, match="must be between 0 and 1"):
        load_thresholds(tmp_path)


def test_pictures_are_well_formed_svg_for_drifting_columns(tmp_path: Path) -> None:
    from xml.etree import ElementTree

    from pipetrail.observability.drift import ArtifactDrift, DriftReport
    from pipetrail.observability.drift_picture import write_pictures

    rng = np.random.default_rng(5)
    a = profile_table(pa.table({"v": rng.normal(0, 1, 5000), "k": ["p", "q"] * 2500}))
    b = profile_table(pa.table({"v": rng.normal(3, 1, 5000), "k": ["p", "q"] * 2500}))
    columns = _compare_columns(a, b, DriftThresholds())
    item = ArtifactDrift(
        "load", "load", "load", "out/put", "d1", "d2", columns=columns, profiles=(a, b)
    )
    report = DriftReport("A", "B", "p", "p", DriftThresholds(), (item,), ())
    drifted = write_pictures(report, tmp_path / "pics", only_drifted=True)
    assert [p.name for p in drifted] == ["load.out_put.v.svg"]
    everything = write_pictures(report, tmp_path / "all")
    assert [p.name for p in everything] == ["load.out_put.v.svg", "load.out_put.k.svg"]
    root = ElementTree.fromstring(drifted[0].read_text())  # noqa: S314 - our own file
    bars = [e for e in root if e.tag.endswith("rect")]
    assert len(bars) == 2 * 20 + 2  # A and B per shared bin, and the legend


def test_the_report_as_data_holds_every_field_but_the_profiles() -> None:
    from dataclasses import asdict

    from pipetrail.observability.drift import (
        ArtifactDrift,
        ColumnDrift,
        DriftOrigin,
        DriftReport,
    )

    column = ColumnDrift(
        "x",
        "numeric",
        True,
        ("psi 0.5 >= 0.2",),
        psi=0.5,
        psi_noise=0.01,
        ks=0.3,
        ks_noise=0.05,
        wasserstein=1.5,
        wasserstein_std=math.inf,
        null_rate_a=math.nan,
        null_rate_b=0.0,
    )
    profile = {"rows": 3, "columns": [{"name": "x", "histogram": {"counts": [1, 2]}}]}
    item = ArtifactDrift(
        "a", "b", "s", "return", "d1", "d2", 3, 4, (column,), "a note", 2, (profile, profile)
    )
    report = DriftReport(
        "r1", "r2", "p", "p", DriftThresholds(), (item,), (DriftOrigin("a", "s", "return", ("x",)),)
    )
    (data,) = report.to_dict()["artifacts"]
    want = asdict(item)
    del want["profiles"]
    want["columns"] = [
        {**asdict(column), "wasserstein_std": "inf", "null_rate_a": "nan"},
    ]
    assert data == want
    assert list(data) == list(want)
    assert data["columns"][0]["reasons"] == ("psi 0.5 >= 0.2",)


def test_rebinning_keeps_counts_where_buckets_overlap_exactly() -> None:
    a = {"edges": [0.0, 1.0, 2.0, 4.0], "counts": [2, 0, 6]}
    b = {"edges": [1.0, 1.0], "counts": [5]}  # a point mass
    edges, counts_a, counts_b = shared_histograms(a, b)
    assert edges[0] == 0.0
    assert edges[-1] == 4.0
    assert sum(counts_a) == pytest.approx(8.0)
    assert counts_b == [0.0] * 5 + [5.0] + [0.0] * 14
    # the last original bin spreads its 6 evenly over [2, 4]: 0.6 per bucket of 0.2
    assert counts_a[10:] == pytest.approx([0.6] * 10)
    assert counts_a[:5] == pytest.approx([0.4] * 5)


def _rebin_reference(histogram: dict[str, Any], edges: list[float]) -> list[float]:
    """The plain statement of rebinning: each bin's count spread by overlap."""
    old = [float(e) for e in histogram["edges"]]
    found = [0.0] * (len(edges) - 1)
    low, high = edges[0], edges[-1]
    width = (high - low) / (len(edges) - 1) if high > low else 0.0
    for i, count in enumerate(histogram["counts"]):
        if not count:
            continue
        start, end = old[i], old[i + 1]
        if end <= start or width == 0.0:
            found[0 if width == 0.0 else min(int((start - low) / width), len(found) - 1)] += count
            continue
        for j in range(
            max(0, min(int((start - low) / width), len(found) - 1)),
            max(0, min(int((end - low) / width), len(found) - 1)) + 1,
        ):
            overlap = min(end, edges[j + 1]) - max(start, edges[j])
            if overlap > 0:
                found[j] += count * overlap / (end - start)
    return found


def test_rebinning_gives_exactly_the_plain_statement_of_it() -> None:
    from pipetrail.observability.drift_stats import rebin

    rng = np.random.default_rng(3)
    for _ in range(300):
        bins = int(rng.integers(1, 30))
        low = float(rng.normal(0, 100))
        steps = rng.exponential(1.0, bins) * (rng.random(bins) > 0.1)  # some empty bins
        old_edges = [low, *(low + np.cumsum(steps)).tolist()]
        counts = rng.integers(0, 50, bins).tolist()
        lo = min(old_edges[0], float(rng.normal(0, 100)))
        hi = max(old_edges[-1], lo + float(rng.exponential(50)))
        new = int(rng.integers(1, 25))
        edges = [lo + (hi - lo) / new * i for i in range(new)] + [hi]
        if rng.random() < 0.05:
            edges = [lo, lo]  # a point mass target
        histogram = {"edges": old_edges, "counts": counts}
        assert rebin(histogram, edges) == _rebin_reference(histogram, edges)
