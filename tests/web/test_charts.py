"""web/charts.py: the SVG is well-formed, scaled to its ticks, linked and labelled, without a
browser."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from promptdeck.web.charts import (
    ERROR_COLOR,
    HOUR,
    NARROW,
    PALETTE,
    WIDE,
    Chart,
    Series,
    axis_label,
    bucket_label,
    exact,
    nice_ticks,
    render,
    value_ticks,
)

SVG = "{http://www.w3.org/2000/svg}"
START = datetime(2026, 3, 3, tzinfo=UTC)
HOURS = tuple(START + timedelta(hours=i) for i in range(24))
DAYS = tuple(START + timedelta(days=i) for i in range(30))


def parsed(chart: Chart, size: object = WIDE) -> ET.Element:
    return ET.fromstring(str(render(chart, size)))  # type: ignore[arg-type]


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text")]


def runs_chart(values: list[float], second: list[float] | None = None) -> Chart:
    series = [
        Series("summarize", tuple(values), PALETTE[0], tuple(f"/logs?d=a&i={i}" for i in range(len(values))))
    ]
    if second is not None:
        series.append(Series("greeter", tuple(second), PALETTE[1]))
    return Chart(
        "Runs",
        "count",
        HOURS,
        HOUR,
        tuple(series),
        overlay=Series("errors", tuple(1.0 if v > 3 else 0.0 for v in values), ERROR_COLOR),
        column_hrefs=tuple(f"/logs?i={i}" for i in range(24)),
    )


@pytest.mark.parametrize(
    ("top", "count", "integers", "expected"),
    [
        (7, 5, True, [0, 2, 4, 6, 8]),
        (3, 5, True, [0, 1, 2, 3]),
        (1, 5, True, [0, 1]),
        (0.0034, 5, False, [0, 0.001, 0.002, 0.003, 0.004]),
        (1234, 4, True, [0, 500, 1000, 1500]),
        (100, 5, True, [0, 20, 40, 60, 80, 100]),
        (9.5, 4, False, [0, 2.5, 5, 7.5, 10]),
        (0, 5, True, [0, 1]),
    ],
)
def test_ticks_are_round_and_cover_the_top(
    top: float, count: int, integers: bool, expected: list[float]
) -> None:
    assert nice_ticks(top, count, integers) == expected


def test_latency_ticks_are_round_in_the_unit_shown() -> None:
    assert value_ticks(61_700, 4, "ms") == [0, 30_000, 60_000, 90_000]  # 0, 30 s, 1 min, 1.5 min
    assert value_ticks(150_000, 4, "ms") == [0, 60_000, 120_000, 180_000]
    assert value_ticks(900, 4, "ms") == [0, 250, 500, 750, 1000]
    assert value_ticks(3.5, 4, "count") == [0, 1, 2, 3, 4]


def test_labels_carry_their_units() -> None:
    assert [axis_label(v, "tokens") for v in (0, 500, 1500, 2_000_000)] == ["0", "500", "1.5k", "2M"]
    assert [axis_label(v, "usd") for v in (0, 0.0025, 1.5, 20)] == ["$0", "$0.0025", "$1.5", "$20"]
    assert [axis_label(v, "ms") for v in (0, 250, 1500, 120_000)] == ["0 ms", "250 ms", "1.5 s", "2 min"]
    assert exact(0.0000062, "usd") == "$0.0000062"  # never 6.2e-06
    assert exact(1234.5, "usd") == "$1,234.50"
    assert exact(12480, "tokens") == "12,480 tokens"
    assert exact(None, "ms") == "—"
    assert bucket_label(HOURS[14], HOUR) == "Mar 3, 14:00-15:00 UTC"


def test_stacked_bars_scale_to_the_highest_total_and_link_every_bucket() -> None:
    values = [float(i % 5) for i in range(24)]
    root = parsed(runs_chart(values, [2.0] * 24))
    assert root.get("viewBox") == f"0 0 {WIDE.width} {WIDE.height}"
    assert root.find(f"{SVG}title").text == "Runs"  # type: ignore[union-attr]
    labels = texts(root)
    assert labels[:4] == ["0", "2", "4", "6"]  # top total 4 + 2 = 6
    hits = root.findall(f".//{SVG}a[@class='hit']")
    assert [a.get("href") for a in hits] == [f"/logs?i={i}" for i in range(24)]
    tip = hits[4].findtext(f"{SVG}title") or ""
    assert tip.splitlines() == [
        "Mar 3, 04:00-05:00 UTC",
        "summarize: 4",
        "greeter: 2",
        "total: 6",
        "errors: 1",
    ]
    # a segment of a series with links is its own link, drawn above the bucket's
    marks = root.findall(f".//{SVG}a[@class='mark']")
    assert len(marks) == sum(1 for v in values if v)
    assert marks[0].get("href") == "/logs?d=a&i=1"
    # the tallest stack reaches the top gridline exactly
    gridlines = [float(line.get("y1", 0)) for line in root.iter(f"{SVG}line") if line.get("class") == "axis"]
    tops = [float(r.get("y", 0)) for r in root.iter(f"{SVG}rect") if r.get("fill") in PALETTE]
    for path in root.iter(f"{SVG}path"):  # unlinked segments: one path per series, "M x y h w v h h -w z"
        tops += [float(y) for y in re.findall(r"M[\d.]+ ([\d.]+)", path.get("d", ""))]
    assert min(tops) == pytest.approx(min(gridlines), abs=0.1)
    # the errors overlay is a dashed line
    assert any(
        p.get("stroke") == ERROR_COLOR and p.get("stroke-dasharray") for p in root.iter(f"{SVG}polyline")
    )


def test_time_labels_are_round_and_fit_the_narrow_drawing() -> None:
    chart = runs_chart([1.0] * 24)
    wide = [t for t in texts(parsed(chart)) if ":" in t or "Mar" in t]
    narrow = [t for t in texts(parsed(chart, NARROW)) if ":" in t or "Mar" in t]
    assert wide == ["Mar 3", "04:00", "08:00", "12:00", "16:00", "20:00"]
    assert len(narrow) <= NARROW.x_labels and narrow[0] == "Mar 3"
    daily = Chart("Cost", "usd", DAYS, timedelta(days=1), (Series("cost", (0.01,) * 30, PALETTE[0]),))
    day_labels = [t for t in texts(parsed(daily)) if t.startswith("Mar") or t.startswith("Apr")]
    assert 3 <= len(day_labels) <= WIDE.x_labels


def test_lines_break_at_missing_values_and_escape_labels() -> None:
    chart = Chart(
        "Latency <p95>",
        "ms",
        HOURS[:6],
        HOUR,
        (Series("p95 & more", (100.0, 200.0, None, 300.0, 350.0, None), PALETTE[1]),),
        style="lines",
    )
    markup = str(render(chart))
    root = ET.fromstring(markup)  # escaped: still well-formed
    assert "Latency &lt;p95&gt;" in markup
    lines = [p for p in root.iter(f"{SVG}polyline")]
    assert [len(p.get("points", "").split()) for p in lines] == [2, 2]
    assert texts(root)[-1] != ""  # axis labels drawn
    assert "400 ms" in texts(root)  # 350 rounds up to a 100 ms tick
    assert root.findall(f".//{SVG}g[@class='hit']")  # buckets without a link are still focusable


def test_an_empty_chart_says_so() -> None:
    empty = Chart("Runs", "count", HOURS, HOUR, (Series("a", (0.0,) * 24, PALETTE[0]),))
    root = parsed(empty)
    assert texts(root) == ["No runs in this range"]
    assert root.findall(f".//{SVG}a") == []
    nothing = Chart("Runs", "count", (), HOUR, ())
    assert texts(parsed(nothing, NARROW)) == ["No runs in this range"]
