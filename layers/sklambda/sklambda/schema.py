"""Feature schemas and the validation of prediction requests against them.

The schema travels in every manifest. Validation turns a JSON batch (objects keyed by feature
name, or lists in schema order) into the 2-D array the pipeline was trained on, and reports every
problem with the exact field that caused it (``instances[3].age``), never a bare 500.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from .errors import InvalidInput

FeatureType = Literal["number", "integer", "boolean", "category"]
FEATURE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"
MAX_REPORTED_ERRORS = 20


class FeatureSpec(BaseModel):
    """One input column. ``category`` features list their allowed values."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: Annotated[str, Field(pattern=FEATURE_NAME_PATTERN)]
    type: FeatureType
    nullable: bool = False
    categories: list[str] | None = None
    unknown_category: Literal["error", "allow"] = "error"
    description: str | None = None

    @model_validator(mode="after")
    def _categories_only_for_categories(self) -> FeatureSpec:
        if self.type == "category" and not self.categories:
            raise ValueError(f"category feature {self.name!r} needs a non-empty 'categories' list")
        if self.type != "category" and self.categories is not None:
            raise ValueError(f"feature {self.name!r} of type {self.type!r} cannot list categories")
        return self


class FeatureSchema(BaseModel):
    """The ordered input columns of a model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    features: Annotated[list[FeatureSpec], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_names(self) -> FeatureSchema:
        seen: set[str] = set()
        for spec in self.features:
            if spec.name in seen:
                raise ValueError(f"feature {spec.name!r} appears twice")
            seen.add(spec.name)
        return self

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def all_numeric(self) -> bool:
        return all(f.type != "category" for f in self.features)


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


class _Checker:
    """Checks one feature's value; precomputed per schema so the hot path is a few comparisons."""

    __slots__ = ("spec", "allowed", "name")

    def __init__(self, spec: FeatureSpec) -> None:
        self.spec = spec
        self.name = spec.name
        self.allowed = frozenset(spec.categories or ())

    def check(self, value: Any) -> tuple[Any, str | None]:
        """Return (converted value, error message or None)."""
        spec = self.spec
        if value is None:
            if spec.nullable:
                return (np.nan if spec.type != "category" else None), None
            return None, "is required and cannot be null"
        kind = spec.type
        if kind == "number" or kind == "integer":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return None, f"expected a number, got {_type_name(value)}"
            if isinstance(value, float) and not math.isfinite(value):
                return None, "must be a finite number (NaN and Infinity are not allowed)"
            if kind == "integer" and isinstance(value, float) and not value.is_integer():
                return None, f"expected an integer, got {value!r}"
            if isinstance(value, int) and abs(value) > 2**53:
                return None, "is too large to be represented exactly"
            return float(value), None
        if kind == "boolean":
            if not isinstance(value, bool):
                return None, f"expected a boolean, got {_type_name(value)}"
            return float(value), None
        # category
        if not isinstance(value, str):
            return None, f"expected a string category, got {_type_name(value)}"
        if value not in self.allowed and spec.unknown_category == "error":
            shown = sorted(self.allowed)
            listed = ", ".join(repr(c) for c in shown[:10]) + (", ..." if len(shown) > 10 else "")
            return None, f"unknown category {value[:64]!r}; allowed: {listed}"
        return value, None


class InstanceValidator:
    """Validates a batch against a schema and builds the model's input matrix."""

    def __init__(self, schema: FeatureSchema) -> None:
        self.schema = schema
        self.checkers = [_Checker(s) for s in schema.features]
        self.index = {c.name: i for i, c in enumerate(self.checkers)}
        self.width = len(self.checkers)
        self.dtype = np.float64 if schema.all_numeric else object
        # Batches of complete, plain-number objects for an all-number schema (the common case of a
        # big numeric batch) are checked column-wise with numpy; anything else takes the per-value path.
        self._plain_numbers = all(f.type in ("number", "integer") and not f.nullable for f in schema.features)
        self._names = tuple(schema.names)
        self._integer_columns = [i for i, f in enumerate(schema.features) if f.type == "integer"]

    def _numbers_fast(self, instances: list[Any]) -> np.ndarray | None:
        """The matrix if every instance is a complete object of plain finite numbers, else None."""
        names, width = self._names, self.width
        try:
            rows = [[inst[k] for k in names] for inst in instances if type(inst) is dict and len(inst) == width]
        except KeyError:
            return None
        if len(rows) != len(instances):
            return None
        plain = (float, int)
        if not all(type(v) in plain for row in rows for v in row):  # bools, strings, None, lists: per value
            return None
        matrix = np.array(rows, dtype=np.float64).reshape(len(rows), width)
        if not np.isfinite(matrix).all() or (matrix.size and np.abs(matrix).max() > 2**53):
            return None
        if self._integer_columns:
            ints = matrix[:, self._integer_columns]
            if not (ints == np.floor(ints)).all():
                return None
        return matrix

    def to_matrix(self, instances: list[Any]) -> np.ndarray:
        """Validate every row and return an (n, width) array in schema order.

        Raises InvalidInput listing up to MAX_REPORTED_ERRORS problems, each naming its field.
        """
        if self._plain_numbers and len(instances) > 1:
            fast = self._numbers_fast(instances)
            if fast is not None:
                return fast
        errors: list[dict[str, str]] = []
        rows: list[list[Any]] = []
        checkers = self.checkers
        width = self.width
        for i, instance in enumerate(instances):
            where = f"instances[{i}]"
            if isinstance(instance, dict):
                row = self._row_from_object(instance, where, errors)
            elif isinstance(instance, list):
                if len(instance) != width:
                    errors.append(
                        {
                            "field": where,
                            "message": f"expected {width} values in schema order "
                            f"({', '.join(self.schema.names)}), got {len(instance)}",
                        }
                    )
                    continue
                row = []
                for checker, value in zip(checkers, instance, strict=True):
                    converted, problem = checker.check(value)
                    if problem:
                        errors.append({"field": f"{where}.{checker.name}", "message": problem})
                    row.append(converted)
            else:
                errors.append(
                    {
                        "field": where,
                        "message": f"expected an object keyed by feature name or a list in schema order, "
                        f"got {_type_name(instance)}",
                    }
                )
                continue
            if len(errors) >= MAX_REPORTED_ERRORS:
                break
            rows.append(row)
        if errors:
            shown = errors[:MAX_REPORTED_ERRORS]
            first = shown[0]
            message = f"{first['field']}: {first['message']}"
            if len(errors) > 1:
                message += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
            raise InvalidInput(message, details=shown)
        return np.array(rows, dtype=self.dtype).reshape(len(rows), width)

    def _row_from_object(self, instance: dict[str, Any], where: str, errors: list[dict[str, str]]) -> list[Any]:
        row: list[Any] = [None] * self.width
        for key in instance:
            if key not in self.index:
                errors.append(
                    {
                        "field": f"{where}.{str(key)[:64]}",
                        "message": f"unknown feature; expected one of: {', '.join(self.schema.names)}",
                    }
                )
        for j, checker in enumerate(self.checkers):
            if checker.name not in instance:
                if checker.spec.nullable:
                    row[j] = np.nan if checker.spec.type != "category" else None
                else:
                    errors.append({"field": f"{where}.{checker.name}", "message": "is missing"})
                continue
            converted, problem = checker.check(instance[checker.name])
            if problem:
                errors.append({"field": f"{where}.{checker.name}", "message": problem})
            row[j] = converted
        return row
