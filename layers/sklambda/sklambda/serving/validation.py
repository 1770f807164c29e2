"""Request validation: a JSON batch checked against a feature schema, into the model's input matrix.

Instances are objects keyed by feature name, or lists in schema order. Every problem is reported
with the exact field that caused it (``instances[3].age``), never a bare 500.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from sklambda.core.errors import InvalidInput
from sklambda.registry.features import FeatureSchema, FeatureSpec

MAX_REPORTED_ERRORS = 20
FLOAT32_MAX = 3.4028234663852886e38
_EXACT_INT = 2**53  # past it an int does not convert to a float exactly
_NUMBER, _INTEGER, _BOOLEAN, _CATEGORY = 0, 1, 2, 3
_PLAIN_KINDS = {"number": _NUMBER, "integer": _INTEGER, "boolean": _BOOLEAN, "category": _CATEGORY}


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
            if abs(value) > FLOAT32_MAX:  # trees score float32: past it scikit-learn and the lean runtime raise
                return None, "is too large (at most ±3.4e38)"
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
        # Per column, what a plainly valid value is (see _plain_row): the kind, and the categories
        # a value must be one of (None: any string, the schema takes unknown categories).
        self._plain_kinds = tuple(_PLAIN_KINDS[f.type] for f in schema.features)
        self._plain_allowed = tuple(
            frozenset(f.categories or ()) if f.unknown_category == "error" else None for f in schema.features
        )

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
        if len(instances) == 1:  # the common request: one row, every value plainly valid
            plain = self._plain_row(instances[0])
            if plain is not None:
                return np.array([plain], dtype=self.dtype).reshape(1, self.width)
        elif self._plain_numbers:
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

    def _plain_row(self, instance: Any) -> list[Any] | None:
        """The row, in schema order, if every value is present, not null and plainly valid (what
        ``_Checker.check`` accepts unchanged); else None, and the per-value path decides and explains.

        Plainly valid: a number or integer column holds a float within ±FLOAT32_MAX (a comparison
        NaN and the infinities fail) or an int within ±2**53 (an integer column's float must be
        whole); a boolean column a bool; a category column a string it accepts.
        """
        width = self.width
        if type(instance) is dict:
            if len(instance) != width:
                return None
            try:
                values = [instance[name] for name in self._names]
            except KeyError:
                return None
        elif type(instance) is list and len(instance) == width:
            values = instance
        else:
            return None
        row: list[Any] = []
        append = row.append
        for value, kind, allowed in zip(values, self._plain_kinds, self._plain_allowed, strict=True):
            t = type(value)
            if kind <= _INTEGER:
                if t is float:
                    if not -FLOAT32_MAX <= value <= FLOAT32_MAX or (kind == _INTEGER and not value.is_integer()):
                        return None
                    append(value)
                elif t is int and -_EXACT_INT <= value <= _EXACT_INT:
                    append(float(value))
                else:
                    return None
            elif kind == _BOOLEAN:
                if t is not bool:
                    return None
                append(float(value))
            elif t is str and (allowed is None or value in allowed):
                append(value)
            else:
                return None
        return row

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
