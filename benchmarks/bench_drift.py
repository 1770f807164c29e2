"""Drift computation benchmark: sklambda's engine at 10k / 100k / 1M captured rows x 20 features,
against Evidently's data-drift preset on the same data in the same run.

    .venv/bin/python benchmarks/bench_drift.py                 # full run (~5-8 min): RESULTS.md's drift section
    .venv/bin/python benchmarks/bench_drift.py --quick         # smoke run: benchmarks/.work/RESULTS-quick-drift.md
    .venv/bin/python benchmarks/bench_drift.py --no-evidently  # skip the comparison

Setup: 20 features (the 12 demo churn features, 6 derived from them, 2 independent: see
benchmarks/_drift_data.py). The baseline is profiled from 50,000 reference rows (drift 0); the
"current" windows are drawn with the demo's drift knob at 0.5, a moderate shift that moves some
features a lot, some a little and some not at all. Every measurement runs in a fresh process
(benchmarks/_drift_child.py) so its peak RSS is its own:

- ``columns``: one ``add_columns`` call with the whole window as numpy arrays, then ``evaluate``;
- ``chunks``: the same arrays in 65,536-row slices (how a reader of capture objects feeds them);
- ``jsonl``: the realistic path: a JSON-lines capture file, ``json.loads`` per line,
  ``add_records`` on the stream, then ``evaluate``; ``parse`` times ``json.loads`` alone.

Evidently runs in its own venv (benchmarks/.work/venv-evidently, created here when missing, never
part of the project's dependencies) through benchmarks/drift_evidently.py, on CSV copies of the
same reference and current rows.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import _drift_data as D  # noqa: E402
import _drift_shifts as S  # noqa: E402

WORK = BENCH / ".work"
DATA = WORK / "drift"
RESULTS = BENCH / "RESULTS.md"
CHILD = BENCH / "_drift_child.py"
EVIDENTLY_SCRIPT = BENCH / "drift_evidently.py"
EVIDENTLY_VENV = WORK / "venv-evidently"
# Evidently 0.7.23 imports a helper that pandas 3 removed: pin a pandas 2 beside it.
EVIDENTLY_REQUIREMENTS = ["evidently==0.7.23", "pandas==2.3.3"]
DATA_VERSION = 1  # bump when _drift_data changes, so cached capture files are rewritten
CHILD_TIMEOUT_S = 1_200
SECTION = "drift"

FULL = {
    "sizes": [10_000, 100_000, 1_000_000],
    "evidently": [100_000, 1_000_000],
    "verdicts_at": 100_000,
    "repeat": {10_000: 5, 100_000: 3, 1_000_000: 2},
    "shifts": [100_000, 1_000_000],
}
QUICK = {
    "sizes": [10_000, 50_000],
    "evidently": [50_000],
    "verdicts_at": 50_000,
    "repeat": {10_000: 2, 50_000: 2},
    "shifts": [50_000],
}
SHIFTS_VERSION = 1  # bump when _drift_shifts changes, so its cached CSV files are rewritten


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- machine facts
def machine() -> dict[str, Any]:
    cpu = "unknown"
    ram = None
    try:
        found = re.search(r"^model name\s*:\s*(.+)$", Path("/proc/cpuinfo").read_text(), re.M)
        cpu = found.group(1).strip() if found else cpu
        found = re.search(r"^MemTotal:\s*(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
        ram = int(found.group(1)) / 1024**2 if found else None
    except OSError:
        cpu = platform.processor() or cpu
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "usable": usable,
        "ram_gib": ram,
        "os": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
    }


def versions() -> dict[str, str]:
    out = {}
    for name in ("numpy", "scipy", "pydantic"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


# ----------------------------------------------------------------------------- data
def prepare(sizes: list[int], csv_sizes: list[int]) -> dict[str, Any]:
    """Baseline, JSON-lines captures and CSV copies under benchmarks/.work/drift (cached by size)."""
    from sklambda.monitoring.drift import baseline_profile

    DATA.mkdir(parents=True, exist_ok=True)
    reference = D.reference()
    matrix = D.to_matrix(reference)
    started = time.perf_counter()
    baseline = baseline_profile(matrix, D.SCHEMA)
    profile_seconds = time.perf_counter() - started
    baseline_path = DATA / "baseline.json"
    baseline_path.write_text(json.dumps(baseline, separators=(",", ":")))
    info: dict[str, Any] = {
        "baseline": baseline_path,
        "baseline_bytes": baseline_path.stat().st_size,
        "profile_seconds": profile_seconds,
        "jsonl": {},
        "csv": {},
    }
    reference_csv = DATA / f"reference-v{DATA_VERSION}.csv"
    if csv_sizes and not reference_csv.exists():
        D.write_csv(reference_csv, reference)
    info["reference_csv"] = reference_csv
    for n in sorted(set(sizes) | set(csv_sizes)):
        jsonl = DATA / f"capture-v{DATA_VERSION}-{n}.jsonl"
        csv_path = DATA / f"current-v{DATA_VERSION}-{n}.csv"
        need_jsonl = n in sizes and not jsonl.exists()
        need_csv = n in csv_sizes and not csv_path.exists()
        if need_jsonl or need_csv:
            log(f"  writing {n:,} current rows")
            current = D.current(n)
            if need_jsonl:
                D.write_jsonl(jsonl, current)
            if need_csv:
                D.write_csv(csv_path, current)
        if n in sizes:
            info["jsonl"][n] = jsonl
        if n in csv_sizes:
            info["csv"][n] = csv_path
    return info


# ----------------------------------------------------------------------------- measurements
def run_child(mode: str, rows: int, baseline: Path, jsonl: Path, repeat: int, trace: bool = True) -> dict[str, Any]:
    cmd = [sys.executable, str(CHILD), mode, str(rows), str(baseline), str(jsonl), "--repeat", str(repeat)]
    if not trace:
        cmd.append("--no-trace")
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} {rows}: child failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def ensure_evidently() -> Path:
    """The Evidently venv: created on first use, so `make bench` works on a fresh machine."""
    python = EVIDENTLY_VENV / "bin" / "python"
    stamp = EVIDENTLY_VENV / ".installed"
    wanted = "\n".join(EVIDENTLY_REQUIREMENTS)
    if python.exists() and stamp.exists() and stamp.read_text() == wanted:
        return python
    log(f"  creating {EVIDENTLY_VENV.relative_to(ROOT)} ({', '.join(EVIDENTLY_REQUIREMENTS)}); takes a minute or two")
    base = getattr(sys, "_base_executable", None) or sys.executable
    subprocess.run([base, "-m", "venv", "--clear", str(EVIDENTLY_VENV)], check=True)
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *EVIDENTLY_REQUIREMENTS],
        check=True,
    )
    stamp.write_text(wanted)
    return python


def run_evidently(
    python: Path, reference_csv: Path, current_csv: Path, numerical: list[str] = D.NUMERIC, categorical=D.CATEGORICAL
) -> dict[str, Any]:
    cmd = [
        str(python),
        str(EVIDENTLY_SCRIPT),
        "--reference",
        str(reference_csv),
        "--current",
        str(current_csv),
        "--numerical",
        ",".join(numerical),
        "--categorical",
        ",".join(categorical),
    ]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=CHILD_TIMEOUT_S, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"evidently on {current_csv.name} failed\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- formatting
def med(values: list[float]) -> float:
    return statistics.median(values)


def fmt_s(seconds: float) -> str:
    return f"{seconds * 1000:,.0f} ms" if seconds < 1 else f"{seconds:,.2f} s"


def fmt_rate(rows: int, seconds: float) -> str:
    rate = rows / seconds
    return f"{rate / 1e6:,.2f} M" if rate >= 1e6 else f"{rate / 1e3:,.0f} k"


def fmt_mib(value: float | None) -> str:
    return "–" if value is None else f"{value:,.1f}"


def verdict_cell(verdict: str, stat: dict[str, Any]) -> str:
    if stat.get("distance") is None:
        return verdict
    kind = "KS" if stat["kind"] == "ks" else "JS₂"
    w = stat.get("wasserstein")
    return f"{verdict} (PSI {stat['psi']:.3f}, {kind} {stat['distance']:.3f}" + (
        f", W₁/σ {w:.3f})" if w is not None else ")"
    )


def evidently_cell(column: dict[str, Any]) -> str:
    short = {"Wasserstein distance (normed)": "W₁/σ", "Jensen-Shannon distance": "JSₑ"}.get(
        column["method"], column["method"]
    )
    return f"{'drift' if column['drift'] else 'ok'} ({short} {column['value']:.3f})"


def why_disagree(stat: dict[str, Any], column: dict[str, Any]) -> str:
    """A one-line reason for a differing verdict, from the two sides' numbers."""
    psi, distance = stat.get("psi"), stat.get("distance")
    if psi is None or distance is None:
        return "sklambda gave no verdict (too few rows)"
    if psi >= 0.2 and not column["drift"]:
        return f"sklambda's PSI {psi:.3f} ≥ 0.2; Evidently has no PSI rule"
    if stat["kind"] == "jensen_shannon" and column["method"] == "Jensen-Shannon distance":
        return (
            f"the same Jensen-Shannon distance on two scales: {distance:.3f} in base 2 = {column['value']:.3f} "
            "in natural log. sklambda's 0.1 in base 2 is 0.083 in natural log, so it flags a categorical shift "
            "a little earlier than Evidently's 0.1: this shift sits between the two"
        )
    ours = "KS" if stat["kind"] == "ks" else "JS₂"
    return (
        f"different statistics near their thresholds: sklambda {ours} {distance:.3f} / PSI {psi:.3f}, "
        f"Evidently {column['method']} {column['value']:.3f}"
    )


