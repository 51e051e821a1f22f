"""A small server-rendered SVG bar chart (no script, no CDN): one bar per label, the value in each
bar's ``<title>`` for hover and screen readers, and the whole described by ``aria-label``."""

from __future__ import annotations

import math

from markupsafe import Markup, escape

WIDTH, HEIGHT = 720, 220
LEFT, BOTTOM, TOP = 56, 36, 12


def _nice(value: float) -> float:
    """A round axis top at or above ``value``."""
    if value <= 0:
        return 1.0
    step = 10.0 ** math.floor(math.log10(value))
    for factor in (1.0, 2.0, 2.5, 5.0, 10.0):
        if value <= step * factor:
            return step * factor
    return value


def bar_chart(points: list[tuple[str, float]], *, title: str, unit: str = "") -> Markup:
    """``points`` as (label, value) bars, left to right."""
    top = _nice(max((v for _, v in points), default=0.0))
    inner_w, inner_h = WIDTH - LEFT - 8, HEIGHT - BOTTOM - TOP
    slot = inner_w / max(len(points), 1)
    bar = max(2.0, slot * 0.7)
    parts = [
        f'<svg class="chart" role="img" aria-label="{escape(title)}" viewBox="0 0 {WIDTH} {HEIGHT}" '
        f'width="100%" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{escape(title)}</title>",
    ]
    for i in range(5):
        value = top * i / 4
        y = TOP + inner_h - inner_h * i / 4
        parts.append(f'<line x1="{LEFT}" x2="{WIDTH - 8}" y1="{y:.1f}" y2="{y:.1f}" stroke="#d0d4dc"/>')
        parts.append(
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{escape(_fmt(value, unit))}</text>'
        )
    every = max(1, len(points) // 12)
    for i, (label, value) in enumerate(points):
        h = inner_h * value / top
        x = LEFT + i * slot + (slot - bar) / 2
        y = TOP + inner_h - h
        parts.append(
            f'<rect x="{x:.1f}" y="{y:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="#0b4fa8">'
            f"<title>{escape(label)}: {escape(_fmt(value, unit))}</title></rect>"
        )
        if i % every == 0:
            parts.append(
                f'<text x="{x + bar / 2:.1f}" y="{HEIGHT - BOTTOM + 16}" text-anchor="middle">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def _fmt(value: float, unit: str, *, fine: bool = True) -> str:
    if unit == "$":
        return f"${value:,.2f}"
    return f"{value:,.2f}{unit}" if fine and value != int(value) else f"{value:,.0f}{unit}"
