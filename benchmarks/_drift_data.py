"""Benchmark data for the drift computation: the demo churn features plus 8 more, 20 in all.

The 12 demo features come from ``sklambda.demo.generate`` (with its ``drift`` knob). Six extra
columns are derived from them (so they shift with the population, as derived features do) and
two are independent of it (so they stay put). Shared by the orchestrator (bench_drift.py) and
the measured child (_drift_child.py); Evidently's child reads the CSV files written here.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from sklambda.lifecycle import demo
from sklambda.registry.features import FeatureSchema, FeatureSpec

EXTRA_FEATURES = [
    FeatureSpec(name="spend_to_income", type="number", description="12 x monthly spend / income"),
    FeatureSpec(name="gb_per_euro", type="number", description="data usage per euro of spend"),
    FeatureSpec(name="calls_per_year", type="number", description="support calls per year of tenure"),
    FeatureSpec(name="log_income", type="number", description="log of the yearly income"),
    FeatureSpec(name="has_late_payment", type="boolean", description="any late payment"),
    FeatureSpec(name="engagement", type="number", description="an engagement score"),
    FeatureSpec(name="contract_months_left", type="integer", description="independent of the population shift"),
    FeatureSpec(name="discount_pct", type="number", description="independent of the population shift"),
]
SCHEMA = FeatureSchema(features=[*demo.DEMO_SCHEMA.features, *EXTRA_FEATURES])
NUMERIC = [f.name for f in SCHEMA.features if f.type != "category"]
CATEGORICAL = [f.name for f in SCHEMA.features if f.type == "category"]
REFERENCE_ROWS = 50_000
REFERENCE_SEED = 0
CURRENT_DRIFT = 0.5  # a moderate shift: some features drift, some do not
BLOCK = 250_000  # generate in blocks: 1M rows at once would hold every intermediate array


def _block(n: int, seed: int, drift: float) -> dict[str, np.ndarray]:
    columns, _ = demo.generate(n, seed=seed, drift=drift)
    rng = np.random.default_rng(seed + 7_919)
    income, spend = columns["income"], columns["monthly_spend"]
    extra = {
        "spend_to_income": np.round(12 * spend / income, 5),
        "gb_per_euro": np.round(columns["data_usage_gb"] / spend, 4),
        "calls_per_year": np.round(columns["support_calls"] / (columns["tenure_months"] / 12 + 1), 3),
        "log_income": np.round(np.log(income), 4),
        "has_late_payment": (columns["late_payments"] > 0).astype(float),
        "engagement": np.round(
            0.6 * columns["satisfaction"] + 0.02 * columns["tenure_months"] + rng.normal(0, 1, n), 3
        ),
        "contract_months_left": rng.integers(0, 25, n).astype(float),
        "discount_pct": np.round(rng.beta(2, 8, n) * 100, 1),
    }
    return {**columns, **extra}


def generate(n: int, *, seed: int, drift: float) -> dict[str, np.ndarray]:
    """n rows of the 20 features, in blocks (deterministic for a given n, seed and drift)."""
    blocks = [_block(min(BLOCK, n - start), seed + start, drift) for start in range(0, n, BLOCK)]
    return {name: np.concatenate([b[name] for b in blocks]) for name in SCHEMA.names}


def reference() -> dict[str, np.ndarray]:
    return generate(REFERENCE_ROWS, seed=REFERENCE_SEED, drift=0.0)


def current(n: int) -> dict[str, np.ndarray]:
    return generate(n, seed=1_000 + n, drift=CURRENT_DRIFT)


def to_matrix(columns: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([columns[name].astype(object) for name in SCHEMA.names])


def _python_values(columns: dict[str, np.ndarray]) -> list[list[Any]]:
    """Per column, the JSON values a captured request holds (ints for integers, bools for booleans)."""
    out = []
    for spec in SCHEMA.features:
        col = columns[spec.name]
        if spec.type == "integer":
            out.append(col.astype(np.int64).tolist())
        elif spec.type == "boolean":
            out.append(col.astype(bool).tolist())
        else:
            out.append(col.tolist())
    return out


def write_jsonl(path: Path, columns: dict[str, np.ndarray]) -> int:
    """Capture records as Firehose delivers them: one JSON object per line, features inside."""
    n = len(columns["age"])
    names = SCHEMA.names
    with open(path, "w") as out:
        for start in range(0, n, BLOCK):
            block = {k: v[start : start + BLOCK] for k, v in columns.items()}
            values = _python_values(block)
            lines = []
            for i, row in enumerate(zip(*values, strict=True)):
                record = {
                    "prediction_id": f"p-{start + i:09d}",
                    "model": "bench",
                    "version": "1",
                    "at": "2026-05-01T12:00:00.000Z",
                    "features": dict(zip(names, row, strict=True)),
                }
                lines.append(json.dumps(record, separators=(",", ":")))
            out.write("\n".join(lines) + "\n")
    return path.stat().st_size


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> int:
    """The same rows as CSV for Evidently's child (pandas reads it; no pyarrow needed here)."""
    n = len(columns["age"])
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(SCHEMA.names)
        for start in range(0, n, BLOCK):
            block = {k: v[start : start + BLOCK] for k, v in columns.items()}
            values = _python_values(block)
            writer.writerows(zip(*values, strict=True))
    return path.stat().st_size
