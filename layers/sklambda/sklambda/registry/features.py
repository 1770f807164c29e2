"""The feature-schema contract: a model's ordered input columns, their types and categories.

The schema travels in every manifest; request validation (``sklambda.serving.validation``), the
drift baseline and training all read it. See docs/architecture.md, "The registry contract".
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

FeatureType = Literal["number", "integer", "boolean", "category"]
FEATURE_NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$"


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
