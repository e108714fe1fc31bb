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
from datetime import date, datetime, timedelta

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


def timeline(
    days: Sequence[tuple[date, dict[str, int]]],
    names: dict[str, str],
    *,
    title: str,
    ident: str = "timeline",
    width: int = 880,
    height: int = 320,
) -> str | None:
    """Lines per kind (``names``: kind → legend label, in order) over days; None when empty."""
    if not days or not any(n for _, per in days for n in per.values()):
        return None
    # leather's time ticker wants datetimes (it subtracts datetime.min)
    moments = [(datetime(d.year, d.month, d.day), per) for d, per in days]
    first, last = moments[0][0], moments[-1][0]
    if first == last:
        first, last = first - timedelta(days=1), last + timedelta(days=1)
    top = max(max(per.get(kind, 0) for kind in names) for _, per in moments)
    chart = leather.Chart()
    chart.add_x_scale(first, last)
    chart.add_y_scale(0, max(top, 1))
    span = (last - first).days
    ticks = [first + timedelta(days=n) for n in range(span + 1)] if span <= 10 else None
    chart.add_x_axis(ticks=ticks, tick_formatter=lambda value, index, count: value.strftime("%m-%d"))
    for kind, label in names.items():
        points = [(day, per.get(kind, 0)) for day, per in moments]
        if len(points) == 1:
            chart.add_dots(points, name=label, fill_color=COLOURS.get(kind, BAR), radius=5)
        else:
            chart.add_line(points, name=label, stroke_color=COLOURS.get(kind, BAR), width=2)
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
