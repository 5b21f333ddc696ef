"""Time-series charts as SVG, drawn on the server: fast, readable without JavaScript, and
testable by parsing the markup. Colours and sizes are SVG attributes (the console's CSP forbids
`style`). Each chart is drawn twice, wide and narrow, and the page's CSS shows the one that fits,
so that text stays the same size on a phone as on a desktop (a viewBox scales its text too).

Every bucket is a link (`<a class="hit">`) to the runs behind it, with its exact values in a
`<title>` (a native tooltip, which charts.js turns into a nicer one).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from markupsafe import Markup, escape

Unit = Literal["count", "tokens", "usd", "ms"]
Style = Literal["bars", "lines"]
Position = Callable[[int], float]  # bucket index -> x
Scale = Callable[[float], float]  # value -> y

# Tableau 10 without its red, which means errors here; distinguishable, also in greyscale order.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#76b7b2", "#edc948", "#9c755f", "#ff9da7", "#79706e")
ERROR_COLOR = "#c62828"
GRID_COLOR = "#e3e6eb"
AXIS_COLOR = "#9aa3ae"
TEXT_COLOR = "#5f6b7a"
FONT_SIZE = 12
HOUR = timedelta(hours=1)
LINKED_MARKS_MAX = 62  # buckets up to which each bar segment is a link of its own
MIN_HIT_WIDTH = 2.0  # narrower buckets get no target (a month of hours on a phone): use days


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


@dataclass(frozen=True)
class Size:
    width: int
    height: int
    x_labels: int  # at most this many time labels
    y_ticks: int  # about this many value ticks


WIDE = Size(560, 230, 7, 5)
NARROW = Size(340, 210, 4, 4)


@dataclass(frozen=True)
class Series:
    """One line, or one layer of stacked bars: a value per bucket (None: no data there)."""

    label: str
    values: tuple[float | None, ...]
    color: str
    hrefs: tuple[str | None, ...] = ()  # per bucket: the runs behind that value


@dataclass(frozen=True)
class Chart:
    title: str
    unit: Unit
    starts: tuple[datetime, ...]  # each bucket's start (UTC)
    bucket: timedelta
    series: tuple[Series, ...]
    style: Style = "bars"  # bars are stacked, in series order from the bottom
    overlay: Series | None = None  # a line drawn over the bars (errors over runs)
    column_hrefs: tuple[str | None, ...] = ()  # per bucket: every run of that bucket
    empty_text: str = "No runs in this range"  # what a chart without a value says

    @property
    def empty(self) -> bool:
        every = [*self.series, *([self.overlay] if self.overlay else [])]
        return not any(v for s in every for v in s.values)


# --- numbers -------------------------------------------------------------------------------


def nice_ticks(top: float, count: int = 5, integers: bool = False) -> list[float]:
    """Ticks from 0 to at least `top`, about `count` of them, at 1, 2, 2.5 or 5 times a power of
    ten (whole numbers only when `integers`)."""
    if not top > 0 or not math.isfinite(top):
        return [0.0, 1.0]
    raw = top / max(count, 1)
    magnitude = 10.0 ** math.floor(math.log10(raw))
    step = 10 * magnitude
    for multiple in (1, 2, 2.5, 5, 10):
        candidate = multiple * magnitude
        if integers and (candidate < 1 or candidate != int(candidate)):
            continue
        if candidate * count >= top * (1 - 1e-9):
            step = candidate
            break
    if integers:
        step = max(1.0, step)
    steps = math.ceil(top / step - 1e-9)
    return [_clean(i * step) for i in range(steps + 1)]


def value_ticks(top: float, count: int, unit: Unit) -> list[float]:
    """Ticks for a unit: whole counts, and latencies round in the unit they are shown in
    (0, 20 s, 40 s ... rather than 0, 20,000 ms; 0, 1 min, 2 min rather than 0, 1.33 min)."""
    if unit == "ms" and top >= 60_000:
        return [_clean(t * 60_000) for t in nice_ticks(top / 60_000, count)]
    return nice_ticks(top, count, integers=unit in ("count", "tokens"))


def _clean(value: float) -> float:
    """Drop float noise (0.30000000000000004 → 0.3)."""
    return float(f"{value:.12g}")


def _plain(value: float, significant: int) -> str:
    """A number without exponent, to `significant` digits, trailing zeros dropped."""
    if value == 0:
        return "0"
    decimals = max(0, significant - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:,.{decimals}f}"
    return text.rstrip("0").rstrip(".") if "." in text else text


def _short(value: float) -> str:
    """1.2k, 3.4M, 12."""
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return _plain(value / size, 3).replace(",", "") + suffix
    return _plain(value, 3)


def axis_label(value: float, unit: Unit) -> str:
    """A tick's label: short, with its unit."""
    if unit == "usd":
        return "$" + (_short(value) if value >= 1000 else _plain(value, 3))
    if unit == "ms":
        if value >= 60_000:
            return _plain(value / 60_000, 3) + " min"
        return _plain(value / 1000, 3) + " s" if value >= 1000 else _plain(value, 3) + " ms"
    return _short(value)


