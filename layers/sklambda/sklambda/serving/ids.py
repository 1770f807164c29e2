"""Prediction ids that carry their model and version and prove we issued them.

``demo.v3.<32 hex>-<row>.<16 hex signature>``: the 32 hex characters are random per request (the
first 8 also choose canary routing), the row index distinguishes rows of a batch, and the
signature is an HMAC-SHA256 (truncated to 64 bits) over everything before it, keyed by a secret
the stack generates. The feedback endpoint can therefore tell, without any lookup, which model
and version produced a prediction — to validate a label against that version's classes — and
refuse ids it never issued.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from dataclasses import dataclass

from sklambda.core.errors import InvalidInput, UnknownPrediction

_ID = re.compile(
    r"^(?P<model>[a-z0-9][a-z0-9-]{0,62})\.v(?P<version>[1-9][0-9]{0,8})\.(?P<base>[0-9a-f]{32})-"
    r"(?P<row>0|[1-9][0-9]{0,5})\.(?P<sig>[0-9a-f]{16})$"
)
MAX_ID_LENGTH = 140


@dataclass(frozen=True)
class PredictionRef:
    model: str
    version: str
    base: str
    row: int


class PredictionIds:
    """Issues and verifies signed prediction ids with one secret key."""

    def __init__(self, key: str | bytes) -> None:
        if not key:
            raise ValueError("a prediction-id signing key is required")
        self._key = key.encode() if isinstance(key, str) else key
        self._keyed = hmac.new(self._key, digestmod=hashlib.sha256)  # copied per id: the key is hashed once

    def _sign(self, unsigned: str) -> str:
        mac = self._keyed.copy()
        mac.update(unsigned.encode())
        return mac.hexdigest()[:16]

    def issue(self, model: str, version: str, base: str, rows: int) -> list[str]:
        prefix = f"{model}.v{version}.{base}-"
        out = []
        for i in range(rows):
            unsigned = f"{prefix}{i}"
            out.append(f"{unsigned}.{self._sign(unsigned)}")
        return out

    def verify(self, prediction_id: object, field: str = "prediction_id") -> PredictionRef:
        """The model, version and row a genuine id names; InvalidInput for anything else."""
        if not isinstance(prediction_id, str) or len(prediction_id) > MAX_ID_LENGTH:
            raise InvalidInput(
                f"{field}: expected a prediction id string",
                details=[{"field": field, "message": "expected a prediction id string"}],
            )
        match = _ID.match(prediction_id)
        if match is None:
            message = "is not a prediction id issued by this API"
            raise InvalidInput(f"{field}: {message}", details=[{"field": field, "message": message}])
        unsigned, _, signature = prediction_id.rpartition(".")
        if not hmac.compare_digest(self._sign(unsigned), signature):
            message = "unknown prediction id (not issued by this API)"
            raise UnknownPrediction(f"{field}: {message}", details=[{"field": field, "message": message}])
        return PredictionRef(match["model"], match["version"], match["base"], int(match["row"]))
