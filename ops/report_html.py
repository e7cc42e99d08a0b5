"""``pulse report --html``: the report of :mod:`ops.report` as one self-contained HTML page.

No script, stylesheet, font or image is fetched: the charts are inline SVG drawn here, so the page
opens the same on a machine without network. Each chart is a ``<figure class="chart"
data-chart="NAME">`` whose marks (``rect``/``path``/``circle`` with ``class="mark"``) carry the data;
an empty series draws no mark but a ``<p class="no-data">no data</p>`` note instead.
"""

from __future__ import annotations

from html import escape
from typing import Any

from ops.report import SECTIONS, TIERS, _fmt

WIDTH, HEIGHT = 760, 260
LEFT, RIGHT, TOP, BOTTOM = 48, 16, 16, 36
TIER_COLOURS = {"low": "#4caf50", "medium": "#ffb300", "high": "#f4511e", "churned": "#6d4c41"}

CSS = """
body { font-family: system-ui, sans-serif; margin: 24px; color: #222; background: #fafafa; }
h1 { font-size: 22px; margin: 0 0 4px; } .period { color: #666; margin: 0 0 20px; }
.kpis { display: grid; grid-template-columns: repeat(auto-fill, minmax(300px, 1fr)); gap: 12px; }
.kpis section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 8px 12px; }
.kpis h2 { font-size: 15px; margin: 4px 0 6px; } .kpis table { width: 100%; border-collapse: collapse; }
.kpis td { padding: 2px 0; font-size: 13px; } .kpis td.v { text-align: right; font-variant-numeric: tabular-nums; }
figure.chart { background: #fff; border: 1px solid #ddd; border-radius: 6px; margin: 16px 0; padding: 8px 12px; }
figcaption { font-weight: 600; margin-bottom: 4px; } svg text { font-size: 11px; fill: #444; }
.axis { stroke: #999; stroke-width: 1; } .no-data { color: #b00020; font-weight: 600; }
"""


def _no_data() -> str:
    return '<p class="no-data">no data</p>'


def _figure(name: str, title: str, body: str) -> str:
    return (f'<figure class="chart" data-chart="{name}"><figcaption>{escape(title)}</figcaption>'
            f"{body}</figure>")  # fmt: skip


def _svg(inner: str, height: int = HEIGHT) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" role="img">{inner}</svg>')  # fmt: skip


def _axes(low: float, high: float, height: int = HEIGHT) -> str:
    """The y axis with three labelled ticks and the x axis line."""
    bottom = height - BOTTOM
    out = [f'<line class="axis" x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{bottom}"/>',
           f'<line class="axis" x1="{LEFT}" y1="{bottom}" x2="{WIDTH - RIGHT}" y2="{bottom}"/>']  # fmt: skip
    for share in (0.0, 0.5, 1.0):
        value = low + (high - low) * share
        y = bottom - (bottom - TOP) * share
        out.append(f'<text x="{LEFT - 4}" y="{y + 4:.1f}" text-anchor="end">{value:,.0f}</text>')
    return "".join(out)