def write_section(text: str, path: Path) -> None:
    """Replace this benchmark's section of RESULTS.md (between its markers), keeping the rest.

    The file is re-read immediately before writing: other benchmarks own the other sections.
    """
    start, end = f"<!-- {SECTION}:start -->", f"<!-- {SECTION}:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}\n"
    current = path.read_text() if path.exists() else "# sklambda benchmarks\n"
    pattern = re.compile(re.escape(start) + r".*?" + re.escape(end) + r"\n?", re.S)
    if pattern.search(current):
        updated = pattern.sub(lambda _m: block, current, count=1)
    else:
        updated = current.rstrip() + "\n\n" + block
    path.write_text(updated)


# ----------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes; results to benchmarks/.work/")
    parser.add_argument("--no-evidently", action="store_true", help="skip the Evidently comparison")
    args = parser.parse_args(argv)
    plan = QUICK if args.quick else FULL
    sizes: list[int] = plan["sizes"]
    evidently_sizes: list[int] = [] if args.no_evidently else plan["evidently"]
    began = time.perf_counter()
    when = dt.datetime.now(dt.UTC)

    log("preparing data")
    info = prepare(sizes, evidently_sizes)
    baseline: Path = info["baseline"]

    measured: dict[tuple[str, int], dict[str, Any]] = {}
    for n in sizes:
        repeat = plan["repeat"][n]
        for mode in ("columns", "chunks", "jsonl", "parse"):
            log(f"  {mode:8} {n:>9,} rows x{repeat}")
            result = run_child(mode, n, baseline, info["jsonl"][n], repeat, trace=mode != "parse")
            measured[(mode, n)] = result
            log(
                f"           median {fmt_s(med(result['seconds']))}, peak RSS {fmt_mib(result['rss_peak_mib'])} MiB, "
                f"traced {fmt_mib(result['traced_peak_mib'])} MiB"
            )

    evidently: dict[int, dict[str, Any]] = {}
    if evidently_sizes:
        python = ensure_evidently()
        for n in evidently_sizes:
            log(f"  evidently {n:>9,} rows")
            evidently[n] = run_evidently(python, info["reference_csv"], info["csv"][n])
            log(
                f"           run {fmt_s(evidently[n]['run_seconds'])}, peak RSS {evidently[n]['rss_peak_mib']:,.0f} MiB"
            )
            if n not in sizes:  # our verdicts at this size come from a columns run
                measured[("columns", n)] = run_child("columns", n, baseline, Path("-"), 1, trace=False)

    log("known-shift set")
    shifts = run_known_shifts(plan["shifts"], ensure_evidently() if evidently_sizes else None)
    text = render(plan, info, measured, evidently, when, time.perf_counter() - began)
    text += "\n" + "\n".join(render_known_shifts(shifts))
    if args.quick:
        out = WORK / "RESULTS-quick-drift.md"
        out.write_text(text + "\n")
        log(f"wrote {out.relative_to(ROOT)}")
    else:
        write_section(text, RESULTS)
        log(f"updated the drift section of {RESULTS.relative_to(ROOT)}")
    print(text)
    return 0


