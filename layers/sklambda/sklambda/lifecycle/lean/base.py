"""Publish-time converters: a fitted scikit-learn object to a lean part (spec + arrays).

A converter takes the fitted object and returns ``(spec, arrays)`` where ``spec`` is a JSON-able
dict with at least ``kind`` (a runtime kind registered in ``sklambda.serving.lean.base``) and
``arrays`` plain numeric numpy arrays (no object dtype). It raises :class:`Unsupported` with a reason
a user can act on when an option is not implemented. Registered by the scikit-learn class name.

Estimator converters are called as ``fn(fitted)``; classifiers put ``classes`` (see
:func:`json_classes`) and every estimator ``n_features`` in the spec. Step converters are called as
``fn(fitted, context)``: a :class:`StepContext` says what scikit-learn hands the step (a sparse
matrix changes the arithmetic of the scalers) and collects the input values worth testing
(boundaries) for the parity check. The walker (``sklambda.lifecycle.lean``) adds ``id``, ``n_in``,
``n_out`` to step specs and ``id``, ``input`` to the estimator's.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class Unsupported(Exception):
    """The estimator has a part (or an option) the lean runtime does not implement; the message says which."""


Part = tuple[dict[str, Any], dict[str, np.ndarray]]
Converter = Callable[[Any], Part]

STEP_CONVERTERS: dict[str, Callable[..., Part]] = {}
ESTIMATOR_CONVERTERS: dict[str, Callable[..., Part]] = {}


def converts_step(*class_names: str) -> Callable[[Callable[..., Part]], Callable[..., Part]]:
    def register(fn: Callable[..., Part]) -> Callable[..., Part]:
        for name in class_names:
            STEP_CONVERTERS[name] = fn
        return fn

    return register


def converts_estimator(*class_names: str) -> Callable[[Callable[..., Part]], Callable[..., Part]]:
    def register(fn: Callable[..., Part]) -> Callable[..., Part]:
        for name in class_names:
            ESTIMATOR_CONVERTERS[name] = fn
        return fn

    return register


@dataclass
class StepContext:
    """What a step converter knows about the step's input besides the fitted object."""

    n_in: int
    sparse: bool  # scikit-learn hands the step a sparse matrix
    boundaries: dict[int, set[float]] = field(default_factory=dict)  # step input column -> values to test

    def boundary(self, column: int, *values: Any) -> None:
        for value in values:
            if isinstance(value, (int, float, np.number)) and math.isfinite(float(value)):
                self.boundaries.setdefault(column, set()).add(float(value))


JSON_SCALARS = (str, bool, int, float, type(None))


def json_value(value: Any, what: str) -> Any:
    """A category, class label or fill value as a plain JSON scalar, or Unsupported."""
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, JSON_SCALARS):
        raise Unsupported(
            f"{what} {value!r} is a {type(value).__name__}; only strings, numbers, booleans, None convert"
        )
    return value


def json_classes(estimator: Any) -> list[Any]:
    """``classes_`` as a JSON list (strings, numbers, booleans)."""
    classes = [json_value(c, "class label") for c in np.asarray(estimator.classes_).tolist()]
    if any(c is None or (isinstance(c, float) and not math.isfinite(c)) for c in classes):
        raise Unsupported("class labels must be strings, finite numbers or booleans")
    return classes
