"""The contract between a lean artifact's parts: what a step or an estimator must provide.

A lean artifact (``model.lean.npz``) is a JSON header plus plain numeric arrays (no pickle). The
header lists the preprocessing ``steps`` and the final ``estimator``, each a spec with a ``kind``
and an ``id``; an array belonging to a part is stored under ``"<id>/<name>"``. Loading builds each
part from its spec and arrays through the registries below; a kind nobody registered is an error.

Runtime classes import numpy and nothing else. Their publish-time twins (``sklambda.lifecycle.lean``)
read fitted scikit-learn objects and write the same specs and arrays.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, ClassVar, Protocol, TypeVar

import numpy as np


class LeanFormatError(ValueError):
    """The artifact (or one of its parts) is not something this runtime understands."""


class Step(Protocol):
    """A preprocessing step: the input matrix (object or float64, n rows) to the next matrix."""

    kind: ClassVar[str]

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Step: ...

    def transform(self, x: np.ndarray) -> np.ndarray: ...


class Estimator(Protocol):
    """The final estimator: a float64 matrix (the last step's output) to answers.

    Classifiers answer ``predict_proba`` (columns in ``classes`` order, from the header) and
    ``predict`` (class labels); regressors answer ``predict`` (float64, one value per row).
    """

    kind: ClassVar[str]

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Estimator: ...

    def predict(self, x: np.ndarray) -> np.ndarray: ...

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


STEPS: dict[str, type] = {}
ESTIMATORS: dict[str, type] = {}

T = TypeVar("T", bound=type)


def step(cls: T) -> T:
    """Class decorator: register a runtime step under its ``kind``."""
    STEPS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def estimator(cls: T) -> T:
    """Class decorator: register a runtime estimator under its ``kind``."""
    ESTIMATORS[cls.kind] = cls  # type: ignore[attr-defined]
    return cls


def part_arrays(arrays: dict[str, np.ndarray], part_id: str) -> dict[str, np.ndarray]:
    """The arrays of one part, without their ``"<id>/"`` prefix."""
    prefix = part_id + "/"
    return {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}


Builder = Callable[[dict[str, Any], dict[str, np.ndarray]], Any]