def exact(value: float | None, unit: Unit) -> str:
    """A value as a tooltip or a card shows it: exact enough to compare."""
    if value is None:
        return "—"
    if unit == "usd":
        return "$" + (f"{value:,.2f}" if value >= 1 else _plain(value, 3))
    if unit == "ms":
        return f"{value:,.0f} ms" if value < 10_000 else f"{value / 1000:,.1f} s"
    if unit == "tokens":
        return f"{value:,.0f} tokens"
    return f"{value:,.0f}"


# --- time ------------------------------------------------------------------------------------


def bucket_label(start: datetime, bucket: timedelta) -> str:
    """What a bucket covers, for a tooltip: "Mar 3, 14:00-15:00 UTC" or "Mon Mar 3"."""
    if bucket <= HOUR:
        end = start + bucket
        return f"{start:%b} {start.day}, {start:%H:%M}-{end:%H:%M} UTC"
    if bucket == timedelta(days=1):
        return f"{start:%a %b} {start.day}"
    return f"{start:%b} {start.day} - {(start + bucket - timedelta(seconds=1)):%b %d}"


def _tick_text(start: datetime, bucket: timedelta, first: bool) -> str:
    if bucket < timedelta(days=1) and (start.hour or start.minute) and not first:
        return f"{start:%H:%M}"
    if bucket < timedelta(days=1) and first and (start.hour or start.minute):
        return f"{start:%b} {start.day} {start:%H:%M}"
    return f"{start:%b} {start.day}"


def _label_every(starts: Sequence[datetime], bucket: timedelta, most: int) -> list[int]:
    """Indexes of the buckets that get a time label: at a round step (3, 6, 12 hours; 2, 7
    days...), aligned to round times, at most `most` of them."""
    n = len(starts)
    if n == 0:
        return []
    needed = max(1, math.ceil(n / max(most, 1)))
    if bucket <= HOUR:
        hours = next((h for h in (1, 2, 3, 4, 6, 12, 24, 48, 72, 168) if h >= needed), needed)
        picked = [i for i, t in enumerate(starts) if (t.hour + 24 * t.toordinal()) % hours == 0]
    else:
        days = next((d for d in (1, 2, 3, 7, 14, 28) if d >= needed), needed)
        if days == 7:
            picked = [i for i, t in enumerate(starts) if t.weekday() == 0]
        else:
            picked = [i for i, t in enumerate(starts) if t.toordinal() % days == 0]
    while len(picked) > most:  # a step forced past the list (very long ranges)
        picked = picked[::2]
    return picked or [0]


# --- drawing ---------------------------------------------------------------------------------


