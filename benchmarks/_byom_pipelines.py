"""The bring-your-own-model benchmark's cases: scikit-learn's bundled data sets (no network) and one generated
mixed numeric/string data set, each with a pipeline fitted the way a user fits it (pandas DataFrames,
``as_frame=True``, a train/test split).

Only the orchestrating parent imports this (it needs scikit-learn and pandas); the measured children do not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

TEST_SIZE = 0.25
SEED = 0
MIXED_ROWS = 3000
MIXED_NUMERIC = ["age", "income", "tenure_months", "monthly_spend"]
MIXED_CATEGORIES = {
    "plan": ["basic", "pro", "team", "enterprise"],
    "region": ["north", "south", "east", "west", "central"],
    "channel": ["web", "store", "phone"],
}
MISSING_SHARE = 0.06  # of each column with missing values


@dataclass(frozen=True)
class Case:
    name: str  # the registry model name
    label: str  # what the table calls the pipeline
    dataset: str
    build: Callable[[], Any]  # an unfitted pipeline
    expect: str  # "lean" or "sklearn": what the benchmark expects to serve it (reported, not enforced)


# ----------------------------------------------------------------------------- data
def dataset(name: str) -> tuple[Any, Any]:
    """(X DataFrame, y Series) of a bundled data set, or of the generated ones."""
    from sklearn import datasets

    if name == "mixed":
        return mixed_frame(MIXED_ROWS, SEED)
    if name == "breast_cancer+nan":
        x, y = dataset("breast_cancer")
        rng = np.random.default_rng(SEED)
        x = x.mask(rng.random(x.shape) < MISSING_SHARE)  # NaN in every column, as a CSV with gaps gives
        return x, y
    loader = {
        "iris": datasets.load_iris,
        "wine": datasets.load_wine,
        "breast_cancer": datasets.load_breast_cancer,
        "diabetes": datasets.load_diabetes,
    }[name]
    bunch = loader(as_frame=True)
    return bunch.data, bunch.target


def mixed_frame(rows: int, seed: int) -> tuple[Any, Any]:
    """A churn-like table: 4 numeric and 3 string columns, missing values in both kinds, a binary target."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    age = rng.normal(42, 12, rows).clip(18, 90).round()
    income = rng.lognormal(10.5, 0.5, rows).round(2)
    tenure = rng.integers(0, 120, rows).astype(np.float64)
    spend = rng.gamma(2.0, 30.0, rows).round(2)
    cats = {k: rng.choice(v, rows, p=_weights(len(v), rng)) for k, v in MIXED_CATEGORIES.items()}
    logit = (
        -0.03 * (age - 42)
        + 0.4 * (np.log(income) - 10.5)
        - 0.02 * (tenure - 60)
        + 0.01 * (spend - 60)
        + np.select([cats["plan"] == "basic", cats["plan"] == "enterprise"], [0.8, -1.0], 0.0)
        + np.where(cats["channel"] == "phone", 0.6, 0.0)
        + np.where(cats["region"] == "south", -0.4, 0.0)
    )
    y = (logit + rng.logistic(0, 1, rows) > 0).astype(int)
    frame = pd.DataFrame({"age": age, "income": income, "tenure_months": tenure, "monthly_spend": spend, **cats})
    for column in ["age", "income", "plan", "region"]:  # gaps in numeric and string columns
        frame.loc[rng.random(rows) < MISSING_SHARE, column] = np.nan
    return frame, pd.Series(y, name="churned")


def _weights(n: int, rng: Any) -> np.ndarray:
    w = rng.uniform(0.5, 1.5, n)
    return w / w.sum()


def split(x: Any, y: Any) -> tuple[Any, Any, Any, Any]:
    from sklearn.model_selection import train_test_split

    stratify = y if y.nunique() < 20 else None
    return train_test_split(x, y, test_size=TEST_SIZE, random_state=SEED, stratify=stratify)


# ----------------------------------------------------------------------------- pipelines
def _scaled_lr() -> Any:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))


def _gb() -> Any:
    from sklearn.ensemble import GradientBoostingClassifier

    return GradientBoostingClassifier(random_state=SEED)


def _hgb_clf() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier

    return HistGradientBoostingClassifier(random_state=SEED)


def _hgb_reg() -> Any:
    from sklearn.ensemble import HistGradientBoostingRegressor

    return HistGradientBoostingRegressor(random_state=SEED)


