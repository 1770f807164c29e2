"""Evidently's data-drift preset on the benchmark's data, for comparison with sklambda's engine.

Runs in its own venv (benchmarks/.work/venv-evidently: evidently + pandas), never the project's:
Evidently is not a dependency of sklambda. bench_drift.py creates that venv when it is missing and
runs this script as a subprocess:

    benchmarks/.work/venv-evidently/bin/python benchmarks/drift_evidently.py \\
        --reference REF.csv --current CUR.csv --numerical a,b --categorical c,d

Prints one JSON line: wall times (import, reading the CSVs, running the report); RSS after loading
the data, its peak while the report runs (VmHWM after a reset) and the whole process's peak;
Evidently's per-column method, value, threshold and drift verdict; the versions.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from importlib import metadata
from pathlib import Path


def process_peak_mib() -> float:
    """This process's RSS high-water mark so far (VmHWM), imports included.

    Not ru_maxrss: on Linux that survives execve, so a child spawned by a big parent reports the
    parent's size. Falls back to it where /proc is missing.
    """
    hwm = status_mib("VmHWM")
    return hwm if hwm is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def status_mib(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak() -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0): the next peak is the report's alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reference", required=True)
    parser.add_argument("--current", required=True)
    parser.add_argument("--numerical", required=True, help="comma-separated column names")
    parser.add_argument("--categorical", required=True, help="comma-separated column names")
    args = parser.parse_args()
    numerical = [c for c in args.numerical.split(",") if c]
    categorical = [c for c in args.categorical.split(",") if c]

    started = time.perf_counter()
    import pandas as pd
    from evidently import DataDefinition, Dataset, Report
    from evidently.presets import DataDriftPreset

    imported = time.perf_counter()
    dtypes = {c: "category" for c in categorical}
    reference = pd.read_csv(args.reference, dtype=dtypes)
    current = pd.read_csv(args.current, dtype=dtypes)
    for frame in (reference, current):  # booleans as 0/1 numbers, as sklambda's matrix holds them
        for column in numerical:
            if frame[column].dtype == bool:
                frame[column] = frame[column].astype("int8")
    loaded = time.perf_counter()
    rss_loaded = status_mib("VmRSS")
    peak_so_far = process_peak_mib()
    windowed = reset_peak()

    definition = DataDefinition(numerical_columns=numerical, categorical_columns=categorical)
    report = Report([DataDriftPreset()])
    snapshot = report.run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    metrics = snapshot.dict()["metrics"]
    finished = time.perf_counter()
    run_peak = status_mib("VmHWM") if windowed else None

    columns: dict[str, dict] = {}
    dataset: dict = {}
    for metric in metrics:
        config = metric.get("config", {})
        kind = str(config.get("type", ""))
        if kind.endswith(":ValueDrift"):
            value = float(metric["value"])
            threshold = float(config["threshold"])
            method = str(config.get("method", ""))
            # Distances drift at or above the threshold; p-value tests drift below it.
            is_p_value = "p_value" in method.lower() or "test" in method.lower()
            drift = value < threshold if is_p_value else value >= threshold
            columns[config["column"]] = {"method": method, "value": value, "threshold": threshold, "drift": drift}
        elif kind.endswith(":DriftedColumnsCount"):
            dataset = {
                "drifted": metric["value"]["count"],
                "share": metric["value"]["share"],
                "drift_share": config.get("drift_share"),
            }
    print(
        json.dumps(
            {
                "rows_reference": len(reference),
                "rows_current": len(current),
                "import_seconds": imported - started,
                "load_seconds": loaded - imported,
                "run_seconds": finished - loaded,
                "rss_after_load_mib": rss_loaded,
                "rss_run_peak_mib": run_peak,
                "rss_peak_mib": max(peak_so_far, process_peak_mib()),
                "columns": columns,
                "dataset": dataset,
                "versions": {name: metadata.version(name) for name in ("evidently", "pandas", "numpy", "scipy")},
            }
        )
    )


if __name__ == "__main__":
    main()
