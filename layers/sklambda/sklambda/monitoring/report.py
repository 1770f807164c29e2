"""Drift reports: a JSON document for machines and a self-contained HTML page for people.

The HTML page has no external resources at all (inline CSS, inline SVG charts drawn here: no
matplotlib, which is not in the Lambda layer) and a Content-Security-Policy that forbids scripts,
so it can be opened straight from S3. Feature names, categories and unseen values come from
captured requests, which are untrusted: every string taken from data is HTML-escaped.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np

from sklambda.monitoring.drift import DriftAggregate, DriftResult, FeatureDrift, psi_groups
from sklambda.monitoring.multivariate import MultivariateDrift, ReconstructionAggregate
from sklambda.monitoring.performance import PerformanceEstimate

REPORT_FORMAT = 1
SCORE_GROUPS = 20  # the calibration's 200 score bins drawn as 20
MAX_VALUE_BARS = 30  # discrete numeric features with more distinct values are drawn as a step chart
MAX_LABEL_CHARS = 28

_VERDICT_ORDER = {"drift": 0, "ok": 1, "insufficient_data": 2}
_VERDICT_LABEL = {"drift": "drift", "ok": "ok", "insufficient_data": "insufficient data"}
REF_COLOUR = "#9ca3af"
CUR_COLOUR = "#2563eb"


# ============================================================================ shared data
def _when(value: datetime | str | None) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    return str(value)


def _ordered(result: DriftResult) -> list[FeatureDrift]:
    """Drifted features first, then ok, then insufficient data; by PSI descending within each."""
    return sorted(result.features, key=lambda f: (_VERDICT_ORDER[f.verdict], -(f.psi if f.psi is not None else -1.0)))


def _shares(counts: Sequence[float]) -> list[float]:
    total = float(sum(counts))
    return [float(c) / total if total else 0.0 for c in counts]


def _num(value: float | None) -> str:
    """Short human number: 12.3k, 1.2M, 0.0042."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    magnitude = abs(value)
    if magnitude >= 1e6:
        return f"{value / 1e6:.3g}M"
    if magnitude >= 1e4:
        return f"{value / 1e3:.3g}k"
    if magnitude >= 100 or value == int(value):
        return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"
    return f"{value:.3g}"


def _chart_data(reference: Mapping[str, Any], current: Mapping[str, Any], psi_bins: int) -> dict[str, Any]:
    """Reference and current shares per bin, ready to draw (and to publish in the JSON report)."""
    if reference["type"] == "category":
        labels = [*reference["categories"], "(unseen)"]
        ref = _shares([*reference["counts"], reference["unseen"]])
        cur = _shares([*current["counts"], current["unseen"]])
        return {
            "kind": "categories",
            "labels": labels,
            "reference": ref,
            "current": cur,
            "unseen_values": current["unseen_values"],
        }
    edges = list(reference["edges"])
    ref_counts, cur_counts = list(reference["counts"]), list(current["counts"])
    if not edges:
        return {"kind": "empty"}
    ref, cur = _shares(ref_counts), _shares(cur_counts)
    out: dict[str, Any] = {
        "below_range": {"reference": ref[0], "current": cur[0], "limit": edges[0]},
        "above_range": {"reference": ref[-1], "current": cur[-1], "limit": reference["max"]},
    }
    groups = psi_groups(np.asarray(ref_counts), psi_bins)
    group_labels, group_ref, group_cur = [], [], []
    for g in np.unique(groups):
        bins = np.flatnonzero(groups == g)
        first, last = int(bins[0]), int(bins[-1])
        low = edges[first - 1] if first > 0 else None
        high = edges[last] if last < len(edges) else None
        if low is None and high is not None:
            group_labels.append(f"< {_num(high)}")
        elif high is None and low is not None:
            group_labels.append(f"≥ {_num(low)}")
        else:
            group_labels.append(f"{_num(low)}–{_num(high)}")
        group_ref.append(sum(ref[first : last + 1]))
        group_cur.append(sum(cur[first : last + 1]))
    out["psi_groups"] = {"labels": group_labels, "reference": group_ref, "current": group_cur}
    inner = slice(1, len(ref_counts) - 1)  # the bins inside the training range
    if reference["binning"] == "values":
        values = edges[:-1]
        out.update(kind="values", values=values, reference=ref[inner], current=cur[inner])
    else:
        # The top bin [max, nextafter(max)) is degenerate when many training rows sit exactly at
        # the maximum (a clipped score): draw it as wide as a typical bin instead of as a spike.
        widths = np.diff(np.asarray(edges, dtype=float))
        typical = float(np.median(widths)) if widths.size else 1.0
        if widths.size > 1 and widths[-1] < 0.01 * typical:
            widths[-1] = typical
            edges = [*edges[:-1], edges[-2] + typical]
        out.update(
            kind="density",
            edges=edges,
            reference=[s / w if w > 0 else 0.0 for s, w in zip(ref[inner], widths, strict=True)],
            current=[s / w if w > 0 else 0.0 for s, w in zip(cur[inner], widths, strict=True)],
        )
    return out