def _n(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


def _tip(chart: Chart, index: int) -> str:
    """The exact values of one bucket, one per line (series without a value there left out)."""
    lines = [bucket_label(chart.starts[index], chart.bucket)]
    total = 0.0
    for series in chart.series:
        value = series.values[index] if index < len(series.values) else None
        if value:
            total += value
            lines.append(f"{series.label}: {exact(value, chart.unit)}")
    if chart.style == "bars" and len(lines) > 2:
        lines.append(f"total: {exact(total, chart.unit)}")
    if chart.overlay is not None:
        value = chart.overlay.values[index] if index < len(chart.overlay.values) else None
        lines.append(f"{chart.overlay.label}: {exact(value, chart.unit)}")
    return "\n".join(lines if len(lines) > 1 else [*lines, "no runs"])


def render(chart: Chart, size: Size = WIDE) -> Markup:
    """The chart as one `<svg>` at `size` (a viewBox of that size, so it scales down)."""
    width, height = size.width, size.height
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" class="chart-svg" font-family="system-ui, sans-serif" '
        f'font-size="{FONT_SIZE}"><title>{escape(chart.title)}</title>'
    )
    if chart.empty:
        return Markup(
            head + f'<rect x="0.5" y="0.5" width="{width - 1}" height="{height - 1}" rx="6" fill="none" '
            f'stroke="{GRID_COLOR}"/><text x="{width / 2}" y="{height / 2}" text-anchor="middle" '
            f'fill="{TEXT_COLOR}" class="chart-empty">{escape(chart.empty_text)}</text></svg>'
        )
    n = len(chart.starts)
    tops: list[float]
    if chart.style == "bars":
        tops = [sum(s.values[i] or 0 for s in chart.series if i < len(s.values)) for i in range(n)]
    else:
        tops = [
            max((s.values[i] or 0 for s in chart.series if i < len(s.values)), default=0.0) for i in range(n)
        ]
    if chart.overlay is not None:
        tops += [v or 0 for v in chart.overlay.values]
    ticks = value_ticks(max(tops, default=0), size.y_ticks, chart.unit)
    ymax = ticks[-1]
    labels = [axis_label(t, chart.unit) for t in ticks]
    left = 10 + FONT_SIZE * 0.62 * max(len(label) for label in labels)
    right, top, bottom = 10, 10, 26
    plot_w, plot_h = width - left - right, height - top - bottom
    slot = plot_w / max(n, 1)

    def x_of(index: int) -> float:
        return left + slot * (index + 0.5)

    def y_of(value: float) -> float:
        return top + plot_h * (1 - value / ymax)

    parts = [head]
    for tick, label in zip(ticks, labels, strict=True):  # grid and value labels
        y = y_of(tick)
        parts.append(
            f'<line x1="{_n(left)}" x2="{_n(width - right)}" y1="{_n(y)}" y2="{_n(y)}" '
            f'stroke="{AXIS_COLOR if tick == 0 else GRID_COLOR}" class="axis"/>'
            f'<text x="{_n(left - 6)}" y="{_n(y + 4)}" text-anchor="end" fill="{TEXT_COLOR}">'
            f"{escape(label)}</text>"
        )
    for i in _label_every(chart.starts, chart.bucket, size.x_labels):  # time labels
        x = x_of(i)
        anchor = "start" if x - left < 30 else "end" if width - right - x < 30 else "middle"
        parts.append(
            f'<line x1="{_n(x)}" x2="{_n(x)}" y1="{_n(top + plot_h)}" y2="{_n(top + plot_h + 4)}" '
            f'stroke="{AXIS_COLOR}"/><text x="{_n(x)}" y="{_n(height - 8)}" text-anchor="{anchor}" '
            f'fill="{TEXT_COLOR}">{escape(_tick_text(chart.starts[i], chart.bucket, i == 0))}</text>'
        )
    if slot >= MIN_HIT_WIDTH:  # hit areas first, so that marks drawn later stay clickable above them
        parts.extend(_hit(chart, i, left + slot * i, top, slot, plot_h) for i in range(n))
    if chart.style == "bars":
        parts.extend(_bars(chart, x_of, y_of, slot))
    else:
        parts.extend(_line(series, x_of, y_of, n) for series in chart.series)
    if chart.overlay is not None:
        parts.append(_line(chart.overlay, x_of, y_of, n, dashed=True))
    parts.append("</svg>")
    return Markup("".join(parts))


