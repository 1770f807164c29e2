"""The lean serving runtime (``sklambda-lean``): a published pipeline answered with numpy alone.

A ``model.lean.npz`` artifact, written at publish time by ``sklambda.lifecycle.lean``, is a JSON
header plus plain numeric arrays: ``np.load(allow_pickle=False)`` reads it, so loading runs no code
from the file, and neither scikit-learn nor scipy is imported. The header lists the preprocessing
``steps`` (each a spec with ``kind`` and ``id``; composite steps such as a column transformer hold
their own steps) and the final ``estimator``; arrays live under ``"<id>/<name>"``
(``sklambda.serving.lean.base``). Loading builds every part through the kind registries, and
anything malformed is a :class:`LeanFormatError` naming the part.

:class:`LeanModel` takes the matrix ``InstanceValidator.to_matrix`` builds (schema order; object
dtype when there are categories) and answers what the scikit-learn pipeline answers on it: each
step repeats scikit-learn's arithmetic (``preprocessing``), the estimator gets the last step's
output as float64 (``linear``, ``forests``). Parity is checked at publish time, never assumed.

Versions published before this runtime carry ``model.trees.npz`` and are still served by
``sklambda.serving.trees``.
"""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np

from sklambda.serving.lean import forests, linear, preprocessing
from sklambda.serving.lean.base import ESTIMATORS, STEPS, LeanFormatError, build_estimator, build_step

FORMAT = 1
RUNTIME = "sklambda-lean"
ARTIFACT = "model.lean.npz"
HEADER_KEY = "header"
TASKS = ("classification", "regression")

__all__ = [
    "ARTIFACT",
    "ESTIMATORS",
    "FORMAT",
    "RUNTIME",
    "STEPS",
    "LeanFormatError",
    "LeanModel",
    "dump",
    "forests",
    "linear",
    "load",
    "preprocessing",
]


def dump(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> bytes:
    """Serialise a converted pipeline: the header as JSON bytes plus numeric arrays (never objects)."""
    if HEADER_KEY in arrays:
        raise ValueError(f"{HEADER_KEY!r} is reserved for the header")
    for name, array in arrays.items():
        if np.asarray(array).dtype.kind not in "fiub":
            raise ValueError(f"array {name!r} is {np.asarray(array).dtype}; only numeric arrays are stored")
    raw = json.dumps({**header, "format": FORMAT, "runtime": RUNTIME}, separators=(",", ":"), sort_keys=True)
    buffer = io.BytesIO()
    members: dict[str, Any] = {HEADER_KEY: np.frombuffer(raw.encode(), dtype=np.uint8), **arrays}
    np.savez_compressed(buffer, **members)
    return buffer.getvalue()


def load(data: bytes) -> LeanModel:
    """Parse an artifact (already sha256-verified by the caller) into a ready model."""
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            if HEADER_KEY not in npz.files:
                raise LeanFormatError("no header")
            header = json.loads(npz[HEADER_KEY].tobytes())
            arrays = {name: npz[name] for name in npz.files if name != HEADER_KEY}
    except LeanFormatError as err:
        raise LeanFormatError(f"not a {RUNTIME} artifact: {err}") from err
    except Exception as err:  # not a zip, not an npz, an object array, bad JSON: all the same to a caller
        raise LeanFormatError(f"not a {RUNTIME} artifact: {err!r}") from err
    if not isinstance(header, dict):
        raise LeanFormatError(f"not a {RUNTIME} artifact: the header is not an object")
    if header.get("runtime") != RUNTIME or header.get("format") != FORMAT:
        raise LeanFormatError(
            f"{header.get('runtime')!r} format {header.get('format')!r} is not supported "
            f"(this runtime reads {RUNTIME} format {FORMAT})"
        )
    return LeanModel(header, arrays)


class LeanModel:
    """A converted pipeline with scikit-learn's interface (``predict``, ``predict_proba``, ``classes_``)."""

    def __init__(self, header: dict[str, Any], arrays: dict[str, np.ndarray]) -> None:
        self.header = header
        self.task = header.get("task")
        if self.task not in TASKS:
            raise LeanFormatError(f"unknown task {self.task!r}")
        try:
            self.n_features_in_ = int(header["n_inputs"])
            step_specs = header["steps"]
            estimator_spec = header["estimator"]
        except (KeyError, TypeError, ValueError) as err:
            raise LeanFormatError(f"header lacks {err}") from err
        if not isinstance(step_specs, list):
            raise LeanFormatError("header 'steps' must be a list")
        width = self.n_features_in_
        for spec in step_specs:
            if not isinstance(spec, dict) or spec.get("n_in") != width:
                raise LeanFormatError(
                    f"step {spec.get('id') if isinstance(spec, dict) else spec!r} does not take {width} columns"
                )
            width = int(spec["n_out"])
        self.steps = [build_step(spec, arrays) for spec in step_specs]
        self.estimator = build_estimator(estimator_spec, arrays)
        n_features = getattr(self.estimator, "n_features", None)
        if n_features is not None and int(n_features) != width:
            raise LeanFormatError(f"the steps yield {width} columns, the estimator takes {n_features}")
        self.n_features_out = width
        if self.task == "classification":
            classes = header.get("classes")
            if not isinstance(classes, list) or len(classes) < 2:
                raise LeanFormatError("a classifier needs its classes in the header")
            self.classes_ = np.asarray(classes)
            own = getattr(self.estimator, "classes_", None)
            if own is not None and np.asarray(own).tolist() != classes:
                raise LeanFormatError("the estimator's classes differ from the header's")

    def transform(self, matrix: np.ndarray) -> np.ndarray:
        """The float64 matrix the estimator sees (the pipeline's preprocessing)."""
        x = np.asarray(matrix)
        if x.ndim != 2 or x.shape[1] != self.n_features_in_:
            raise ValueError(f"expected a 2-D matrix with {self.n_features_in_} columns, got shape {x.shape}")
        for part in self.steps:
            x = part.transform(x)
        return np.ascontiguousarray(x, dtype=np.float64)

    def predict(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict(self.transform(matrix)))

    @property
    def predict_proba(self) -> Any:
        """Class probabilities (AttributeError for regressors and classifiers without them, so ``hasattr`` tells)."""
        if self.task != "classification":
            raise AttributeError("a regressor has no predict_proba")
        self.estimator.predict_proba  # noqa: B018 (AttributeError when the estimator has none)
        return self._predict_proba

    def _predict_proba(self, matrix: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(self.transform(matrix)), dtype=np.float64)

    def __repr__(self) -> str:
        kinds = " -> ".join(
            [str(s.get("kind")) for s in self.header["steps"]] + [str(self.header["estimator"].get("kind"))]
        )
        return f"LeanModel({kinds}; {self.n_features_in_} inputs, {self.n_features_out} features)"