def _ridge() -> Any:
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), Ridge())


def _tree() -> Any:
    from sklearn.tree import DecisionTreeClassifier

    return DecisionTreeClassifier(random_state=SEED)


def _forest() -> Any:
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=100, random_state=SEED)


def _knn() -> Any:
    from sklearn.neighbors import KNeighborsClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), KNeighborsClassifier())


def _onehot_lr() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    columns = ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), MIXED_NUMERIC),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(MIXED_CATEGORIES)),
        ]
    )
    return Pipeline([("columns", columns), ("model", LogisticRegression(max_iter=5000))])


def _ordinal_columns() -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.preprocessing import OrdinalEncoder

    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    return ColumnTransformer(
        [("cat", encoder, list(MIXED_CATEGORIES))], remainder="passthrough", verbose_feature_names_out=False
    )


def _ordinal_hgb() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    return Pipeline([("columns", _ordinal_columns()), ("model", HistGradientBoostingClassifier(random_state=SEED))])


def _ordinal_hgb_native() -> Any:
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.pipeline import Pipeline

    model = HistGradientBoostingClassifier(categorical_features=list(range(len(MIXED_CATEGORIES))), random_state=SEED)
    return Pipeline([("columns", _ordinal_columns()), ("model", model)])


def _imputed_lr() -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(SimpleImputer(strategy="median"), StandardScaler(), LogisticRegression(max_iter=5000))


CASES: list[Case] = [
    Case("byom-lr-binary", "StandardScaler + LogisticRegression (binary)", "breast_cancer", _scaled_lr, "lean"),
    Case("byom-lr-multiclass", "StandardScaler + LogisticRegression (3 classes)", "wine", _scaled_lr, "lean"),
    Case("byom-gb", "GradientBoostingClassifier", "breast_cancer", _gb, "lean"),
    Case("byom-hgb-clf", "HistGradientBoostingClassifier (3 classes)", "wine", _hgb_clf, "lean"),
    Case("byom-hgb-reg", "HistGradientBoostingRegressor", "diabetes", _hgb_reg, "lean"),
    Case("byom-ridge", "StandardScaler + Ridge", "diabetes", _ridge, "lean"),
    Case("byom-tree", "DecisionTreeClassifier", "iris", _tree, "lean"),
    Case("byom-forest", "RandomForestClassifier (100 trees)", "wine", _forest, "lean"),
    Case("byom-knn", "StandardScaler + KNeighborsClassifier", "iris", _knn, "sklearn"),
    Case(
        "byom-onehot-lr",
        "ColumnTransformer(imputer+scaler, OneHotEncoder) + LogisticRegression",
        "mixed",
        _onehot_lr,
        "lean",
    ),
    Case("byom-ordinal-hgb", "ColumnTransformer(OrdinalEncoder) + HistGradientBoosting", "mixed", _ordinal_hgb, "lean"),
    Case(
        "byom-ordinal-hgb-cat",
        "ColumnTransformer(OrdinalEncoder) + HistGradientBoosting (categorical_features)",
        "mixed",
        _ordinal_hgb_native,
        "lean",
    ),
    Case(
        "byom-imputed-lr",
        "SimpleImputer + StandardScaler + LogisticRegression",
        "breast_cancer+nan",
        _imputed_lr,
        "lean",
    ),
]

DATASET_NOTES = {
    "iris": "load_iris: 150 rows, 4 numeric, 3 classes",
    "wine": "load_wine: 178 rows, 13 numeric (names with '/'), 3 classes",
    "breast_cancer": "load_breast_cancer: 569 rows, 30 numeric, binary",
    "breast_cancer+nan": "load_breast_cancer with 6 % of every column set to NaN",
    "diabetes": "load_diabetes: 442 rows, 10 numeric, regression",
    "mixed": (
        f"generated: {MIXED_ROWS:,} rows, 4 numeric + 3 string columns (pandas str dtype), 6 % missing in "
        "age, income, plan, region; binary"
    ),
}


def instance(row: Any) -> dict[str, Any]:
    """One DataFrame row as the JSON object a client sends (NaN → null, numpy scalars → Python)."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and np.isnan(value)):
            out[str(key)] = None
        elif isinstance(value, np.generic):
            out[str(key)] = value.item()
        else:
            out[str(key)] = value
    return out