def _hit(chart: Chart, index: int, x: float, top: float, width: float, height: float) -> str:
    """A bucket's target: its runs (a link, or focusable without one) and its exact values."""
    href = chart.column_hrefs[index] if index < len(chart.column_hrefs) else None
    inner = (
        f'<rect x="{_n(x)}" y="{_n(top)}" width="{_n(width)}" height="{_n(height)}" fill="#000" '
        f'fill-opacity="0"/><title>{escape(_tip(chart, index))}</title>'
    )
    if href:
        return f'<a href="{escape(href)}" class="hit" data-col="{index}">{inner}</a>'
    return f'<g class="hit" data-col="{index}" tabindex="0">{inner}</g>'


def _bars(chart: Chart, x_of: Position, y_of: Scale, slot: float) -> list[str]:
    """Stacked bars. With few buckets each segment links to its own group's runs (drawn above
    the bucket's link); with many, a segment would be too thin to aim at, and each series is
    one `<path>`, which keeps a month of hours small."""
    width = max(1.0, slot * 0.72)
    linked = len(chart.starts) <= LINKED_MARKS_MAX
    out = []
    paths: dict[int, list[str]] = {}
    for i in range(len(chart.starts)):
        base = 0.0
        for number, series in enumerate(chart.series):
            value = series.values[i] if i < len(series.values) else None
            if not value:
                continue
            y0, y1 = y_of(base), y_of(base + value)
            base += value
            x, tall = x_of(i) - width / 2, max(y0 - y1, 0.8)
            href = series.hrefs[i] if linked and i < len(series.hrefs) else None
            if href:
                when = bucket_label(chart.starts[i], chart.bucket)
                title = escape(f"{when}\n{series.label}: {exact(value, chart.unit)}")
                rect = (
                    f'x="{_n(x)}" y="{_n(y1)}" width="{_n(width)}" height="{_n(tall)}" fill="{series.color}"'
                )
                out.append(
                    f'<a href="{escape(href)}" class="mark" data-col="{i}">'
                    f"<rect {rect}/><title>{title}</title></a>"
                )
            else:
                paths.setdefault(number, []).append(f"M{_n(x)} {_n(y1)}h{_n(width)}v{_n(tall)}h-{_n(width)}z")
    for number, shapes in paths.items():
        out.append(f'<path d="{"".join(shapes)}" fill="{chart.series[number].color}" pointer-events="none"/>')
    return out


def _line(series: Series, x_of: Position, y_of: Scale, n: int, dashed: bool = False) -> str:
    """A polyline per run of known values (a None breaks the line), and a dot per point when
    there are few enough to see."""
    runs: list[list[str]] = [[]]
    dots = []
    for i in range(n):
        value = series.values[i] if i < len(series.values) else None
        if value is None:
            runs.append([])
            continue
        x, y = _n(x_of(i)), _n(y_of(value))
        runs[-1].append(f"{x},{y}")
        if n <= 48 or (dashed and value):
            dots.append(f'<circle cx="{x}" cy="{y}" r="2.5" fill="{series.color}"/>')
    dash = ' stroke-dasharray="5 3"' if dashed else ""
    lines = [
        f'<polyline points="{" ".join(run)}" fill="none" stroke="{series.color}" stroke-width="2"'
        f' stroke-linejoin="round"{dash}/>'
        if len(run) > 1
        else ""
        for run in runs
        if run
    ]
    # a line is not a target: the bucket under it is
    return f'<g class="series-line" pointer-events="none">{"".join(lines)}{"".join(dots)}</g>'


def render_both(chart: Chart) -> Markup:
    """The wide and the narrow drawing; usage.css shows the one that fits the screen."""
    wide, narrow = render(chart, WIDE), render(chart, NARROW)
    return Markup(f'<div class="chart-wide">{wide}</div><div class="chart-narrow">{narrow}</div>')
