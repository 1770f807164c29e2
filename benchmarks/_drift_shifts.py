"""A known-shift set for the drift verdicts: every feature's shift is known by construction.

Four features shift materially and must be flagged; eight do not shift and must not be:

| feature | reference | current | what it tests |
|---|---|---|---|
| mean_shift | normal(0, 1) | normal(0.5, 1) | a location shift of half a standard deviation |
| exp_scale | exponential(1) | exponential(1.2) | a 20 % change of scale (KS 0.07, PSI 0.03: under their thresholds) |
| lognormal_shape | log-normal(0, 0.5) | log-normal(0, 0.6) | a change of shape, same median (KS 0.04, PSI 0.04) |
| category_mix | 40/30/20/10 % | 30/30/25/15 % | a categorical mix change (JS base 2: 0.104; natural log: 0.087) |
| *_same | ... | the same distribution | no shift (normal, exponential, log-normal(0, 1.5), gamma, ...) |

The unshifted ones: normal, exponential, heavy-tailed log-normal(0, 1.5), gamma, uniform, Poisson
counts, a 30 % flag and five categories.

Shared by bench_drift.py (sklambda's verdicts in-process, CSV copies for Evidently).
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import numpy as np

from sklambda.registry.features import FeatureSchema, FeatureSpec

MIX = ["a", "b", "c", "d"]
MIX_REFERENCE = [0.4, 0.3, 0.2, 0.1]
MIX_CURRENT = [0.3, 0.3, 0.25, 0.15]
LETTERS = ["north", "south", "east", "west", "central"]

SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="mean_shift", type="number"),
        FeatureSpec(name="exp_scale", type="number"),
        FeatureSpec(name="lognormal_shape", type="number"),
        FeatureSpec(name="category_mix", type="category", categories=MIX),
        FeatureSpec(name="normal_same", type="number"),
        FeatureSpec(name="exp_same", type="number"),
        FeatureSpec(name="heavy_tail_same", type="number"),
        FeatureSpec(name="gamma_same", type="number"),
        FeatureSpec(name="uniform_same", type="number"),
        FeatureSpec(name="counts_same", type="integer"),
        FeatureSpec(name="flag_same", type="boolean"),
        FeatureSpec(name="category_same", type="category", categories=LETTERS),
    ]
)
SHIFTED = {
    "mean_shift": "mean +0.5 sd",
    "exp_scale": "scale ×1.2",
    "lognormal_shape": "shape σ 0.5 → 0.6",
    "category_mix": "mix 40/30/20/10 → 30/30/25/15",
}
NUMERIC = [f.name for f in SCHEMA.features if f.type != "category"]
CATEGORICAL = [f.name for f in SCHEMA.features if f.type == "category"]
REFERENCE_ROWS = 50_000
BLOCK = 250_000


def _block(n: int, rng: np.random.Generator, shifted: bool) -> dict[str, np.ndarray]:
    s = 1.0 if shifted else 0.0
    return {
        "mean_shift": rng.normal(0.5 * s, 1.0, n),
        "exp_scale": rng.exponential(1.0 + 0.2 * s, n),
        "lognormal_shape": rng.lognormal(0.0, 0.5 + 0.1 * s, n),
        "category_mix": rng.choice(np.array(MIX, dtype=object), n, p=MIX_CURRENT if shifted else MIX_REFERENCE),
        "normal_same": rng.normal(10.0, 3.0, n),
        "exp_same": rng.exponential(2.0, n),
        "heavy_tail_same": rng.lognormal(0.0, 1.5, n),
        "gamma_same": rng.gamma(2.0, 1.5, n),
        "uniform_same": rng.uniform(0.0, 100.0, n),
        "counts_same": rng.poisson(3.0, n).astype(float),
        "flag_same": (rng.random(n) < 0.3).astype(float),
        "category_same": rng.choice(np.array(LETTERS, dtype=object), n, p=[0.3, 0.25, 0.2, 0.15, 0.1]),
    }


def generate(n: int, *, seed: int, shifted: bool) -> dict[str, np.ndarray]:
    blocks = []
    for start in range(0, n, BLOCK):
        rng = np.random.default_rng([seed, start])
        blocks.append(_block(min(BLOCK, n - start), rng, shifted))
    return {name: np.concatenate([b[name] for b in blocks]) for name in SCHEMA.names}


def reference() -> dict[str, np.ndarray]:
    return generate(REFERENCE_ROWS, seed=1, shifted=False)


def current(n: int) -> dict[str, np.ndarray]:
    return generate(n, seed=2_000 + n, shifted=True)


def to_matrix(columns: dict[str, np.ndarray]) -> np.ndarray:
    return np.column_stack([columns[name].astype(object) for name in SCHEMA.names])


def write_csv(path: Path, columns: dict[str, np.ndarray]) -> int:
    n = len(columns[SCHEMA.names[0]])
    with open(path, "w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(SCHEMA.names)
        for start in range(0, n, BLOCK):
            values: list[Any] = []
            for spec in SCHEMA.features:
                col = columns[spec.name][start : start + BLOCK]
                if spec.type == "integer":
                    values.append(col.astype(np.int64).tolist())
                elif spec.type == "boolean":
                    values.append(col.astype(np.int64).tolist())  # 0/1, as sklambda's matrix holds booleans
                elif spec.type == "number":
                    values.append([repr(float(v)) for v in col])
                else:
                    values.append(col.tolist())
            writer.writerows(zip(*values, strict=True))
    return path.stat().st_size
