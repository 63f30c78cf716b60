"""The report's inline SVG charts: points where values are, breaks where they are not."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from pipetrail.observability.report_svg import bar_chart, line_chart, number

SVG = "{http://www.w3.org/2000/svg}"


def test_a_missing_value_breaks_the_line_and_each_point_says_its_figure() -> None:
    chart = line_chart({"a<b": [1.0, 2.0, None, 4.0, 5.0]}, ["#1", "#2", "#3", "#4", "#5"],
                       title="loss & co")  # fmt: skip
    root = ET.fromstring(chart)  # noqa: S314 - our own output: well-formed, text escaped
    assert root.find(f"{SVG}title").text == "loss & co"
    points = root.findall(f"{SVG}circle")
    assert [p.find(f"{SVG}title").text for p in points] == [
        "a<b #1: 1", "a<b #2: 2", "a<b #4: 4", "a<b #5: 5",
    ]  # fmt: skip
    assert len(root.findall(f"{SVG}polyline")) == 2  # #1-#2 and #4-#5
    heights = [float(p.get("cy")) for p in points]
    assert heights == sorted(heights, reverse=True)  # larger values higher up


def test_empty_charts_and_bars() -> None:
    assert "no data" in line_chart({"x": [None]}, ["#1"], title="t")
    bars = ET.fromstring(bar_chart([("fit: ValueError", 3), ("crashed", 1)], title="f"))  # noqa: S314
    widths = [float(r.get("width")) for r in bars.findall(f"{SVG}rect")]
    assert widths[0] == pytest.approx(3 * widths[1], abs=0.2)
    assert number(None) == "-"
    assert number(0.123456) == "0.1235"
