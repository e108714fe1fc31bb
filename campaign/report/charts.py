"""Charts as SVG text, drawn on the server (leather): no script, no stylesheet, no request.

Contract: each function takes plain numbers and labels and returns one ``<svg>`` element
as text: a ``viewBox`` (it scales to the width of its container), ``role="img"`` with a
``<title>`` naming what it shows (the pages put the same numbers in a table beside it),
colours and fonts as presentation attributes only, so it passes a Content-Security-Policy
without ``'unsafe-inline'`` and prints through WeasyPrint. Labels are escaped by
ElementTree. An empty chart (nothing to draw) is None: the page says so in words.

This module is the only home of leather (small, pure Python, no dependencies; chosen
over pygal, whose SVG carries an inline script and a stylesheet, and matplotlib, which
is large: docs/ARCHITECTURE.md, "The organisers' area").
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import leather

FONT = "PT Sans, system-ui, sans-serif"
COLOURS = {
    "sent": "#1f4e8c",
    "delivered": "#2e7d32",
    "bounced": "#a1161b",
    "read": "#6a3d9a",
    "replied": "#b35100",
}
BAR = "#1f4e8c"
PAD = 24

# leather is styled through its theme module (documented as the way to configure it).
leather.theme.background_color = "#ffffff"
leather.theme.title_font_family = FONT
leather.theme.legend_font_family = FONT
leather.theme.axis_title_font_family = FONT
leather.theme.tick_font_family = FONT
leather.theme.legend_color = "#1b1b1f"
leather.theme.label_color = "#4a4a55"
leather.theme.tick_color = "#e4e4ea"
leather.theme.zero_color = "#6b6b78"
leather.theme.tick_font_size = 13
leather.theme.legend_font_size = 14
leather.theme.margin = 0.03


def _svg(chart: leather.Chart, title: str, ident: str, width: int, height: int) -> str:
    group = chart.to_svg_group(width, height)
    root = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "viewBox": f"0 0 {width + PAD} {height}",  # room for the last tick label
            "width": "100%",
            "role": "img",
            "aria-labelledby": f"{ident}-title",
            "class": "chart",
            "focusable": "false",
        },
    )
    label = ET.SubElement(root, "title", {"id": f"{ident}-title"})
    label.text = title
    ET.SubElement(
        root, "rect", {"x": str(width), "y": "0", "width": str(PAD), "height": str(height), "fill": "#ffffff"}
    )
    root.append(group)
    return ET.tostring(root, encoding="unicode")


COLUMN_DAYS = 14
"""Up to this many days the per-day chart draws columns side by side (a line over one or two
days is a dot or a stroke, and equal counts hide each other); beyond it, lines."""

LABEL_DAYS = 3
"""Up to this many days each column carries its number."""


class _Beside(leather.Columns):
    """leather's columns, drawn in slot ``slot`` of ``slots`` within each category, so the
    series of one day stand side by side instead of on top of each other; with ``labels``,
    each column's number above it."""

    def __init__(self, fill_color: str, slot: int, slots: int, *, labels: bool) -> None:
        super().__init__(fill_color)
        self._slot, self._slots, self._labels = slot, slots, labels

    def to_svg(self, width: Any, height: Any, x_scale: Any, y_scale: Any, series: Any, palette: Any) -> ET.Element:
        group = ET.Element("g", {"class": "series columns"})
        zero = float(y_scale.project(0, height, 0))
        for d in series.data():
            left, right = (float(v) for v in x_scale.project_interval(d.x, 0, width))
            inner = (right - left) * 0.8
            step = min(inner / self._slots, 90.0)
            start = left + ((right - left) - step * self._slots) / 2 + self._slot * step
            top = float(y_scale.project(d.y, height, 0))
            ET.SubElement(group, "rect", {"x": f"{start + step * 0.08:.1f}", "y": f"{top:.1f}",
                                          "width": f"{step * 0.84:.1f}", "height": f"{max(zero - top, 0):.1f}",
                                          "fill": str(self._fill_color)})  # fmt: skip
            if self._labels:
                label = ET.SubElement(group, "text", {"x": f"{start + step / 2:.1f}", "y": f"{top - 6:.1f}",
                                                      "text-anchor": "middle", "fill": leather.theme.legend_color,
                                                      "font-family": FONT, "font-size": "14"})  # fmt: skip
                label.text = f"{d.y:,}"
        return group


def timeline(
    days: Sequence[tuple[date, dict[str, int]]],
    names: dict[str, str],
    *,
    title: str,
    ident: str = "timeline",
    width: int = 880,
    height: int = 320,
) -> str | None:
    """Counts per kind (``names``: kind → legend label, in order) over days: columns side by
    side for up to :data:`COLUMN_DAYS` days, lines beyond; None when empty."""
    if not days or not any(n for _, per in days for n in per.values()):
        return None
    top = max(max(per.get(kind, 0) for kind in names) for _, per in days)
    chart = leather.Chart()
    if len(days) <= COLUMN_DAYS:
        labels = [d.strftime("%m-%d") if len(days) > 1 else d.isoformat() for d, _ in days]
        chart.set_x_scale(leather.Ordinal(labels))
        chart.add_y_scale(0, max(top, 1) * (1.1 if len(days) <= LABEL_DAYS else 1))
        for slot, (kind, label) in enumerate(names.items()):
            shape = _Beside(COLOURS.get(kind, BAR), slot, len(names), labels=len(days) <= LABEL_DAYS)
            points = [(text, per.get(kind, 0)) for text, (_, per) in zip(labels, days, strict=True)]
            chart.add_series(leather.Series(points, name=label), shape)
        return _svg(chart, title, ident, width, height)
    # leather's time ticker wants datetimes (it subtracts datetime.min)
    moments = [(datetime(d.year, d.month, d.day), per) for d, per in days]
    first, last = moments[0][0], moments[-1][0]
    chart.add_x_scale(first, last)
    chart.add_y_scale(0, max(top, 1))
    chart.add_x_axis(tick_formatter=lambda value, index, count: value.strftime("%m-%d"))
    for kind, label in names.items():
        line = [(day, per.get(kind, 0)) for day, per in moments]
        chart.add_line(line, name=label, stroke_color=COLOURS.get(kind, BAR), width=2)
    return _svg(chart, title, ident, width, height)


def bars(
    items: Sequence[tuple[str, int]], *, title: str, ident: str, width: int = 440, height: int | None = None
) -> str | None:
    """Horizontal bars, one per label, in the order given; None when every value is 0."""
    if not items or not any(n for _, n in items):
        return None
    chart = leather.Chart()
    chart.add_bars([(n, label) for label, n in reversed(items)], fill_color=BAR)
    return _svg(chart, title, ident, width, height or 60 + 30 * len(items))


def columns(
    items: Sequence[tuple[str, int]], *, title: str, ident: str, width: int = 880, height: int = 280
) -> str | None:
    """Vertical columns, one per label (e.g. weeks); None when there is nothing to draw."""
    if not items or not any(n for _, n in items):
        return None
    chart = leather.Chart()
    chart.add_columns(list(items), fill_color=BAR)
    return _svg(chart, title, ident, width, height)