def _views(result: DriftResult, baseline: Mapping[str, Any], aggregate: DriftAggregate) -> list[dict[str, Any]]:
    references = {f["name"]: f for f in baseline["features"]}
    views = []
    for feature in _ordered(result):
        reference = references[feature.name]
        current = aggregate.feature(feature.name)
        views.append(
            {
                "feature": feature,
                "reference": reference,
                "chart": _chart_data(reference, current, result.config.psi_bins),
            }
        )
    return views


def _rounded(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, list):
        return [_rounded(v) for v in value]
    if isinstance(value, dict):
        return {k: _rounded(v) for k, v in value.items()}
    return value


# ============================================================================ JSON
def render_json(
    result: DriftResult,
    baseline: Mapping[str, Any],
    aggregate: DriftAggregate,
    *,
    model: str,
    version: str,
    window_start: datetime | str | None = None,
    window_end: datetime | str | None = None,
    run_id: str | None = None,
    generated_at: datetime | str | None = None,
    performance: PerformanceEstimate | None = None,
    multivariate: MultivariateDrift | None = None,
    reconstruction: ReconstructionAggregate | None = None,
) -> dict[str, Any]:
    """The machine-readable report: the result plus context and the per-feature chart data; the
    label-free performance estimate and the multivariate verdict when given."""
    views = _views(result, baseline, aggregate)
    extra: dict[str, Any] = {}
    if performance is not None:
        extra["performance"] = performance.model_dump(mode="json", exclude={"score_shares"})
        if performance.score_shares:
            extra["performance"]["chart"] = _rounded(_score_chart(performance))
    if multivariate is not None:
        extra["multivariate"] = multivariate.model_dump(mode="json")
        chart = _multivariate_chart(multivariate, reconstruction, result.config.psi_bins)
        if chart is not None:
            extra["multivariate"]["chart"] = _rounded(chart)
    return {
        "format": REPORT_FORMAT,
        "kind": "sklambda.drift.report",
        "model": model,
        "version": version,
        "window": {"start": _when(window_start), "end": _when(window_end)},
        "run_id": run_id,
        "generated_at": _when(generated_at or datetime.now(UTC)),
        "result": result.to_dict(),
        "order": [v["feature"].name for v in views],
        "charts": {v["feature"].name: _rounded(v["chart"]) for v in views},
        "unknown_fields": aggregate.to_dict()["unknown_fields"],
        **extra,
    }


