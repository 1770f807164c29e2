"""The feature-schema contract: a model's ordered input columns, their types and categories.

The schema travels in every manifest; request validation (``sklambda.serving.validation``), the
drift baseline and training all read it. See docs/architecture.md, "The registry contract".
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

FeatureType = Literal["number", "integer", "boolean", "category"]
# Feature names are data: any printable name a DataFrame column can have ("alcohol/ash", "Median income ($)",
# "größe"), up to 256 characters. Control characters are refused (they corrupt logs, headers and reports).
MAX_FEATURE_NAME_LENGTH = 256


def _check_feature_name(name: str) -> str:
    if not name.strip():
        raise ValueError("a feature name cannot be empty or only whitespace")
    bad = next((c for c in name if not c.isprintable() and c != " "), None)
    if bad is not None:
        raise ValueError(f"feature name {name[:64]!r} contains the control character {bad!r}")
    return name


FeatureName = Annotated[
    str, Field(min_length=1, max_length=MAX_FEATURE_NAME_LENGTH), AfterValidator(_check_feature_name)
]


class DriftThresholds(BaseModel):
    """A feature's own drift thresholds; each one left out takes the drift job's default
    (template parameters DriftPsiThreshold, DriftDistanceThreshold, DriftWassersteinThreshold)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    psi: float | None = Field(None, gt=0, description="PSI at or above this drifts")
    distance: float | None = Field(
        None, gt=0, le=1, description="KS distance (numeric) / Jensen-Shannon distance (categorical) at or above this"
    )
    wasserstein: float | None = Field(
        None, gt=0, description="Numeric: Wasserstein-1 distance / reference std at or above this drifts"
    )
    missing: float | None = Field(None, gt=0, le=1, description="A change of the missing share by at least this")


class FeatureSpec(BaseModel):
    """One input column. ``category`` features list their allowed values; ``drift`` optionally
    overrides the drift thresholds for this feature."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: FeatureName
    type: FeatureType
    nullable: bool = False
    categories: list[str] | None = None
    unknown_category: Literal["error", "allow"] = "error"
    description: str | None = None
    drift: DriftThresholds | None = None

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
