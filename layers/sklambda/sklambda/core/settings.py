"""Configuration: environment variables parsed once, at cold start, into a validated model.

Logic receives values from here and never reads ``os.environ`` itself.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

from sklambda.core.names import ALIAS_PATTERN, MODEL_NAME_PATTERN


class EnvSettings(BaseModel):
    """Fields read from the environment variable of the same name, in any case; keyword arguments win.

    What pydantic-settings' ``BaseSettings(case_sensitive=False, extra="ignore")`` does for these
    scalar fields (pydantic parses the strings), without importing pydantic-settings, which costs
    about 45 ms of every cold start.
    """

    model_config = ConfigDict(protected_namespaces=(), extra="ignore")

    def __init__(self, **values: Any) -> None:
        env = {key.lower(): value for key, value in os.environ.items()}
        for name in type(self).model_fields:
            if name not in values and name in env:
                values[name] = env[name]
        super().__init__(**values)


class PredictSettings(EnvSettings):
    """Settings of the predict function (names match template.yaml's environment variables)."""

    model_bucket: Annotated[str, Field(min_length=3)]
    default_model: Annotated[str, Field(pattern=MODEL_NAME_PATTERN)] = "demo"
    model_alias: Annotated[str, Field(pattern=ALIAS_PATTERN)] = "production"
    alias_check_seconds: Annotated[float, Field(ge=0)] = 30.0
    max_batch_rows: Annotated[int, Field(ge=1, le=100_000)] = 1000
    # Firehose delivery stream for captured rows; capture is off when unset.
    capture_stream: str | None = None
    capture_sample_rate: Annotated[float, Field(ge=0, le=1)] = 1.0
    # Ground-truth labels posted to /feedback go to this Firehose stream.
    feedback_stream: str | None = None
    # HMAC key signing prediction ids (from Secrets Manager through a CloudFormation dynamic
    # reference); without one, ids are unsigned and /feedback is refused.
    prediction_id_key: str | None = None
    max_feedback_items: Annotated[int, Field(ge=1, le=10_000)] = 1000


class DriftSettings(EnvSettings):
    """Settings of the drift function (names match template.yaml's environment variables)."""

    capture_bucket: Annotated[str, Field(min_length=3)]
    model_bucket: Annotated[str, Field(min_length=3)]
    model_alias: Annotated[str, Field(pattern=ALIAS_PATTERN)] = "production"
    drift_lookback_hours: Annotated[int, Field(ge=1, le=24 * 14)] = 48
    drift_min_rows: Annotated[int, Field(ge=1)] = 500
    drift_psi_threshold: Annotated[float, Field(gt=0)] = 0.2
    drift_distance_threshold: Annotated[float, Field(gt=0, le=1)] = 0.1
    drift_wasserstein_threshold: Annotated[float, Field(gt=0)] = 0.1
    quality_lookback_hours: Annotated[int, Field(ge=1, le=24 * 14)] = 24


class RetrainSettings(EnvSettings):
    """Settings shared by the retrain pipeline's functions (template.yaml sets them)."""

    capture_bucket: Annotated[str, Field(min_length=3)]
    model_bucket: Annotated[str, Field(min_length=3)]
    model_alias: Annotated[str, Field(pattern=ALIAS_PATTERN)] = "production"
    default_model: Annotated[str, Field(pattern=MODEL_NAME_PATTERN)] = "demo"
    retrain_margin: Annotated[float, Field(ge=0, le=1)] = 0.01
    retrain_floor: Annotated[float, Field(ge=-1e9, le=1)] = 0.6
    retrain_min_labelled_rows: Annotated[int, Field(ge=0)] = 200
    retrain_label_lookback_hours: Annotated[int, Field(ge=1)] = 168
    canary_weight: Annotated[float, Field(gt=0, lt=1)] = 0.1
    canary_max_latency_ms: Annotated[float, Field(gt=0)] = 250.0
    canary_min_requests: Annotated[int, Field(ge=0)] = 0
    canary_wait_seconds: Annotated[int, Field(ge=0, le=86_400)] = 600
