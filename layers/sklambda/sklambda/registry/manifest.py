"""The registry's documents: a version's manifest and an alias record (docs/architecture.md, the registry contract)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from sklambda.core.names import ALIAS_PATTERN, MODEL_NAME_PATTERN, VERSION_PATTERN
from sklambda.registry.features import FeatureSchema, FeatureSpec

# Artifact names are plain file names inside the version's own prefix: a manifest can never point
# a loader at another key, let alone another bucket.
ARTIFACT_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$"
MANIFEST_FORMAT = 1
ALIAS_HISTORY_LIMIT = 200

ModelName = Annotated[str, Field(pattern=MODEL_NAME_PATTERN)]
VersionId = Annotated[str, Field(pattern=VERSION_PATTERN)]


def utcnow() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class ArtifactRef(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    bytes: Annotated[int, Field(ge=0)]
    # Which runtime can load this file ("sklearn-joblib" for the canonical artifact). Further
    # runtimes sit beside it without changing callers.
    runtime: str | None = None


class LeanServing(BaseModel):
    """The version's scikit-learn-free serving artifact, or why it has none (sklambda.lean).

    When ``accepted``, the predict function serves ``artifact`` with ``runtime`` (no scikit-learn
    import); otherwise it serves the canonical scikit-learn artifact and ``reason`` says why.
    ``parity`` records the check on held-out rows that decided it.
    """

    model_config = ConfigDict(extra="forbid")

    runtime: str
    accepted: bool
    artifact: Annotated[str, Field(pattern=ARTIFACT_NAME_PATTERN)] | None = None
    reason: str | None = None
    parity: dict[str, Any] = Field(default_factory=dict)


class Manifest(BaseModel):
    """Everything needed to load, verify, describe and retrain one immutable version."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    format: int = MANIFEST_FORMAT
    name: ModelName
    version: VersionId
    created_at: str
    task: Literal["classification", "regression"]
    features: Annotated[list[FeatureSpec], Field(min_length=1)]
    target: str | None = None
    classes: list[str | int | float | bool] | None = None
    libraries: dict[str, str]
    artifacts: dict[Annotated[str, Field(pattern=ARTIFACT_NAME_PATTERN)], ArtifactRef]
    primary_artifact: Annotated[str, Field(pattern=ARTIFACT_NAME_PATTERN)] = "model.joblib"
    metrics: dict[str, Any] = Field(default_factory=dict)
    training_data: dict[str, Any] | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    parent_version: VersionId | None = None
    # The lean serving artifact (sklambda.trees) or why the version is served by scikit-learn.
    lean: LeanServing | None = None
    description: str | None = None
    # Retrained versions that failed the gate are kept, marked rejected, with the reason.
    status: Literal["candidate", "rejected"] = "candidate"
    status_reason: str | None = None
    # What this version cannot do and how to add it, in plain words (e.g. published without training
    # data: no drift baseline, no retrain). Empty for a version with every part of the loop.
    lacks: list[str] = Field(default_factory=list)

    # Shadows pydantic's deprecated v1 ``BaseModel.schema()`` classmethod on purpose: ``schema`` is
    # the registry contract's name for a version's features (``model_json_schema`` replaces v1's).
    @property
    def schema(self) -> FeatureSchema:  # type: ignore[override]
        return FeatureSchema(features=self.features)

    def public(self) -> dict[str, Any]:
        """What GET /models/{name} shows: metadata, never bucket keys or internals."""
        return {
            "name": self.name,
            "version": self.version,
            "created_at": self.created_at,
            "task": self.task,
            "target": self.target,
            "features": [f.model_dump(exclude_none=True) for f in self.features],
            "classes": self.classes,
            "metrics": self.metrics,
            "libraries": self.libraries,
            "parent_version": self.parent_version,
            "description": self.description,
            "status": self.status,
            "lacks": self.lacks,
        }


class CanaryRoute(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: VersionId
    weight: Annotated[float, Field(gt=0, lt=1)]


class AliasEvent(BaseModel):
    model_config = ConfigDict(extra="forbid")

    action: Literal["promote", "rollback", "canary"]
    version: VersionId
    from_version: VersionId | None = None
    at: str
    reason: str | None = None


class AliasRecord(BaseModel):
    """``models/<name>/aliases/<alias>.json``: the pointer promotion and rollback move."""

    model_config = ConfigDict(extra="forbid")

    model: ModelName
    alias: Annotated[str, Field(pattern=ALIAS_PATTERN)]
    version: VersionId
    previous: VersionId | None = None
    canary: CanaryRoute | None = None
    updated_at: str
    # Versions that have been live, oldest first, without the ones rolled back: rollback pops.
    lineage: list[VersionId] = Field(default_factory=list)
    # Every move, newest last (bounded; S3 object versioning keeps the full record).
    history: list[AliasEvent] = Field(default_factory=list)