def render(
    plan: dict[str, Any],
    info: dict[str, Any],
    measured: dict[tuple[str, int], dict[str, Any]],
    evidently: dict[int, dict[str, Any]],
    when: dt.datetime,
    wall: float,
) -> str:
    m = machine()
    v = versions()
    sizes: list[int] = plan["sizes"]
    lines = [
        "## Drift computation",
        "",
        "`benchmarks/bench_drift.py`: sklambda's drift engine (`sklambda.drift`) on captured rows, and Evidently's "
        "data-drift preset on the same rows in the same run.",
        "",
        f"- **Date:** {when:%Y-%m-%d %H:%M} UTC (benchmark wall time {wall / 60:.1f} min)",
        f"- **Machine:** {m['cpu']}, {m['cores']} cores ({m['usable']} usable), "
        f"{m['ram_gib']:.1f} GiB RAM, {m['os']}; shared and noisy, so compare the ratios"
        if m["ram_gib"]
        else f"- **Machine:** {m['cpu']}, {m['cores']} cores",
        f"- **Python:** {m['python']}; numpy {v['numpy']}, scipy {v['scipy']}, pydantic {v['pydantic']}",
        "- **Reproduce:** `.venv/bin/python benchmarks/bench_drift.py` (or `make bench`); `--quick` for a smoke run, "
        "`--no-evidently` to skip the comparison",
        f"- **Data:** 20 features (16 numeric incl. 1 boolean, 4 categorical): the 12 `sklambda.demo` churn features, "
        f"6 derived from them, 2 independent (`benchmarks/_drift_data.py`). Baseline profiled from "
        f"{D.REFERENCE_ROWS:,} reference rows (drift 0) in {fmt_s(info['profile_seconds'])}: `baseline.json` is "
        f"{info['baseline_bytes'] / 1024:.1f} KiB. Current windows: the demo's drift knob at {D.CURRENT_DRIFT}.",
        "- **Paths:** *columns* = one `add_columns` call with the window as numpy arrays; *chunks* = the same arrays "
        "in 65,536-row slices; *JSON lines* = a capture file read line by line, `json.loads` (records are envelopes "
        "with the 20 features inside, ~620 bytes a line), `add_records` on the stream. Each ends with `evaluate`. "
        "Each measurement runs in a fresh process; times are medians of the repeats. *RSS before* is the process "
        "after imports (Python, numpy, scipy, pydantic), a warm-up and, for the array paths, with the arrays in "
        "memory; *peak* is the high-water mark during the timed runs (`VmHWM`, reset just before them); *traced* is "
        "tracemalloc's peak during one separate, untimed computation: what the computation itself allocates.",
        "",
        "### Throughput and memory",
        "",
        "| rows | path | time | rows/s | RSS before → peak, MiB | traced peak MiB |",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for n in sizes:
        for mode, label in (
            ("columns", "columns"),
            ("chunks", "chunks"),
            ("jsonl", "JSON lines"),
            ("parse", "↳ `json.loads` alone"),
        ):
            r = measured[(mode, n)]
            t = med(r["seconds"])
            traced = fmt_mib(r["traced_peak_mib"]) if mode != "parse" else "–"
            lines.append(
                f"| {n:,} | {label} | {fmt_s(t)} | {fmt_rate(n, t)} | "
                f"{fmt_mib(r['rss_before_mib'])} → {fmt_mib(r['rss_peak_mib'])} | {traced} |"
            )
    big = sizes[-1]
    jl, parse, cols = measured[("jsonl", big)], measured[("parse", big)], measured[("columns", big)]
    share = med(parse["seconds"]) / med(jl["seconds"])
    lines += [
        "",
        f"At {big:,} rows the JSON-lines path spends {share:.0%} of its time in `json.loads`; the aggregation "
        f"itself runs at {fmt_rate(big, med(jl['seconds']) - med(parse['seconds']))} rows/s. The aggregate "
        f"(`to_dict()`, the partial a Distributed Map worker would store) is {cols['aggregate_bytes'] / 1024:.1f} KiB "
        "whatever the number of rows.",
        "",
        "### How memory grows with rows",
        "",
        "tracemalloc peak of the computation, MiB (for JSON lines, the process's RSS peak during the runs in "
        "brackets: the array paths' RSS is dominated by the arrays themselves):",
        "",
        "| rows | columns, one call | chunks | JSON lines |",
        "|---:|---:|---:|---:|",
    ]
    for n in sizes:
        lines.append(
            f"| {n:,} | {fmt_mib(measured[('columns', n)]['traced_peak_mib'])} | "
            f"{fmt_mib(measured[('chunks', n)]['traced_peak_mib'])} | "
            f"{fmt_mib(measured[('jsonl', n)]['traced_peak_mib'])} "
            f"({fmt_mib(measured[('jsonl', n)]['rss_peak_mib'])}) |"
        )
    lines += [
        "",
        "One `add_columns` call converts and bins each whole column at once, so its temporaries grow with the "
        "window; fed in chunks (or as a record stream) the engine's memory is flat: it holds only counts.",
    ]
    if evidently:
        lines += render_evidently(plan, measured, evidently)
    return "\n".join(lines)


def render_evidently(
    plan: dict[str, Any], measured: dict[tuple[str, int], dict[str, Any]], evidently: dict[int, dict[str, Any]]
) -> list[str]:
    any_run = next(iter(evidently.values()))
    ev = any_run["versions"]
    lines = [
        "",
        "### Against Evidently's data-drift preset",
        "",
        f"Evidently {ev['evidently']} (pandas {ev['pandas']}, numpy {ev['numpy']}, scipy {ev['scipy']}) in its own "
        "venv, `Report([DataDriftPreset()])` with its defaults (more than 1,000 reference rows: normalised "
        "Wasserstein distance for numeric columns with more than 5 distinct values, Jensen-Shannon distance "
        "(natural log) otherwise, drift at ≥ 0.1), on CSV copies of the same rows (`benchmarks/drift_evidently.py`). "
        f"Evidently needs the {D.REFERENCE_ROWS:,} raw reference rows at every run; sklambda needs only its "
        "baseline profile. *Compute* is Evidently's `Report.run` on DataFrames already in memory vs sklambda's "
        "*columns* path; *end to end* adds reading the data (CSV into pandas vs the JSON-lines path); Evidently's "
        f"import alone takes {any_run['import_seconds']:.1f} s and is left out. *Process peak* is each process's "
        "RSS high-water mark, imports and data included: what a Lambda function's memory setting must cover.",
        "",
        "| rows | compute: sklambda | Evidently | ratio | end to end: sklambda | Evidently | ratio "
        "| process peak MiB: sklambda (columns / JSON lines) | Evidently | ratio |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for n, e in sorted(evidently.items()):
        cols = measured[("columns", n)]
        ours_compute = med(cols["seconds"])
        jl = measured.get(("jsonl", n))
        ours_e2e = med(jl["seconds"]) if jl else None
        theirs_e2e = e["load_seconds"] + e["run_seconds"]
        ours_rss = cols["process_peak_mib"]
        e2e = (
            f"{fmt_s(ours_e2e)} | {fmt_s(theirs_e2e)} | {theirs_e2e / ours_e2e:.1f}×"
            if ours_e2e
            else f"– | {fmt_s(theirs_e2e)} | –"
        )
        jl_rss = f" / {jl['process_peak_mib']:,.0f}" if jl else ""
        lines.append(
            f"| {n:,} | {fmt_s(ours_compute)} | {fmt_s(e['run_seconds'])} | {e['run_seconds'] / ours_compute:.0f}× "
            f"| {e2e} | {ours_rss:,.0f}{jl_rss} | {e['rss_peak_mib']:,.0f} | {e['rss_peak_mib'] / ours_rss:.1f}× |"
        )
    at = plan["verdicts_at"]
    if at in evidently:
        lines += render_verdicts(at, measured[("columns", at)], evidently[at], measured, evidently)
    return lines


def render_verdicts(
    at: int,
    ours: dict[str, Any],
    theirs: dict[str, Any],
    measured: dict[tuple[str, int], dict[str, Any]],
    evidently: dict[int, dict[str, Any]],
) -> list[str]:
    types = {f.name: f.type for f in D.SCHEMA.features}
    lines = [
        "",
        f"Per-feature verdicts at {at:,} current rows (PSI and distance are sklambda's; JS₂ is base 2, Evidently's "
        "JSₑ natural log, so JS₂ = JSₑ / √ln 2 ≈ 1.20 × JSₑ at the same 0.1 threshold):",
        "",
        "| feature | type | sklambda | Evidently | agree |",
        "|---|---|---|---|:---:|",
    ]
    agree = 0
    for name in D.SCHEMA.names:
        mine = ours["verdicts"][name]
        column = theirs["columns"].get(name)
        same = column is not None and (mine == "drift") == bool(column["drift"])
        agree += same
        lines.append(
            f"| {name} | {types[name]} | {verdict_cell(mine, ours['stats'][name])} | "
            f"{evidently_cell(column) if column else '–'} | {'✓' if same else '✗'} |"
        )
    drifted_ours = sum(v == "drift" for v in ours["verdicts"].values())
    lines += [
        "",
        f"Agreement: {agree} of {len(D.SCHEMA.names)} features. Dataset: sklambda drift score "
        f"{ours['drift_score']:.2f} ({drifted_ours} of {len(ours['verdicts'])}); Evidently "
        f"{theirs['dataset'].get('share', float('nan')):.2f} ({theirs['dataset'].get('drifted', 0):.0f} drifted).",
    ]
    for name in D.SCHEMA.names:
        column = theirs["columns"].get(name)
        if column is not None and (ours["verdicts"][name] == "drift") != bool(column["drift"]):
            lines.append(f"- {name}: {why_disagree(ours['stats'][name], column)}")
    lines.append("")
    for n, e in sorted(evidently.items()):
        if n == at or ("columns", n) not in measured:
            continue
        mine = measured[("columns", n)]["verdicts"]
        same = sum((mine[c] == "drift") == bool(e["columns"][c]["drift"]) for c in D.SCHEMA.names if c in e["columns"])
        lines.append(f"At {n:,} rows: {same} of {len(D.SCHEMA.names)} agree.")
    return lines


# ----------------------------------------------------------------------------- known shifts
def _columns_verdicts(baseline: dict[str, Any], columns: dict[str, Any]) -> dict[str, Any]:
    from sklambda.monitoring.drift import DriftAggregate, evaluate

    n = len(next(iter(columns.values())))
    aggregate = DriftAggregate(baseline)
    for start in range(0, n, 65_536):
        aggregate.add_columns({k: v[start : start + 65_536] for k, v in columns.items()})
    result = evaluate(baseline, aggregate)
    return {
        f.name: {
            "verdict": f.verdict,
            "psi": f.psi,
            "distance": f.distance,
            "kind": f.distance_name,
            "wasserstein": f.wasserstein,
        }
        for f in result.features
    }


def _window_cost(reference: dict[str, Any], columns: dict[str, Any], repeat: int = 3) -> dict[str, Any]:
    """What the window's extra parts cost, measured against the drift aggregate alone in the same run:
    the same columns into a DriftAggregate, and into a WindowAggregate that also keeps the served
    scores (a calibration fitted on synthetic held-out probabilities) and the reconstruction errors
    (the PCA fitted on the reference rows). Also the multivariate verdict on this set."""
    import numpy as np

    from sklambda.monitoring.drift import DriftAggregate, baseline_profile
    from sklambda.monitoring.multivariate import fit_multivariate
    from sklambda.monitoring.performance import fit_calibration
    from sklambda.monitoring.window import VersionReferences, WindowAggregate

    matrix = S.to_matrix(reference)
    baseline = baseline_profile(matrix, S.SCHEMA)
    multivariate, _ = fit_multivariate(matrix, S.SCHEMA)
    rng = np.random.default_rng(5)
    score = 1 / (1 + np.exp(-np.asarray(reference["mean_shift"], dtype=float)))
    proba = np.column_stack([1 - score, score])
    labels = (rng.random(score.size) < score).astype(int)
    calibration, _ = fit_calibration([0, 1], proba, (score >= 0.5).astype(int).tolist(), labels.tolist())
    refs = VersionReferences(baseline=baseline, calibration=calibration, multivariate=multivariate)
    n = len(columns["mean_shift"])
    served = 1 / (1 + np.exp(-np.asarray(columns["mean_shift"], dtype=float)))
    probabilities = np.column_stack([1 - served, served]).tolist()
    predictions = (served >= 0.5).astype(int).tolist()
    chunk = 65_536

    def drift_only() -> Any:
        aggregate = DriftAggregate(baseline)
        for start in range(0, n, chunk):
            aggregate.add_columns({k: v[start : start + chunk] for k, v in columns.items()})
        return aggregate

    def window() -> Any:
        aggregate = WindowAggregate(refs)
        for start in range(0, n, chunk):
            aggregate.add_columns(
                {k: v[start : start + chunk] for k, v in columns.items()},
                predictions=predictions[start : start + chunk],
                probabilities=probabilities[start : start + chunk],
            )
        return aggregate

    times: dict[str, list[float]] = {"drift": [], "window": []}
    last: Any = None
    for _ in range(repeat):
        for name, run in (("drift", drift_only), ("window", window)):
            started = time.perf_counter()
            last = run() if name == "window" else run()
            times[name].append(time.perf_counter() - started)
    result = last.evaluate()
    size = len(json.dumps(last.to_dict(), separators=(",", ":")))
    return {
        "drift_seconds": min(times["drift"]),
        "window_seconds": min(times["window"]),
        "window_bytes": size,
        "multivariate": result.multivariate.verdict,
        "multivariate_reasons": result.multivariate.error.reasons if result.multivariate.error else [],
        "components": result.multivariate.components,
        "columns": result.multivariate.columns,
    }


def run_known_shifts(sizes: list[int], python: Path | None) -> dict[str, Any]:
    from sklambda.monitoring.drift import baseline_profile

    DATA.mkdir(parents=True, exist_ok=True)
    reference = S.reference()
    baseline = baseline_profile(S.to_matrix(reference), S.SCHEMA)
    reference_csv = DATA / f"shifts-reference-v{SHIFTS_VERSION}.csv"
    if python is not None and not reference_csv.exists():
        S.write_csv(reference_csv, reference)
    out: dict[str, Any] = {"sizes": sizes, "ours": {}, "theirs": {}, "cost": {}, "evidently": python is not None}
    for n in sizes:
        log(f"  known shifts {n:>9,} rows")
        current = S.current(n)
        out["ours"][n] = _columns_verdicts(baseline, current)
        out["cost"][n] = _window_cost(reference, current)
        if python is not None:
            current_csv = DATA / f"shifts-current-v{SHIFTS_VERSION}-{n}.csv"
            if not current_csv.exists():
                S.write_csv(current_csv, current)
            out["theirs"][n] = run_evidently(python, reference_csv, current_csv, S.NUMERIC, S.CATEGORICAL)
        del current
    return out


def _ours_cell(stat: dict[str, Any]) -> str:
    kind = "KS" if stat["kind"] == "ks" else "JS₂"
    parts = [f"PSI {stat['psi']:.3f}", f"{kind} {stat['distance']:.3f}"]
    if stat.get("wasserstein") is not None:
        parts.append(f"W₁/σ {stat['wasserstein']:.3f}")
    return f"**{stat['verdict']}** ({', '.join(parts)})" if stat["verdict"] == "drift" else f"ok ({', '.join(parts)})"


def render_known_shifts(shifts: dict[str, Any]) -> list[str]:
    sizes: list[int] = shifts["sizes"]
    types = {f.name: f.type for f in S.SCHEMA.features}
    lines = [
        "",
        "### Known shifts: sklambda against Evidently",
        "",
        "`benchmarks/_drift_shifts.py`: 12 features whose shift is known by construction, 4 shifted materially "
        "(must be flagged) and 8 not at all (must not be), reference 50,000 rows. sklambda's verdict uses PSI ≥ 0.2, "
        "KS / JS₂ ≥ 0.1 and W₁/σ ≥ 0.1 (beyond 3× its sampling noise); Evidently's preset its normalised "
        "Wasserstein distance (numeric, > 5 distinct values) or Jensen-Shannon distance (natural log), ≥ 0.1. "
        "Both on the same rows in the same run.",
        "",
    ]
    header = "| feature | type | shift |"
    rule = "|---|---|---|"
    for n in sizes:
        header += f" sklambda, {n:,} rows |" + (f" Evidently, {n:,} rows |" if shifts["evidently"] else "")
        rule += "---|" + ("---|" if shifts["evidently"] else "")
    lines += [header, rule]
    correct = {n: [0, 0] for n in sizes}
    for name in S.SCHEMA.names:
        expected = name in S.SHIFTED
        row = f"| {name} | {types[name]} | {S.SHIFTED.get(name, 'none')} |"
        for n in sizes:
            stat = shifts["ours"][n][name]
            correct[n][0] += (stat["verdict"] == "drift") == expected
            row += f" {_ours_cell(stat)} |"
            if shifts["evidently"]:
                column = shifts["theirs"][n]["columns"][name]
                correct[n][1] += bool(column["drift"]) == expected
                cell = evidently_cell(column)
                row += f" {'**' + cell + '**' if column['drift'] else cell} |"
        lines.append(row)
    lines.append("")
    for n in sizes:
        theirs = f"; Evidently {correct[n][1]} of 12" if shifts["evidently"] else ""
        lines.append(f"- {n:,} rows: sklambda right on {correct[n][0]} of 12 features{theirs}.")
    first = shifts["ours"][sizes[0]]
    mix = first["category_mix"]["distance"]
    scale, shape = first["exp_scale"], first["lognormal_shape"]
    lines += [
        "",
        f"KS and PSI alone miss the scale and shape changes (KS {scale['distance']:.2f} / {shape['distance']:.2f}, "
        f"PSI {scale['psi']:.2f} / {shape['psi']:.2f} at {sizes[0]:,} rows): they measure how much mass crosses a "
        "point, and a change of scale or shape moves little mass across any one point while moving most of it a "
        "little. W₁ integrates those small moves. Evidently's Jensen-Shannon distance in natural log puts the "
        f"categorical mix change (JS₂ {mix:.3f} = JSₑ {mix * math.sqrt(math.log(2)):.3f}) under its 0.1.",
        "",
        "W₁/σ comes from the mergeable fine bins (`sklambda.monitoring.drift._wasserstein`): each bin's integral of "
        "the CDF difference is exact given the mean position of its values, which the aggregate keeps as exact "
        "integer sums (1/1024 of the bin width per value), and the open end bins are exact from the summed "
        "distances of the values beyond the training range; `tests/unit/test_drift_wasserstein.py` holds it to "
        "`scipy.stats.wasserstein_distance` on the raw rows (within 5e-4 σ for real shifts).",
        "",
        "What the window's other parts cost, the same columns in the same process (best of 3): the drift aggregate "
        "alone, and the monitoring window that also counts served scores for the label-free estimate and each "
        "row's PCA reconstruction error (multivariate drift):",
        "",
        "| rows | drift aggregate | + scores + reconstruction errors | ratio | window `to_dict()` KiB | "
        "multivariate verdict |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for n in sizes:
        c = shifts["cost"][n]
        lines.append(
            f"| {n:,} | {fmt_s(c['drift_seconds'])} | {fmt_s(c['window_seconds'])} | "
            f"{c['window_seconds'] / c['drift_seconds']:.2f}× | {c['window_bytes'] / 1024:.1f} | "
            f"{c['multivariate']} ({'; '.join(c['multivariate_reasons'])}) |"
        )
    lines += [
        "",
        "(The multivariate verdict drifts here because four marginals moved; it is the only signal when the "
        "features change how they relate but not one by one: `tests/unit/test_multivariate.py`.)",
    ]
    return lines


if __name__ == "__main__":
    raise SystemExit(main())
