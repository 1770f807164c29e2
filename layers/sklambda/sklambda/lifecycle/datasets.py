"""The training-data format: gzipped JSON lines ``{"features": {...}, "label": ...}``.

A published version's ``training.jsonl.gz`` (what a retrain starts from) and the retrain's working
train/holdout files are all this format, written and read only here. Features are keyed by name,
so a file stays readable if a schema reorders its columns; missing values are null.
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from sklambda.monitoring.feedback import Label
from sklambda.monitoring.records import JsonLineRecord
from sklambda.registry.features import FeatureSchema

TRAINING_DATA = "training.jsonl.gz"


class DatasetRow(JsonLineRecord):
    """One labelled training row."""

    features: dict[str, Any]
    label: Label


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def rows_from_matrix(x: np.ndarray, y: np.ndarray, schema: FeatureSchema) -> list[DatasetRow]:
    """A matrix in schema order and its labels → rows."""
    names = schema.names
    return [
        DatasetRow(features={n: _plain(v) for n, v in zip(names, row, strict=True)}, label=_plain(label))
        for row, label in zip(x.tolist(), y.tolist(), strict=True)
    ]


def rows_to_matrix(rows: Sequence[DatasetRow], schema: FeatureSchema) -> tuple[np.ndarray, np.ndarray]:
    """Rows → (matrix in schema order, as the predict path builds it, labels)."""
    from sklambda.serving.validation import InstanceValidator

    if not rows:
        return np.empty((0, len(schema.features))), np.array([])
    booleans = [f.name for f in schema.features if f.type == "boolean"]
    instances = [_booleans_as_bool(r.features, booleans) if booleans else r.features for r in rows]
    return InstanceValidator(schema).to_matrix(instances), np.array([r.label for r in rows])


def _booleans_as_bool(features: dict[str, Any], names: list[str]) -> dict[str, Any]:
    """A matrix (so a capture or a stored training row) holds a boolean as 1.0/0.0; the validator wants a bool."""
    out = dict(features)
    for name in names:
        value = out.get(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value in (0, 1):
            out[name] = bool(value)
    return out


def encode(rows: Iterable[DatasetRow]) -> bytes:
    return gzip.compress(b"".join(row.to_json_line() for row in rows), compresslevel=6)


def decode(data: bytes) -> list[DatasetRow]:
    """Every row of a dataset file (gzip or plain). A bad line is an error: training data is ours."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return [DatasetRow.model_validate_json(line) for line in data.splitlines() if line.strip()]


def dataset_bytes(x: np.ndarray, y: np.ndarray, schema: FeatureSchema) -> bytes:
    return encode(rows_from_matrix(x, y, schema))


def read_dataset(data: bytes, schema: FeatureSchema) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of ``dataset_bytes``: (matrix in schema order, labels)."""
    return rows_to_matrix(decode(data), schema)
