"""One JSON line per record: how the capture and feedback records are written and read.

Each record type (``capture.CaptureRecord``, ``feedback.FeedbackRecord``) is a pydantic model: the
writer serialises it with ``to_json_line`` and every reader parses with ``parse_line``, so the field
names and types live in one class. Parsing goes through pydantic-core's JSON parser straight into
the model, which is faster than ``json.loads`` followed by hand-written checks (the drift job reads
millions of lines). Unknown fields are ignored so older readers accept newer lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Self

from pydantic import BaseModel, ConfigDict, ValidationError


class BadRecord(ValueError):
    """A line that is not a valid record; ``reason`` is a short, countable code."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JsonLineRecord(BaseModel):
    """Base of the newline-delimited JSON records in the capture bucket."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    # Field name → the reason reported when that field is missing or of the wrong type; any other
    # invalid field is "invalid_field".
    reject_reasons: ClassVar[Mapping[str, str]] = {}

    def to_json_line(self) -> bytes:
        """The record as one compact JSON line (``None`` fields omitted, NaN/Infinity as null)."""
        return self.model_dump_json(exclude_none=True).encode() + b"\n"

    @classmethod
    def parse_line(cls, line: bytes | str) -> Self:
        """The record a line holds, or BadRecord with the reason it cannot be used."""
        try:
            return cls.model_validate_json(line)
        except ValidationError as err:
            raise BadRecord(cls._reason(err)) from None

    @classmethod
    def _reason(cls, err: ValidationError) -> str:
        errors = err.errors(include_url=False, include_input=False, include_context=False)
        if any(e["type"] == "json_invalid" for e in errors):
            return "malformed_json"
        if any(not e["loc"] for e in errors):
            return "not_an_object"
        invalid = {e["loc"][0] for e in errors}
        for name, reason in cls.reject_reasons.items():
            if name in invalid:
                return reason
        return "invalid_field"
