"""A realistic synthetic tabular dataset: customer churn for a subscription business.

Named numeric and categorical features with plausible marginals and correlations, a target that
depends on several of them non-linearly, and a ``drift`` knob (0 = the training distribution,
1 = a strongly shifted population) used by tests, benchmarks and ``sklambda traffic``.
Only numpy is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from sklambda.registry.features import FeatureSchema, FeatureSpec

PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east", "west", "central"]
CHANNELS = ["web", "mobile", "store", "partner"]
PAYMENTS = ["card", "bank_transfer", "paypal", "invoice"]

DEMO_SCHEMA = FeatureSchema(
    features=[
        FeatureSpec(name="age", type="integer", description="Customer age in years"),
        FeatureSpec(name="income", type="number", description="Yearly income, EUR"),
        FeatureSpec(name="tenure_months", type="integer", description="Months as a customer"),
        FeatureSpec(name="monthly_spend", type="number", description="Average monthly bill, EUR"),
        FeatureSpec(name="support_calls", type="integer", description="Support calls, last 90 days"),
        FeatureSpec(name="late_payments", type="integer", description="Late payments, last 12 months"),
        FeatureSpec(name="data_usage_gb", type="number", description="Monthly data usage, GB"),
        FeatureSpec(name="satisfaction", type="number", description="Last survey score, 0-10"),
        FeatureSpec(name="plan", type="category", categories=PLANS),
        FeatureSpec(name="region", type="category", categories=REGIONS),
        FeatureSpec(name="channel", type="category", categories=CHANNELS),
        FeatureSpec(name="payment_method", type="category", categories=PAYMENTS),
    ]
)
TARGET = "churned"


def _choice(rng: np.random.Generator, values: list[str], p: np.ndarray, n: int) -> np.ndarray:
    p = np.asarray(p, dtype=float)
    return rng.choice(np.array(values, dtype=object), size=n, p=p / p.sum())


def generate(n: int, *, seed: int = 0, drift: float = 0.0) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Return ``(columns, churned)``: n rows of the demo features and the 0/1 target.

    ``drift`` in [0, 1] moves the population: younger, lower incomes, more support calls and
    late payments, a mobile-heavy channel mix, more basic plans, lower satisfaction.
    """
    if not 0.0 <= drift <= 1.0:
        raise ValueError("drift must be between 0 and 1")
    rng = np.random.default_rng(seed)
    d = drift
    age = np.clip(rng.normal(44 - 10 * d, 13, n), 18, 90).round()
    income = np.exp(rng.normal(10.6 - 0.35 * d, 0.45, n)).round(2)
    tenure = np.clip(rng.gamma(2.0, 14 * (1 - 0.5 * d), n), 0, 240).round()
    plan = _choice(rng, PLANS, np.array([0.45, 0.35, 0.20]) * (1 - d) + np.array([0.70, 0.22, 0.08]) * d, n)
    plan_base = np.select([plan == "basic", plan == "standard"], [25.0, 45.0], 80.0)
    monthly_spend = np.clip(plan_base * rng.lognormal(0, 0.25, n) + income / 20000, 5, None).round(2)
    support_calls = rng.poisson(1.2 + 2.0 * d, n)
    late_payments = rng.poisson(0.4 + 1.1 * d + (income < 25000) * 0.6, n)
    data_usage = np.clip(rng.gamma(3.0, 4.0 + 6 * d, n), 0, None).round(2)
    satisfaction = np.clip(rng.normal(7.2 - 1.8 * d - 0.35 * support_calls, 1.5, n), 0, 10).round(1)
    region = _choice(rng, REGIONS, np.array([0.22, 0.2, 0.2, 0.2, 0.18]), n)
    channel = _choice(
        rng, CHANNELS, np.array([0.40, 0.30, 0.20, 0.10]) * (1 - d) + np.array([0.2, 0.65, 0.1, 0.05]) * d, n
    )
    payment = _choice(rng, PAYMENTS, np.array([0.5, 0.25, 0.15, 0.10]), n)

    logit = (
        -1.1
        - 0.025 * (tenure - 20)
        + 0.45 * support_calls
        + 0.55 * late_payments
        - 0.35 * (satisfaction - 7)
        + 0.6 * (plan == "basic")
        - 0.4 * (plan == "premium")
        + 0.35 * (channel == "mobile")
        + 0.3 * (payment == "invoice")
        - 0.000008 * (income - 40000)
        + 0.02 * np.maximum(0, 30 - age)
    )
    churned = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(int)
    columns = {
        "age": age,
        "income": income,
        "tenure_months": tenure,
        "monthly_spend": monthly_spend,
        "support_calls": support_calls.astype(float),
        "late_payments": late_payments.astype(float),
        "data_usage_gb": data_usage,
        "satisfaction": satisfaction,
        "plan": plan,
        "region": region,
        "channel": channel,
        "payment_method": payment,
    }
    return columns, churned


def to_matrix(columns: dict[str, np.ndarray], schema: FeatureSchema = DEMO_SCHEMA) -> np.ndarray:
    """Columns → the object matrix the pipeline takes, in schema order."""
    dtype = np.float64 if schema.all_numeric else object
    return np.column_stack([columns[name].astype(dtype) for name in schema.names])


def to_instances(columns: dict[str, np.ndarray], schema: FeatureSchema = DEMO_SCHEMA) -> list[dict[str, Any]]:
    """Columns → JSON-ready request instances (objects keyed by feature name)."""
    n = len(next(iter(columns.values())))
    out: list[dict[str, Any]] = []
    for i in range(n):
        row: dict[str, Any] = {}
        for spec in schema.features:
            value = columns[spec.name][i]
            if spec.type == "integer":
                row[spec.name] = int(value)
            elif spec.type == "number":
                row[spec.name] = float(value)
            else:
                row[spec.name] = str(value)
        out.append(row)
    return out
