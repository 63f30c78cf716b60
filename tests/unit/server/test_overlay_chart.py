"""The compare page's overlay chart: every run's series on shared axes, a legend entry per
run, the points where the values are, and a description naming each run's series."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pipetrail.server.charts import (
    BOTTOM,
    HEIGHT,
    LEFT,
    MAX_OVERLAID,
    RIGHT,
    TOP,
    WIDTH,
    Series,
    overlay_chart,
)

NS = "{http://www.w3.org/2000/svg}"


def _parse(svg: str) -> ET.Element:
    # Our own markup, made in the test: nothing untrusted is parsed.
    return ET.fromstring(  # noqa: S314
        svg.replace("<svg ", '<svg xmlns="http://www.w3.org/2000/svg" ', 1)
    )


def _points(element: ET.Element) -> list[tuple[float, float]]:
    return [
        (float(x), float(y)) for x, y in (p.split(",") for p in element.attrib["points"].split())
    ]


def test_two_runs_share_the_axes_and_each_has_a_legend_entry() -> None:
    chart = overlay_chart(
        "o1",
        "loss",
        [Series("A: r1", [0, 1, 2], [1.0, 0.5, 0.25]), Series("B: r2", [0, 2, 4], [2.0, 1.0, 0.0])],
    )
    svg = _parse(chart.svg)
    lines = svg.findall(f"{NS}polyline")
    assert [line.attrib["class"] for line in lines] == ["series series-0", "series series-1"]
    a, b = (_points(line) for line in lines)
    inner_w, inner_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    # Shared x from step 0 to 4 and shared y from 0.0 to 2.0.
    assert a[0] == (LEFT, TOP + inner_h / 2)  # step 0, value 1.0: half way up
    assert a[-1] == (LEFT + inner_w / 2, pytest.approx(TOP + inner_h * 0.875, abs=0.05))
    assert b[0] == (LEFT, TOP)  # the highest value of both runs at the top
    assert b[-1] == (LEFT + inner_w, TOP + inner_h)  # the lowest, at the last step
    texts = [t.text for t in svg.iter(f"{NS}text")]
    assert "2" in texts  # the shared extremes
    assert "0" in texts
    assert "4" in texts
    legend = svg.find(f"{NS}g[@class='legend']")
    assert legend is not None
    assert [t.text for t in legend.iter(f"{NS}text")] == ["A: r1", "B: r2"]
    assert [s.attrib["class"] for s in legend.iter(f"{NS}line")] == [
        "series series-0",
        "series series-1",
    ]
    assert svg.find(f"{NS}title").text == "loss"  # type: ignore[union-attr]
    assert chart.description.startswith("loss, overlaid: A: r1: 3 point(s)")
    assert "B: r2: 3 point(s) from step 0 to 4, first 2, last 0, lowest 0, highest 2" in (
        chart.description
    )


def test_a_run_without_the_metric_or_without_finite_values_draws_nothing() -> None:
    chart = overlay_chart(
        "o2",
        "<f1>",
        [Series("A: r1", [0], [0.5]), Series("B: r2 (not logged)", [], []),
         Series("C", [0, 1], [None, float("nan")])],
    )  # fmt: skip
    svg = _parse(chart.svg)
    assert svg.findall(f"{NS}polyline") == []
    (dot,) = svg.findall(f"{NS}circle")
    assert dot.attrib["class"] == "series series-0"
    legend = [t.text for t in svg.find(f"{NS}g[@class='legend']").iter(f"{NS}text")]  # type: ignore[union-attr]
    assert legend == ["A: r1", "B: r2 (not logged) (no finite value)", "C (no finite value)"]
    assert "&lt;f1&gt;" in chart.svg  # names are escaped
    assert "C: no finite value" in chart.description

    empty = overlay_chart("o3", "x", [Series("A", [0], [None])])
    assert "no finite value" in empty.svg
    assert _parse(empty.svg).findall(f"{NS}polyline") == []


def test_the_number_of_series_is_bounded() -> None:
    with pytest.raises(ValueError, match="between 1 and"):
        overlay_chart("o", "x", [])
    with pytest.raises(ValueError, match="between 1 and"):
        overlay_chart("o", "x", [Series(str(i), [0], [1.0]) for i in range(MAX_OVERLAID + 1)])