def _line_chart(points: list[tuple[str, float]], low: float | None = None, height: int = HEIGHT) -> str:
    """A line with a dot per point; x labels on the first, middle and last day."""
    values = [value for _, value in points]
    low = min(values + [0.0]) if low is None else low
    high = max(values) if max(values) > low else low + 1
    bottom, span = height - BOTTOM, WIDTH - LEFT - RIGHT
    step = span / max(len(points) - 1, 1)

    def xy(i: int, value: float) -> tuple[float, float]:
        x = LEFT + i * step if len(points) > 1 else LEFT + span / 2
        return x, bottom - (value - low) / (high - low) * (bottom - TOP)

    coords = [xy(i, value) for i, (_, value) in enumerate(points)]
    path = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in coords)
    out = [_axes(low, high, height), f'<path class="mark" d="{path}" fill="none" stroke="#1e88e5" stroke-width="2"/>']
    for (label, value), (x, y) in zip(points, coords, strict=True):
        out.append(f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="#1e88e5">'
                   f"<title>{escape(label)}: {value:,.2f}</title></circle>")  # fmt: skip
    for i in sorted({0, len(points) // 2, len(points) - 1}):
        anchor = "start" if i == 0 and len(points) > 1 else "end" if i == len(points) - 1 and i else "middle"
        out.append(f'<text x="{coords[i][0]:.1f}" y="{bottom + 16}" text-anchor="{anchor}">'
                   f"{escape(points[i][0])}</text>")
    if low < 0 < high:
        y0 = bottom - (0 - low) / (high - low) * (bottom - TOP)
        out.append(f'<line class="axis" x1="{LEFT}" y1="{y0:.1f}" x2="{WIDTH - RIGHT}" y2="{y0:.1f}" '
                   'stroke-dasharray="4"/>')
    return _svg("".join(out), height)


def _bar_chart(bars: list[tuple[str, float, str]], height: int = HEIGHT) -> str:
    """Vertical bars (label, value, colour), the value above each bar and the label below."""
    high = max([value for _, value, _ in bars] + [1.0])
    bottom, span = height - BOTTOM, WIDTH - LEFT - RIGHT
    slot = span / len(bars)
    out = [_axes(0, high, height)]
    for i, (label, value, colour) in enumerate(bars):
        bar_height = value / high * (bottom - TOP)
        x = LEFT + i * slot + slot * 0.15
        out.append(f'<rect class="mark" x="{x:.1f}" y="{bottom - bar_height:.1f}" width="{slot * 0.7:.1f}" '
                   f'height="{bar_height:.1f}" fill="{colour}"><title>{escape(label)}: {value:,.0f}</title></rect>')
        out.append(f'<text x="{x + slot * 0.35:.1f}" y="{bottom - bar_height - 4:.1f}" text-anchor="middle">'
                   f"{value:,.0f}</text>")
        out.append(f'<text x="{x + slot * 0.35:.1f}" y="{bottom + 16}" text-anchor="middle">{escape(label)}</text>')
    return _svg("".join(out), height)


def _heat_colour(pct: float) -> str:
    """White (0 %) to dark blue (100 %)."""
    share = max(0.0, min(pct, 100.0)) / 100
    red, green, blue = (round(255 - (255 - c) * share) for c in (21, 101, 192))
    return f"rgb({red},{green},{blue})"


def _heat_map(cells: list[dict[str, Any]]) -> str:
    """Cohorts (rows) by weeks since signup (columns), each cell coloured by retention and labelled."""
    cohorts = sorted({cell["cohort"] for cell in cells})
    periods = max(cell["period"] for cell in cells) + 1
    label_w, cell_w, cell_h, head = 150, min(60.0, (WIDTH - 150 - RIGHT) / periods), 24, 22
    height = head + cell_h * len(cohorts) + 8
    users = {cell["cohort"]: cell["users"] for cell in cells}
    out = [f'<text x="{label_w + cell_w * p + cell_w / 2:.1f}" y="14" text-anchor="middle">week {p}</text>'
           for p in range(periods)]  # fmt: skip
    for row, cohort in enumerate(cohorts):
        y = head + row * cell_h
        out.append(f'<text x="4" y="{y + 16}">{escape(cohort)} ({users[cohort]})</text>')
    for cell in cells:
        x, y = label_w + cell["period"] * cell_w, head + cohorts.index(cell["cohort"]) * cell_h
        ink = "#fff" if cell["pct"] > 55 else "#222"
        out.append(f'<rect class="mark" x="{x:.1f}" y="{y}" width="{cell_w - 2:.1f}" height="{cell_h - 2}" '
                   f'fill="{_heat_colour(cell["pct"])}"><title>{escape(cell["cohort"])} week {cell["period"]}: '
                   f'{cell["pct"]:.1f} %</title></rect>'
                   f'<text x="{x + cell_w / 2 - 1:.1f}" y="{y + 15}" text-anchor="middle" style="fill:{ink}">'
                   f'{cell["pct"]:.0f}%</text>')  # fmt: skip
    return _svg("".join(out), height)


def _daily_actives(report: dict[str, Any]) -> str:
    series = report["charts"]["daily_actives"]
    body = _line_chart([(point["day"], point["dau"]) for point in series]) if series else _no_data()
    return _figure("daily_actives", "Daily active users", body)


def _nps_trend(report: dict[str, Any]) -> str:
    series = report["charts"]["nps_trend"]
    body = _line_chart([(point["day"], point["nps"]) for point in series], low=-100) if series else _no_data()
    return _figure("nps_trend", "NPS by day (days with answers; -100 to 100)", body)


def _funnels(report: dict[str, Any]) -> str:
    parts = []
    for funnel in report["charts"]["funnels"]:
        bars = [(step["step"], step["users"], "#5e35b1") for step in funnel["steps"]]
        parts.append(f"<h3>{escape(funnel['funnel'])}</h3>{_bar_chart(bars)}")
    return _figure("funnels", "Funnels: users per step (attempts entered in the period)",
                   "".join(parts) if parts else _no_data())  # fmt: skip


def _retention(report: dict[str, Any]) -> str:
    cells = report["charts"]["retention_cohorts"]
    return _figure("retention_cohorts", "Weekly retention by signup cohort (% of the cohort active)",
                   _heat_map(cells) if cells else _no_data())  # fmt: skip


def _churn_tiers(report: dict[str, Any]) -> str:
    tiers = report["charts"]["churn_tiers"]
    bars = [(tier["tier"], tier["users"], TIER_COLOURS.get(tier["tier"], "#888")) for tier in tiers]
    body = _bar_chart(bars) if any(users for _, users, _ in bars) else _no_data()
    return _figure("churn_tiers", "Churn risk tiers now (latest score of each user)", body)


def _kpi_tables(report: dict[str, Any]) -> str:
    out = []
    for title, key, figures in SECTIONS:
        rows = [(label, _fmt(report[key][name], kind)) for name, label, kind in figures]
        if key == "retention":
            rows += [(f"Churn tier now: {tier}", _fmt(report[key]["churn_tiers"][tier], "int")) for tier in TIERS]
        cells = "".join(f'<tr><td>{escape(label)}</td><td class="v">{escape(value)}</td></tr>' for label, value in rows)
        out.append(f"<section><h2>{escape(title)}</h2><table>{cells}</table></section>")
    return f'<div class="kpis">{"".join(out)}</div>'


def render_html(report: dict[str, Any]) -> str:
    """One HTML page: the KPI tables, then the five charts."""
    period = report["period"]
    title = f"Customer Pulse KPIs {period['from']} to {period['to']}"
    charts = [_daily_actives(report), _nps_trend(report), _funnels(report), _retention(report), _churn_tiers(report)]
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head><body>"
        f'<h1>{escape(title)}</h1><p class="period">{period["days"]} days, UTC</p>'
        f"{_kpi_tables(report)}{''.join(charts)}</body></html>\n"
    )