def _score_chart(performance: PerformanceEstimate) -> dict[str, Any]:
    """Served versus held-out shares of rows per score range, and the calibrated probability there."""
    shares = performance.score_shares
    ref, cur, calibrated = (np.asarray(shares[k], dtype=float) for k in ("reference", "current", "calibrated"))
    group = max(1, ref.size // SCORE_GROUPS)
    edges = [round(i * group / ref.size, 6) for i in range(ref.size // group + 1)]
    return {
        "edges": edges,
        "reference": [float(v) for v in ref.reshape(-1, group).sum(axis=1)],
        "current": [float(v) for v in cur.reshape(-1, group).sum(axis=1)],
        "calibrated": [float(v) for v in calibrated.reshape(-1, group).mean(axis=1)],
    }


def _multivariate_chart(
    multivariate: MultivariateDrift, reconstruction: ReconstructionAggregate | None, psi_bins: int
) -> dict[str, Any] | None:
    if multivariate.error is None or reconstruction is None:
        return None
    reference = reconstruction.baseline["features"][0]
    return _chart_data(reference, reconstruction.errors.feature(reference["name"]), psi_bins)


# ============================================================================ HTML
_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#111827;
background:#f3f4f6}
main{max-width:1120px;margin:0 auto;padding:24px}
header.top{background:#fff;border-radius:10px;padding:20px 24px;box-shadow:0 1px 2px rgba(0,0,0,.06)}
h1{font-size:22px;margin:0 0 4px}
h2{font-size:17px;margin:28px 0 10px}
h3{font-size:15px;margin:0;display:flex;gap:10px;align-items:center;flex-wrap:wrap}
.sub{color:#6b7280;font-size:13px}
.facts{display:flex;flex-wrap:wrap;gap:12px;margin-top:16px}
.fact{background:#f9fafb;border:1px solid #e5e7eb;border-radius:8px;padding:10px 14px;min-width:150px}
.fact .k{color:#6b7280;font-size:12px;text-transform:uppercase;letter-spacing:.04em}
.fact .v{font-size:20px;font-weight:600}
.fact .v.small{font-size:14px;font-weight:500}
.badge{display:inline-block;border-radius:999px;padding:1px 10px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.drift{background:#fee2e2;color:#991b1b}
.badge.ok{background:#dcfce7;color:#166534}
.badge.insufficient_data{background:#e5e7eb;color:#374151}
.badge.big{font-size:15px;padding:3px 14px}
table{border-collapse:collapse;width:100%;background:#fff;border-radius:10px;overflow:hidden;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
th,td{text-align:left;padding:7px 10px;border-bottom:1px solid #f0f1f3;vertical-align:top}
th{background:#f9fafb;font-size:12px;color:#4b5563;text-transform:uppercase;letter-spacing:.03em}
td.n,th.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
tr.drift td:first-child{border-left:3px solid #dc2626}
a{color:#1d4ed8;text-decoration:none}
a:hover{text-decoration:underline}
article{background:#fff;border-radius:10px;padding:16px 20px;margin:14px 0;box-shadow:0 1px 2px rgba(0,0,0,.06)}
article.drift{border-left:4px solid #dc2626}
.why{margin:6px 0 10px;color:#374151}
.charts{display:flex;flex-wrap:wrap;gap:18px;align-items:flex-start}
.chart{flex:1 1 420px;min-width:320px;max-width:560px}
.chart .t{font-size:12px;color:#4b5563;margin-bottom:2px}
svg{display:block;width:100%;height:auto;font:11px system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif}
.legend{display:flex;gap:14px;font-size:12px;color:#4b5563;margin:4px 0}
.sw{display:inline-block;width:10px;height:10px;border-radius:2px;margin-right:4px;vertical-align:-1px}
table.stats{box-shadow:none;margin-top:10px;font-size:13px}
table.stats th,table.stats td{padding:4px 8px}
.notice{background:#fffbeb;border:1px solid #fde68a;border-radius:8px;padding:10px 14px;margin-top:14px}
.note{color:#6b7280;font-size:12px}
footer{color:#6b7280;font-size:12px;margin:28px 0 8px}
code{font-size:12px;background:#f3f4f6;padding:0 4px;border-radius:4px}
"""


def _e(value: Any) -> str:
    """Escape anything for HTML text and attribute values."""
    return html.escape(str(value), quote=True)


def _label(value: Any) -> str:
    text = str(value)
    return text if len(text) <= MAX_LABEL_CHARS else text[: MAX_LABEL_CHARS - 1] + "…"


def _pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value * 100:.{digits}f}%"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def _badge(verdict: str, big: bool = False) -> str:
    return f'<span class="badge {_e(verdict)}{" big" if big else ""}">{_e(_VERDICT_LABEL[verdict])}</span>'


def _legend() -> str:
    return (
        f'<div class="legend"><span><span class="sw" style="background:{REF_COLOUR}"></span>reference '
        f'(training)</span><span><span class="sw" style="background:{CUR_COLOUR}"></span>current (served)</span>'
        "</div>"
    )


def _svg_open(width: int, height: int, label: str) -> str:
    return f'<svg viewBox="0 0 {width} {height}" role="img" aria-label="{_e(label)}">'


def _y_axis(top: int, bottom: int, left: int, right: int, peak: float, as_percent: bool) -> list[str]:
    parts = []
    for i in range(5):
        frac = i / 4
        y = bottom - frac * (bottom - top)
        value = peak * frac
        text = _pct(value, 0 if peak >= 0.1 else 1) if as_percent else _num(value)
        parts.append(f'<line x1="{left}" x2="{right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#eef0f3"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 3.5:.1f}" text-anchor="end" fill="#6b7280">{_e(text)}</text>')
    return parts


def _vertical_bars(labels: Sequence[str], ref: Sequence[float], cur: Sequence[float], title: str) -> str:
    """Paired vertical bars (reference, current) per label; shares in %."""
    n = max(len(labels), 1)
    width, left, right, top = 560, 44, 8, 10
    rotate = n > 10 or max((len(str(x)) for x in labels), default=0) > 8
    bottom = 200 if rotate else 170
    height = bottom + (70 if rotate else 24)
    peak = max([*ref, *cur, 1e-9]) * 1.1
    slot = (width - left - right) / n
    bar = max(1.0, slot * 0.38)
    parts = [_svg_open(width, height, title), *_y_axis(top, bottom, left, width - right, peak, True)]
    for i, name in enumerate(labels):
        x0 = left + i * slot + slot * 0.1
        for j, (share, colour) in enumerate(((ref[i], REF_COLOUR), (cur[i], CUR_COLOUR))):
            h = (bottom - top) * share / peak
            parts.append(
                f'<rect x="{x0 + j * bar:.1f}" y="{bottom - h:.1f}" width="{bar:.1f}" height="{h:.1f}" fill="{colour}">'
                f"<title>{_e(name)}: {'reference' if j == 0 else 'current'} {_pct(share)}</title></rect>"
            )
        cx = left + (i + 0.5) * slot
        text = _e(_label(name))
        if rotate:
            parts.append(
                f'<text transform="translate({cx:.1f},{bottom + 10}) rotate(-40)" text-anchor="end" '
                f'fill="#374151">{text}</text>'
            )
        else:
            parts.append(f'<text x="{cx:.1f}" y="{bottom + 15}" text-anchor="middle" fill="#374151">{text}</text>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{bottom}" y2="{bottom}" stroke="#9ca3af"/>')
    parts.append("</svg>")
    return "".join(parts)


def _horizontal_bars(labels: Sequence[str], ref: Sequence[float], cur: Sequence[float], title: str) -> str:
    """Paired horizontal bars per category: long category names stay readable."""
    width, left, right, row = 560, 170, 70, 30
    height = row * len(labels) + 10
    peak = max([*ref, *cur, 1e-9])
    span = width - left - right
    parts = [_svg_open(width, height, title)]
    for i, name in enumerate(labels):
        y = 5 + i * row
        parts.append(
            f'<text x="{left - 8}" y="{y + 16}" text-anchor="end" fill="#374151">{_e(_label(name))}'
            f"<title>{_e(name)}</title></text>"
        )
        for j, (share, colour) in enumerate(((ref[i], REF_COLOUR), (cur[i], CUR_COLOUR))):
            w = span * share / peak
            yy = y + 3 + j * 11
            parts.append(
                f'<rect x="{left}" y="{yy}" width="{w:.1f}" height="10" rx="2" fill="{colour}">'
                f"<title>{_e(name)}: {'reference' if j == 0 else 'current'} {_pct(share)}</title></rect>"
                f'<text x="{left + w + 5:.1f}" y="{yy + 9}" fill="#4b5563">{_pct(share)}</text>'
            )
    parts.append(f'<line x1="{left}" x2="{left}" y1="0" y2="{height}" stroke="#9ca3af"/>')
    parts.append("</svg>")
    return "".join(parts)


def _steps(edges: Sequence[float], ref: Sequence[float], cur: Sequence[float], title: str) -> str:
    """Overlaid histograms on the value axis: reference as a grey area, current as a blue step line."""
    width, height, left, right, top, bottom = 560, 200, 20, 24, 10, 172
    low, high = float(edges[0]), float(edges[-1])
    span_x = (high - low) or 1.0
    peak = max([*ref, *cur, 1e-300]) * 1.1

    def x(v: float) -> float:
        return left + (v - low) / span_x * (width - left - right)

    def y(v: float) -> float:
        return bottom - v / peak * (bottom - top)

    def path(values: Sequence[float]) -> list[tuple[float, float]]:
        points = [(x(edges[0]), y(0))]
        for i, v in enumerate(values):
            points += [(x(edges[i]), y(v)), (x(edges[i + 1]), y(v))]
        return [*points, (x(edges[-1]), y(0))]

    parts = [_svg_open(width, height, title)]
    for i in range(5):
        yy = bottom - i / 4 * (bottom - top)
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{yy:.1f}" y2="{yy:.1f}" stroke="#eef0f3"/>')
    ref_points = " ".join(f"{a:.1f},{b:.1f}" for a, b in path(ref))
    cur_points = " ".join(f"{a:.1f},{b:.1f}" for a, b in path(cur))
    parts.append(f'<polygon points="{ref_points}" fill="{REF_COLOUR}" fill-opacity=".55" stroke="{REF_COLOUR}"/>')
    parts.append(f'<polyline points="{cur_points}" fill="none" stroke="{CUR_COLOUR}" stroke-width="1.8"/>')
    parts.append(f'<line x1="{left}" x2="{width - right}" y1="{bottom}" y2="{bottom}" stroke="#9ca3af"/>')
    for i in range(6):
        v = low + span_x * i / 5
        parts.append(f'<text x="{x(v):.1f}" y="{bottom + 15}" text-anchor="middle" fill="#374151">{_e(_num(v))}</text>')
    parts.append(f'<text x="{left + 4}" y="{top + 8}" fill="#6b7280">density</text>')
    parts.append("</svg>")
    return "".join(parts)


def _chart_block(title: str, svg: str, note: str = "") -> str:
    return f'<div class="chart"><div class="t">{_e(title)}</div>{svg}{note}</div>'


def _feature_charts(view: Mapping[str, Any]) -> str:
    feature: FeatureDrift = view["feature"]
    chart = view["chart"]
    name = feature.name
    if chart["kind"] == "empty":
        return '<p class="note">No reference values: nothing to draw.</p>'
    if chart["kind"] == "categories":
        svg = _horizontal_bars(chart["labels"], chart["reference"], chart["current"], f"{name}: share per category")
        unseen = chart["unseen_values"]
        note = ""
        if unseen["values"]:
            listed = ", ".join(
                f"<code>{_e(_label(k))}</code> ({v:,})"
                for k, v in sorted(unseen["values"].items(), key=lambda kv: -kv[1])[:10]
            )
            note = f'<p class="note">Unseen values: {listed}</p>'
        elif unseen["overflow"]:
            note = '<p class="note">Unseen values: too many distinct values to list.</p>'
        return _legend() + '<div class="charts">' + _chart_block("Share per category", svg, note) + "</div>"
    blocks = []
    if chart["kind"] == "values":
        labels = [_num(v) for v in chart["values"]]
        if len(labels) <= MAX_VALUE_BARS:
            svg = _vertical_bars(labels, chart["reference"], chart["current"], f"{name}: share per value")
        else:
            values = list(chart["values"])
            step = values[-1] - values[-2] if len(values) > 1 else 1.0
            edges = [*values, values[-1] + step]
            svg = _steps(edges, chart["reference"], chart["current"], f"{name}: share per value")
        blocks.append(_chart_block("Share per value (training range)", svg, _range_note(chart)))
    else:
        svg = _steps(chart["edges"], chart["reference"], chart["current"], f"{name}: distribution")
        blocks.append(_chart_block("Distribution over the training range", svg, _range_note(chart)))
    groups = chart["psi_groups"]
    svg = _vertical_bars(groups["labels"], groups["reference"], groups["current"], f"{name}: share per decile")
    blocks.append(_chart_block("Share per reference decile (the PSI bins)", svg))
    return _legend() + '<div class="charts">' + "".join(blocks) + "</div>"


def _range_note(chart: Mapping[str, Any]) -> str:
    below, above = chart["below_range"], chart["above_range"]
    notes = []
    if below["current"] or below["reference"]:
        notes.append(f"below the training minimum {_e(_num(below['limit']))}: {_pct(below['current'], 2)} of current")
    if above["current"] or above["reference"]:
        notes.append(f"above the training maximum {_e(_num(above['limit']))}: {_pct(above['current'], 2)} of current")
    if not notes:
        return ""
    text = "; ".join(notes)
    return f'<p class="note">{text[0].upper()}{text[1:]}.</p>'


def _stats_table(feature: FeatureDrift, reference: Mapping[str, Any]) -> str:
    rows: list[tuple[str, str, str]] = [
        ("values", f"{feature.reference_rows:,}", f"{feature.current_rows:,}"),
        ("missing", _pct(feature.reference_missing_share), _pct(feature.current_missing_share)),
    ]
    if feature.type != "category":
        rows += [
            ("mean", _num(feature.reference_mean), _num(feature.current_mean)),
            ("std", _num(feature.reference_std), _num(feature.current_std)),
            ("min", _num(reference.get("min")), _num(feature.current_min)),
            ("max", _num(reference.get("max")), _num(feature.current_max)),
            ("outside training range", "0.0%", _pct(feature.out_of_range_share, 2)),
        ]
    else:
        ref_unseen = reference["unseen"] / reference["n"] if reference.get("n") else None
        rows.append(("unseen categories", _pct(ref_unseen, 2), _pct(feature.unseen_share, 2)))
    if feature.current_invalid:
        rows.append(("invalid values (not counted)", "", f"{feature.current_invalid:,}"))
    body = "".join(f'<tr><td>{_e(k)}</td><td class="n">{_e(a)}</td><td class="n">{_e(b)}</td></tr>' for k, a, b in rows)
    return (
        '<table class="stats"><thead><tr><th></th><th class="n">reference</th><th class="n">current</th></tr>'
        f"</thead><tbody>{body}</tbody></table>"
    )


def _distance_label(feature: FeatureDrift) -> str:
    return "KS" if feature.distance_name == "ks" else "JS"


def render_html(
    result: DriftResult,
    baseline: Mapping[str, Any],
    aggregate: DriftAggregate,
    *,
    model: str,
    version: str,
    window_start: datetime | str | None = None,
    window_end: datetime | str | None = None,
    run_id: str | None = None,
    generated_at: datetime | str | None = None,
    performance: PerformanceEstimate | None = None,
    multivariate: MultivariateDrift | None = None,
    reconstruction: ReconstructionAggregate | None = None,
) -> str:
    """A self-contained HTML page: header, the label-free performance estimate and the multivariate
    verdict (when given), the feature table, one chart section per feature."""
    views = _views(result, baseline, aggregate)
    anchors = {v["feature"].name: f"f{i}" for i, v in enumerate(views)}
    config = result.config
    start, end = _when(window_start), _when(window_end)
    generated = _when(generated_at or datetime.now(UTC))
    window = f"{start or '…'} → {end or '…'}"

    out: list[str] = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">",
        f"<title>Drift report · {_e(model)} v{_e(version)}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        '<header class="top">',
        f'<h1>Drift report: {_e(model)} <span class="sub">version {_e(version)}</span> '
        f"{_badge(result.verdict, big=True)}</h1>",
        f'<div class="sub">Window {_e(window)} · run {_e(run_id or "–")} · generated {_e(generated)}</div>',
        '<div class="facts">',
        f'<div class="fact"><div class="k">Drift score</div><div class="v">{_pct(result.drift_score, 0)}</div>'
        f'<div class="sub">{result.drifted_features} of {result.evaluated_features} features drifted</div></div>',
        f'<div class="fact"><div class="k">Rows</div><div class="v">{result.rows:,}</div>'
        f'<div class="sub">served rows in the window</div></div>',
        f'<div class="fact"><div class="k">Dataset verdict</div><div class="v small">{_badge(result.verdict)}</div>'
        f'<div class="sub">drift when ≥ {config.drift_share:.0%} of features drift</div></div>',
        f'<div class="fact"><div class="k">Baseline</div><div class="v small"><code>{_e(result.baseline)}</code>'
        f'</div><div class="sub">{baseline.get("rows", 0):,} training rows</div></div>',
        "</div>",
    ]
    out.append(_quality_notice(result, aggregate))
    out.append("</header>")
    if performance is not None:
        out.append(_performance_section(performance))
    if multivariate is not None:
        out.append(_multivariate_section(multivariate, reconstruction, config.psi_bins))

    # Summary table.
    out.append(
        "<h2>Features</h2><table><thead><tr><th>Feature</th><th>Type</th><th>Verdict</th>"
        '<th class="n">PSI</th><th class="n">Distance</th><th class="n">W₁/σ</th><th class="n">p-value</th>'
        '<th class="n">Current values</th><th>Why</th></tr></thead><tbody>'
    )
    for view in views:
        f: FeatureDrift = view["feature"]
        distance = "–" if f.distance is None else f"{_distance_label(f)} {f.distance:.3f}"
        out.append(
            f'<tr class="{_e(f.verdict)}"><td><a href="#{anchors[f.name]}">{_e(f.name)}</a></td>'
            f"<td>{_e(f.type)}</td><td>{_badge(f.verdict)}</td>"
            f'<td class="n">{"–" if f.psi is None else f"{f.psi:.3f}"}</td><td class="n">{_e(distance)}</td>'
            f'<td class="n">{"–" if f.wasserstein is None else f"{f.wasserstein:.3f}"}</td>'
            f'<td class="n">{_p(f.p_value)}</td><td class="n">{f.current_rows:,}</td>'
            f"<td>{_e('; '.join(f.reasons))}</td></tr>"
        )
    out.append("</tbody></table>")
    out.append(
        '<p class="note">Distance: KS = largest gap between the two cumulative distributions (numeric); '
        "JS = Jensen-Shannon distance, base 2 (categorical). W₁/σ = Wasserstein-1 distance (the area between "
        "the two cumulative distributions) divided by the training std: it sees changes of scale and shape "
        "that move little mass across any one point (number and integer features). p-values (KS asymptotic, "
        "chi-square) are shown for reference only: at these sample sizes almost any difference is significant, "
        "so the verdict uses the size of the change instead.</p>"
    )

    # Per-feature sections.
    out.append("<h2>Distributions</h2>")
    for view in views:
        f = view["feature"]
        out.append(f'<article id="{anchors[f.name]}" class="{_e(f.verdict)}">')
        out.append(f'<h3>{_e(f.name)} <span class="sub">{_e(f.type)}</span> {_badge(f.verdict)}</h3>')
        stats_line = []
        if f.psi is not None:
            stats_line.append(f"PSI {f.psi:.3f}")
        if f.distance is not None:
            stats_line.append(f"{_distance_label(f)} distance {f.distance:.3f}")
        if f.wasserstein is not None:
            stats_line.append(f"W₁/σ {f.wasserstein:.3f}")
        if f.p_value is not None:
            stats_line.append(f"p {_p(f.p_value)}")
        out.append(
            f'<p class="why">{_e(" · ".join(stats_line))}{" — " if stats_line else ""}{_e("; ".join(f.reasons))}</p>'
        )
        own = view["reference"].get("drift") or {}
        if own:
            listed = ", ".join(f"{k} {v:g}" for k, v in sorted(own.items()))
            out.append(f"<p class=\"note\">This feature's own thresholds (its schema's drift block): {_e(listed)}</p>")
        out.append(_feature_charts(view))
        out.append(_stats_table(f, view["reference"]))
        out.append("</article>")

    out.append(
        "<footer>A feature drifts when PSI ≥ "
        f"{config.psi_threshold:g} (on reference deciles for numeric features), or the KS distance ≥ "
        f"{config.ks_threshold:g} (numeric) / Jensen-Shannon distance ≥ {config.js_threshold:g} (categorical), or "
        f"W₁/σ ≥ {config.wasserstein_threshold:g} and ≥ {config.wasserstein_noise_factor:g} × its sampling noise "
        f"(number and integer features), or its share of missing values changes by ≥ {config.missing_threshold:.0%}; "
        "a feature's schema may set its own thresholds (its section then lists them); "
        f"features with fewer than {config.min_rows:,} current values get no verdict. Generated by sklambda.</footer>"
    )
    out.append("</main></body></html>")
    return "\n".join(out)


_METRIC_LABELS = {"accuracy": "Accuracy", "f1": "F1 (positive class)", "roc_auc": "ROC AUC"}


def _performance_section(performance: PerformanceEstimate) -> str:
    """The label-free estimate: a table of metrics (held-out realised and estimated, this window
    estimated) and the served versus held-out score distribution; or why there is none."""
    out = ["<h2>Estimated performance (no labels)</h2>"]
    if performance.status == "unavailable":
        out.append(f'<div class="notice"><strong>No estimate.</strong> {_e(performance.reason or "")}</div>')
        return "".join(out)
    if performance.status == "insufficient_data":
        out.append(f'<div class="notice"><strong>No estimate yet.</strong> {_e(performance.reason or "")}</div>')
        return "".join(out)
    positive = "" if performance.positive_class is None else f" (positive class {_e(performance.positive_class)})"
    rows = []
    for key, label in _METRIC_LABELS.items():
        if key not in performance.estimated:
            continue
        realised = performance.reference_realised.get(key)
        reference = performance.reference.get(key)
        current = performance.estimated[key]
        drop = performance.drop.get(key)
        change = "–" if drop is None else f"{-drop:+.3f}"
        rows.append(
            f'<tr><td>{_e(label)}</td><td class="n">{_num3(realised)}</td><td class="n">{_num3(reference)}</td>'
            f'<td class="n">{current:.3f}</td><td class="n">{_e(change)}</td></tr>'
        )
    out.append(
        '<table><thead><tr><th>Metric</th><th class="n">held-out rows: labels</th>'
        '<th class="n">held-out rows: estimate</th><th class="n">this window: estimate</th>'
        '<th class="n">change</th></tr></thead><tbody>' + "".join(rows) + "</tbody></table>"
    )
    out.append(
        f'<p class="note">Confidence-based estimate{positive} from the probabilities of {performance.rows:,} '
        f"served rows, calibrated (isotonic, per score bin) on {performance.calibration_rows or 0:,} rows: "
        f"{_e(performance.calibration_source or 'held-out')}. It follows changes in <em>who</em> is scored "
        "(more rows where the model is unsure lower it); it cannot see concept drift — the same inputs now "
        "meaning another label — because the scores do not change: only labels (ModelAccuracy, from /feedback) "
        "show that."
        + (f" {performance.unscored:,} rows had no usable probabilities." if performance.unscored else "")
        + "</p>"
    )
    if performance.score_shares:
        chart = _score_chart(performance)
        svg = _steps(
            chart["edges"],
            [v * SCORE_GROUPS for v in chart["reference"]],
            [v * SCORE_GROUPS for v in chart["current"]],
            "served versus held-out scores",
        )
        score = "positive-class probability" if performance.mode == "binary" else "predicted-class probability"
        out.append(
            "<article><h3>Scores</h3>"
            + _legend().replace("reference (training)", "held-out rows")
            + '<div class="charts">'
            + _chart_block(f"Rows per {score}", svg)
            + "</div></article>"
        )
    return "".join(out)


def _num3(value: float | None) -> str:
    return "–" if value is None else f"{value:.3f}"


def _multivariate_section(
    multivariate: MultivariateDrift, reconstruction: ReconstructionAggregate | None, psi_bins: int
) -> str:
    out = ["<h2>Multivariate drift (relations between features)</h2>"]
    if multivariate.status != "evaluated" or multivariate.error is None:
        out.append(f'<div class="notice"><strong>Not evaluated.</strong> {_e(multivariate.reason or "")}</div>')
        return "".join(out)
    error = multivariate.error
    article = [
        f'<article class="{_e(error.verdict)}"><h3>PCA reconstruction error {_badge(error.verdict)}</h3>',
        f'<p class="why">{_e("; ".join(error.reasons))}</p>',
        f'<p class="note">Each row is standardised (categories one-hot) and projected on the {multivariate.components} '
        f"main components of the training rows ({(multivariate.explained_variance or 0):.0%} of their variance, of "
        f"{multivariate.columns} encoded columns); its error is what those components do not explain. When the "
        "features relate differently (a correlation that changed sign), the errors grow even if every feature on "
        "its own looks the same.</p>",
    ]
    chart = _multivariate_chart(multivariate, reconstruction, psi_bins)
    if chart is not None:
        article.append(_feature_charts({"feature": error, "chart": chart}))
    article.append(
        '<table class="stats"><thead><tr><th></th><th class="n">reference</th><th class="n">current</th></tr></thead>'
        f'<tbody><tr><td>rows</td><td class="n">{error.reference_rows:,}</td><td class="n">{error.current_rows:,}'
        f'</td></tr><tr><td>mean error</td><td class="n">{_num(error.reference_mean)}</td><td class="n">'
        f"{_num(error.current_mean)}</td></tr></tbody></table>"
    )
    article.append("</article>")
    return "".join(out + article)


def _quality_notice(result: DriftResult, aggregate: DriftAggregate) -> str:
    problems = []
    if result.invalid_records:
        problems.append(f"{result.invalid_records:,} captured records were not JSON objects")
    if result.unknown_fields_total:
        unknown = aggregate.to_dict()["unknown_fields"]
        names = ", ".join(
            f"<code>{_e(_label(k))}</code> ({v:,})"
            for k, v in sorted(unknown["values"].items(), key=lambda kv: -kv[1])[:10]
        )
        problems.append(
            f"{result.unknown_fields_total:,} values of fields that are not features" + (f": {names}" if names else "")
        )
    invalid = [(f.name, f.current_invalid) for f in result.features if f.current_invalid]
    if invalid:
        listed = ", ".join(f"<code>{_e(_label(n))}</code> ({c:,})" for n, c in invalid[:10])
        problems.append(f"invalid (wrong-typed) values, left out of the statistics: {listed}")
    if not problems:
        return ""
    # Each item is built from escaped parts above.
    return '<div class="notice"><strong>Data quality.</strong> ' + "; ".join(problems) + ".</div>"
