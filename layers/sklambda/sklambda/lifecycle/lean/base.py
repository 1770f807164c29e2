"""Publish-time converters: a fitted scikit-learn object to a lean part (spec + arrays).

A converter takes the fitted object and returns ``(spec, arrays)`` where ``spec`` is a JSON-able
dict with at least ``kind`` (a runtime kind registered in ``sklambda.serving.lean.base``) and
``arrays`` plain numeric numpy arrays (no object dtype). It raises :class:`Unsupported` with a reason
a user can act on when an option is not implemented. Registered by the scikit-learn class name.
"""

from __future__ import annotations

from collections.abc import Callable
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
