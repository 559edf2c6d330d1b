"""Server-side SVG charts for the HTML report: no JavaScript, no CDN, nothing fetched.

Every chart is a ``Markup`` string (safe inside an autoescaped template); every label that comes
from data goes through ``Markup.format``, which escapes it. Values are ``Decimal`` (money, shares)
and floats are used only for geometry.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from markupsafe import Markup

Fmt = Callable[[Decimal], str]
INK, MUTED, GRID = "#1f2933", "#616e7c", "#e4e7eb"
_FONT = "system-ui, -apple-system, 'Segoe UI', Roboto, 'DejaVu Sans', sans-serif"
_STEPS = (Decimal(1), Decimal(2), Decimal("2.5"), Decimal(5), Decimal(10))


@dataclass(frozen=True, slots=True)
class Series:
    """One named, coloured run of values (one value per category or row)."""

    name: str
    color: str
    values: Sequence[Decimal]


@dataclass(frozen=True, slots=True)
class LinePlot:
    """Points of a line chart: numeric x (e.g. epoch seconds), ``Decimal`` y."""

    points: Sequence[tuple[float, Decimal]]
    x_ticks: Sequence[tuple[float, str]]
    markers: Sequence[tuple[float, Decimal, str]] = field(default_factory=tuple)
    reference: tuple[Decimal, str] | None = None


def nice_ticks(top: Decimal, count: int = 5) -> list[Decimal]:
    """Round axis ticks from 0 up to at least ``top`` (steps of 1, 2, 2.5 or 5 x 10^k)."""
    if top <= 0:
        return [Decimal(0), Decimal(1)]
    raw = top / count
    scale = Decimal(10) ** raw.adjusted()
    step = next(m * scale for m in _STEPS if m * scale >= raw)
    ticks = [Decimal(0)]
    while ticks[-1] < top:
        ticks.append(ticks[-1] + step)
    return ticks


def _svg(width: float, height: float, label: str, body: list[Markup]) -> Markup:
    head = Markup(
        '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {:.0f} {:.0f}" role="img" '
        'aria-label="{}" font-family="{}" font-size="12">'
    ).format(width, height, label, _FONT)
    return head + Markup("").join(body) + Markup("</svg>")


def _text(
    x: float, y: float, text: str, *, anchor: str = "middle", fill: str = INK, bold: bool = False
) -> Markup:
    return Markup(
        '<text x="{:.1f}" y="{:.1f}" text-anchor="{}" fill="{}" font-weight="{}">{}</text>'
    ).format(x, y, anchor, fill, 600 if bold else 400, text)


def _rect(x: float, y: float, w: float, h: float, color: str, title: str) -> Markup:
    return Markup(
        '<rect x="{:.1f}" y="{:.1f}" width="{:.1f}" height="{:.1f}" fill="{}">'
        "<title>{}</title></rect>"
    ).format(x, y, max(w, 0.0), max(h, 0.0), color, title)


def _line(x1: float, y1: float, x2: float, y2: float, color: str = GRID, dash: str = "") -> Markup:
    return Markup(
        '<line x1="{:.1f}" y1="{:.1f}" x2="{:.1f}" y2="{:.1f}" stroke="{}" stroke-dasharray="{}"/>'
    ).format(x1, y1, x2, y2, color, dash or "none")


def _legend(series: Sequence[Series], x: float, y: float) -> list[Markup]:
    parts: list[Markup] = []
    for s in series:
        swatch = '<rect x="{:.1f}" y="{:.1f}" width="10" height="10" rx="2" fill="{}"/>'
        parts.append(Markup(swatch).format(x, y - 9, s.color))
        parts.append(_text(x + 14, y, s.name, anchor="start", fill=MUTED))
        x += 30 + 6.5 * len(s.name)
    return parts


def _value_axis(
    ticks: list[Decimal], box: tuple[float, float, float, float], fmt: Fmt, *, vertical: bool
) -> list[Markup]:
    """Grid lines and tick labels: along y for column/line charts, along x for bar charts."""
    left, top, right, bottom = box
    parts: list[Markup] = []
    for tick in ticks:
        share = float(tick / ticks[-1])
        if vertical:
            y = bottom - (bottom - top) * share
            parts += [_line(left, y, right, y), _text(left - 6, y + 4, fmt(tick), anchor="end")]
        else:
            x = left + (right - left) * share
            parts += [_line(x, top, x, bottom), _text(x, bottom + 16, fmt(tick), fill=MUTED)]
    return parts


def _axis_title(x: float, y: float, text: str, *, rotate: bool) -> Markup:
    turn = " rotate(-90)" if rotate else ""
    return Markup(
        '<text transform="translate({:.1f} {:.1f}){}" text-anchor="middle" fill="{}">{}</text>'
    ).format(x, y, turn, MUTED, text)


def column_chart(
    categories: Sequence[str],
    series: Sequence[Series],
    *,
    y_label: str,
    fmt: Fmt,
    title: str,
    stacked: bool = True,
    size: tuple[int, int] = (600, 300),
    value_fmt: Fmt | None = None,
    x_label: str = "",
) -> Markup:
    """Vertical bars per category, stacked (total on top) or side by side.

    ``fmt`` labels the axis ticks, ``value_fmt`` (default ``fmt``) the value above each column.
    """
    width, height = size
    box = (76.0, 36.0, width - 12.0, height - 46.0)
    left, top, right, bottom = box
    n = len(categories)
    totals = [sum((s.values[i] for s in series), Decimal(0)) for i in range(n)]
    peaks = totals if stacked else [max(s.values[i] for s in series) for i in range(n)]
    ticks = nice_ticks(max(peaks, default=Decimal(0)))
    scale = (bottom - top) / float(ticks[-1])
    parts = _value_axis(ticks, box, fmt, vertical=True)
    parts.append(_axis_title(16, (top + bottom) / 2, y_label, rotate=True))
    slot = (right - left) / max(n, 1)
    bar_w = min(slot * 0.7, 72.0)
    every = max(1, -(-n // 12))
    for i, cat in enumerate(categories):
        x0 = left + slot * i + (slot - bar_w) / 2
        parts += _column(
            x0, bottom, bar_w, scale, [(s, s.values[i]) for s in series], cat, fmt, stacked=stacked
        )
        if n <= 24 and peaks[i] > 0:
            label = (value_fmt or fmt)(totals[i] if stacked else peaks[i])
            y = bottom - float(peaks[i]) * scale - 6
            parts.append(_text(x0 + bar_w / 2, y, label, bold=True))
        if i % every == 0:
            parts.append(_text(x0 + bar_w / 2, bottom + 17, cat, fill=MUTED))
    parts.append(_line(left, bottom, right, bottom, MUTED))
    parts.append(_axis_title((left + right) / 2, height - 4, x_label, rotate=False))
    if len(series) > 1:
        parts += _legend(series, left, 18)
    return _svg(width, height, title, parts)


def _column(
    x0: float,
    bottom: float,
    bar_w: float,
    scale: float,
    values: list[tuple[Series, Decimal]],
    cat: str,
    fmt: Fmt,
    *,
    stacked: bool,
) -> list[Markup]:
    parts: list[Markup] = []
    base = bottom
    width = bar_w if stacked else bar_w / len(values)
    for k, (s, value) in enumerate(values):
        h = float(value) * scale
        x = x0 if stacked else x0 + k * width
        y = base - h if stacked else bottom - h
        parts.append(
            _rect(
                x, y, width - (0 if stacked else 2), h, s.color, f"{cat} · {s.name}: {fmt(value)}"
            )
        )
        if stacked:
            base = y
    return parts


def bar_chart(
    rows: Sequence[str],
    series: Sequence[Series],
    *,
    x_label: str,
    fmt: Fmt,
    title: str,
    value_labels: Sequence[Sequence[str]] | None = None,
    label_width: int = 150,
    width: int = 600,
) -> Markup:
    """Horizontal bars, one group per row (one bar per series), labelled at the bar's end."""
    per_bar = 18.0 if len(series) > 1 else 26.0
    group = per_bar * len(series) + 12
    top = 36.0 if len(series) > 1 else 12.0
    height = top + group * len(rows) + 40
    box = (float(label_width), top, width - 170.0, height - 34)
    left, _, right, bottom = box
    ticks = nice_ticks(max((v for s in series for v in s.values), default=Decimal(0)), count=4)
    scale = (right - left) / float(ticks[-1])
    parts = _value_axis(ticks, box, fmt, vertical=False)
    for i, row in enumerate(rows):
        y0 = top + group * i + 6
        parts.append(_text(left - 8, y0 + group / 2 - 2, row, anchor="end"))
        for k, s in enumerate(series):
            y = y0 + k * per_bar
            w = float(s.values[i]) * scale
            parts.append(
                _rect(left, y, w, per_bar - 3, s.color, f"{row} · {s.name}: {fmt(s.values[i])}")
            )
            label = value_labels[k][i] if value_labels else fmt(s.values[i])
            parts.append(_text(left + w + 5, y + per_bar - 7, label, anchor="start", fill=MUTED))
    parts.append(_line(left, top, left, bottom, MUTED))
    parts.append(_axis_title((left + right) / 2, height - 4, x_label, rotate=False))
    if len(series) > 1:
        parts += _legend(series, left, 18)
    return _svg(width, height, title, parts)


