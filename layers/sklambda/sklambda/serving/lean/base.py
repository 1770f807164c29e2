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
    """A preprocessing step: the input matrix (object or float64, n rows) to the next matrix.

    Steps keep scikit-learn's dtypes along the way (a float32 encoder output stays float32 through
    a scaler, as it does in scikit-learn), so the arithmetic is the same; the estimator gets the
    last step's output as float64 (exact: every value came from a float64, float32 or integer).
    The header spec of a step has ``n_in`` and ``n_out`` (its matrix widths).
    """

    kind: ClassVar[str]

    @classmethod
    def from_parts(cls, spec: dict[str, Any], arrays: dict[str, np.ndarray]) -> Step: ...

    def transform(self, x: np.ndarray) -> np.ndarray: ...


class Estimator(Protocol):
    """The final estimator: a float64 matrix (the last step's output) to answers.

    Classifiers answer ``predict_proba`` (columns in ``classes`` order, from the header) and
    ``predict`` (class labels); regressors answer ``predict`` (float64, one value per row). A
    classifier without probabilities (a hinge-loss SGD, a ridge classifier) raises AttributeError
    from ``predict_proba`` (so ``hasattr`` is False) and answers labels only.

    The publisher adds ``input`` to the spec: ``{"dtype": "float32" | "float64", "sparse": bool}``,
    what scikit-learn's estimator received (the float64 matrix holds exactly those values). Trees
    cast to float32 either way; linear models compute in that dtype and, after a sparse step, sum
    in the sparse product's order.
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
    """The arrays of one part, without their ``"<id>/"`` prefix.

    A composite part (a column transformer, a one-vs-rest classifier) gives its children ids of
    their own, relative to it: a child ``b0.1`` of part ``s0`` keeps its arrays under ``s0/b0.1/...``.
    """
    prefix = part_id + "/"
    return {key[len(prefix) :]: value for key, value in arrays.items() if key.startswith(prefix)}


def _build(registry: dict[str, type], what: str, spec: Any, arrays: dict[str, np.ndarray]) -> Any:
    if not isinstance(spec, dict) or not isinstance(spec.get("kind"), str) or not isinstance(spec.get("id"), str):
        raise LeanFormatError(f"a {what} spec must be an object with a string 'kind' and 'id'")
    if "/" in spec["id"]:
        raise LeanFormatError(f"{what} id {spec['id']!r} contains '/'")
    cls = registry.get(spec["kind"])
    if cls is None:
        raise LeanFormatError(f"unknown {what} kind {spec['kind']!r} (this runtime knows {sorted(registry)})")
    try:
        return cls.from_parts(spec, part_arrays(arrays, spec["id"]))  # type: ignore[attr-defined]
    except LeanFormatError:
        raise
    except (KeyError, IndexError, TypeError, ValueError) as err:
        raise LeanFormatError(f"{what} {spec['id']!r} ({spec['kind']}) is malformed: {err!r}") from err


def build_step(spec: Any, arrays: dict[str, np.ndarray]) -> Step:
    """The runtime step for ``spec``; ``arrays`` are the enclosing scope's (the part's are under its id)."""
    return _build(STEPS, "step", spec, arrays)  # type: ignore[no-any-return,unused-ignore]


def build_estimator(spec: Any, arrays: dict[str, np.ndarray]) -> Estimator:
    """The runtime estimator for ``spec``; ``arrays`` are the enclosing scope's."""
    return _build(ESTIMATORS, "estimator", spec, arrays)  # type: ignore[no-any-return,unused-ignore]


def require(arrays: dict[str, np.ndarray], kind: str, *names: str) -> list[np.ndarray]:
    """The named arrays of a part, or LeanFormatError naming the missing ones."""
    missing = [name for name in names if name not in arrays]
    if missing:
        raise LeanFormatError(f"{kind}: missing arrays {missing}")
    return [arrays[name] for name in names]


def vector(array: np.ndarray, n: int, kind: str, name: str) -> np.ndarray:
    """``array`` as a 1-D array of ``n`` values (its own dtype), or LeanFormatError."""
    array = np.asarray(array)
    if array.shape != (n,) or array.dtype.kind not in "fiub":
        raise LeanFormatError(f"{kind}: {name} must be {n} numbers, got {array.dtype} {array.shape}")
    return array


Builder = Callable[[dict[str, Any], dict[str, np.ndarray]], Any]
