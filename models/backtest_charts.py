"""Two small inline-SVG charts for the backtest page: lines (calibration, vintage curves)
and grouped horizontal bars (PSI per variable, approval and bad rates).

Inline SVG, no charting library and no CDN: the page is archived with the MLflow run
and opened offline, so it must carry everything it shows. `models/` may not import
`recon/`, whose report has its own (stacked daily bars) chart.
"""

from __future__ import annotations

from html import escape
from typing import Sequence

PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#555555", "#F0E442")


def _axis_ticks(low: float, high: float) -> list[float]:
    return [low + (high - low) * i / 4 for i in range(5)]


def lines(
    series: Sequence[tuple[str, Sequence[tuple[float, float]]]],
    title: str,
    x_label: str,
    y_label: str,
    diagonal: bool = False,
    width: int = 520,
    height: int = 300,
) -> str:
    """One polyline per named series of (x, y) points, on shared linear axes starting at 0.
    `diagonal` draws y = x (perfect calibration)."""
    pad_l, pad_r, pad_t, pad_b = 48, 120, 24, 36
    points = [p for _, pts in series for p in pts]
    if not points:
        return (
            f'<svg class="chart" width="{width}" height="{height}" role="img" '
            f'aria-label="{escape(title)}: no data"></svg>'
        )
    x_hi = max(max(x for x, _ in points), 1e-9)
    y_hi = max(max(y for _, y in points), 1e-9)
    if diagonal:
        x_hi = y_hi = max(x_hi, y_hi)
    pw, ph = width - pad_l - pad_r, height - pad_t - pad_b
    sx = lambda x: pad_l + pw * x / x_hi  # noqa: E731
    sy = lambda y: pad_t + ph - ph * y / y_hi  # noqa: E731
    out = [
        f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{pad_l}" y="14" class="title">{escape(title)}</text>',
    ]
    for t in _axis_ticks(0, y_hi):
        out.append(
            f'<line x1="{pad_l}" x2="{pad_l + pw}" y1="{sy(t):.1f}" y2="{sy(t):.1f}" class="grid"/>'
            f'<text x="{pad_l - 4}" y="{sy(t) + 4:.1f}" text-anchor="end">{t:.3g}</text>'
        )
    whole = all(float(x).is_integer() for x, _ in points)  # months since origination: no 1.75
    for t in range(0, int(x_hi) + 1, max(1, round(x_hi / 6))) if whole else _axis_ticks(0, x_hi):
        out.append(f'<text x="{sx(t):.1f}" y="{pad_t + ph + 14}" text-anchor="middle">{t:.3g}</text>')
    out.append(
        f'<text x="{pad_l + pw / 2:.0f}" y="{height - 4}" text-anchor="middle">{escape(x_label)}</text>'
        f'<text x="10" y="{pad_t + ph / 2:.0f}" transform="rotate(-90 10 {pad_t + ph / 2:.0f})" '
        f'text-anchor="middle">{escape(y_label)}</text>'
    )
    if diagonal:
        out.append(f'<line x1="{sx(0)}" y1="{sy(0)}" x2="{sx(x_hi):.1f}" y2="{sy(y_hi):.1f}" class="ideal"/>')
    for i, (name, pts) in enumerate(series):
        colour = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(
            f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2">'
            f"<title>{escape(name)}</title></polyline>"
        )
        out.extend(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="2.5" fill="{colour}"/>' for x, y in pts)
        out.append(
            f'<rect x="{width - pad_r + 10}" y="{pad_t + 14 * i}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{width - pad_r + 24}" y="{pad_t + 14 * i + 9}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)


def bars(
    labels: Sequence[str],
    groups: Sequence[tuple[str, Sequence[float | None]]],
    title: str,
    marks: Sequence[float] = (),
    width: int = 520,
) -> str:
    """Horizontal bars, one row per label and one bar per group in it; missing values
    leave a gap. `marks` draws vertical reference lines (e.g. PSI 0.1 and 0.25)."""
    pad_l, pad_r, pad_t, row_h = 190, 60, 24, 6 + 10 * max(len(groups), 1)
    height = pad_t + row_h * len(labels) + 24
    values = [v for _, vs in groups for v in vs if v is not None] + list(marks)
    hi = max(max(values, default=0.0), 1e-9)
    pw = width - pad_l - pad_r
    sx = lambda v: pad_l + pw * v / hi  # noqa: E731
    out = [
        f'<svg class="chart" width="{width}" height="{height}" role="img" aria-label="{escape(title)}">',
        f'<text x="{pad_l}" y="14" class="title">{escape(title)}</text>',
    ]
    for r, label in enumerate(labels):
        y0 = pad_t + r * row_h
        out.append(f'<text x="{pad_l - 6}" y="{y0 + row_h / 2 + 4:.1f}" text-anchor="end">{escape(label)}</text>')
        for g, (name, vs) in enumerate(groups):
            v = vs[r]
            if v is None:
                continue
            colour = PALETTE[g % len(PALETTE)]
            out.append(
                f'<rect x="{pad_l}" y="{y0 + 3 + 10 * g}" width="{max(sx(v) - pad_l, 0.5):.1f}" height="9" '
                f'fill="{colour}"><title>{escape(name)} {escape(label)}: {v:.4g}</title></rect>'
                f'<text x="{sx(v) + 4:.1f}" y="{y0 + 11 + 10 * g}" class="value">{v:.3g}</text>'
            )
    bottom = pad_t + row_h * len(labels)
    for m in marks:
        out.append(
            f'<line x1="{sx(m):.1f}" x2="{sx(m):.1f}" y1="{pad_t}" y2="{bottom}" class="mark"/>'
            f'<text x="{sx(m):.1f}" y="{bottom + 14}" text-anchor="middle">{m:g}</text>'
        )
    for g, (name, _) in enumerate(groups):
        out.append(
            f'<rect x="{pad_l + 110 * g}" y="{height - 10}" width="10" height="10" fill="{PALETTE[g % len(PALETTE)]}"/>'
            f'<text x="{pad_l + 110 * g + 14}" y="{height - 1}">{escape(name)}</text>'
        )
    out.append("</svg>")
    return "".join(out)