def line_chart(
    plot: LinePlot,
    *,
    y_label: str,
    fmt: Fmt,
    title: str,
    color: str = "#3e6bb3",
    size: tuple[int, int] = (600, 300),
    x_label: str = "",
) -> Markup:
    """A line with a light area under it, optional event markers and a dashed reference."""
    width, height = size
    box = (76.0, 24.0, width - 16.0, height - 46.0)
    left, top, right, bottom = box
    ys = [y for _, y in plot.points] + [y for _, y, _ in plot.markers]
    ticks = nice_ticks(max(ys, default=Decimal(0)))
    xs = [x for x, _ in plot.points] or [0.0]
    x_min, x_span = min(xs), (max(xs) - min(xs)) or 1.0

    def at(x: float, y: Decimal) -> tuple[float, float]:
        return (
            left + (right - left) * (x - x_min) / x_span,
            bottom - (bottom - top) * float(y / ticks[-1]),
        )

    parts = _value_axis(ticks, box, fmt, vertical=True)
    parts.append(_axis_title(16, (top + bottom) / 2, y_label, rotate=True))
    parts.append(_axis_title((left + right) / 2, height - 4, x_label, rotate=False))
    for i, (x, label) in enumerate(plot.x_ticks):
        # The outermost labels align inwards so they stay inside the picture.
        anchor = "start" if i == 0 else "end" if i == len(plot.x_ticks) - 1 else "middle"
        parts.append(_text(at(x, Decimal(0))[0], bottom + 17, label, anchor=anchor, fill=MUTED))
    if plot.reference is not None and plot.reference[0] <= ticks[-1]:
        _, ry = at(x_min, plot.reference[0])
        parts += [
            _line(left, ry, right, ry, "#c0392b", "6 4"),
            _text(right - 4, ry - 5, plot.reference[1], anchor="end", fill="#c0392b"),
        ]
    coords = [at(x, y) for x, y in plot.points]
    if coords:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        area = f"{coords[0][0]:.1f},{bottom:.1f} {path} {coords[-1][0]:.1f},{bottom:.1f}"
        parts.append(
            Markup('<polygon points="{}" fill="{}" fill-opacity="0.12"/>').format(area, color)
        )
        parts.append(
            Markup('<polyline points="{}" fill="none" stroke="{}" stroke-width="2.5"/>').format(
                path, color
            )
        )
    for (x, y), (_, value) in zip(coords, plot.points, strict=True):
        parts.append(
            Markup(
                '<circle cx="{:.1f}" cy="{:.1f}" r="3" fill="{}"><title>{}</title></circle>'
            ).format(x, y, color, fmt(value))
        )
    for mx, my, label in plot.markers:
        cx, cy = at(mx, my)
        parts.append(
            Markup(
                '<circle cx="{:.1f}" cy="{:.1f}" r="5" fill="#e8a33d" stroke="#fff">'
                "<title>{}</title></circle>"
            ).format(cx, cy, label)
        )
    parts.append(_line(left, bottom, right, bottom, MUTED))
    return _svg(width, height, title, parts)
