"""Turning a registry version into a model that can answer: verify first, then deserialise.

A pickle is code execution, so the order is fixed: the manifest must be compatible with this
runtime, the artifact's bytes must hash to the manifest's sha256, and only then is it loaded.
The runtime is chosen per artifact (``ArtifactRef.runtime``):

- ``sklambda-trees`` (``sklambda.trees``): the lean artifact a version gets at publish time when
  its pipeline converts exactly (``Manifest.lean``). numpy only, no pickle, no scikit-learn import.
- ``sklearn-joblib``: the canonical joblib pickle, for every other version (and the reason is in
  the manifest). scikit-learn is imported only when such an artifact is loaded.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from functools import cache
from importlib import metadata
from typing import Any

import numpy as np

from sklambda.core.errors import IncompatibleModel, SklambdaError
from sklambda.registry.manifest import Manifest
from sklambda.registry.store import ModelRegistry
from sklambda.serving.validation import InstanceValidator

SKLEARN_RUNTIME = "sklearn-joblib"
TREES_RUNTIME = "sklambda-trees"
LEAN_RUNTIME = "sklambda-lean"
RUNTIMES = (LEAN_RUNTIME, TREES_RUNTIME, SKLEARN_RUNTIME)


class ModelLoadError(SklambdaError):
    code = "model_load_error"


@cache
def installed_version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def _major_minor(version: str) -> tuple[str, ...]:
    return tuple(version.split(".")[:2])


def check_compatibility(manifest: Manifest) -> None:
    """Refuse a manifest whose scikit-learn major.minor differs from this runtime's."""
    wanted = manifest.libraries.get("scikit-learn")
    if wanted is None:
        raise IncompatibleModel(
            f"{manifest.name} v{manifest.version}: manifest does not record its scikit-learn version"
        )
    have = installed_version("scikit-learn")
    if have is None:
        raise IncompatibleModel("scikit-learn is not installed in this runtime")
    if _major_minor(wanted) != _major_minor(have):
        raise IncompatibleModel(
            f"{manifest.name} v{manifest.version} was trained with scikit-learn {wanted}, this runtime has "
            f"{have}; major.minor must match. Retrain or re-publish the model with scikit-learn "
            f"{'.'.join(_major_minor(have))}.x, or deploy a runtime with scikit-learn "
            f"{'.'.join(_major_minor(wanted))}.x."
        )


def deserialise_sklearn(data: bytes) -> tuple[Any, list[str]]:
    """Unpickle; return the estimator and any warnings raised while loading (for the log).

    Patch-level version differences only warn (major.minor was checked before); they are
    reported, not swallowed.
    """
    import joblib  # imported here: it pulls in scikit-learn modules only when a model is loaded

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        model = joblib.load(io.BytesIO(data))
    return model, [f"{type(w.message).__name__}: {w.message}" for w in caught]


@dataclass
class LoadedModel:
    """A verified, deserialised version, ready to answer."""

    manifest: Manifest
    estimator: Any
    load_warnings: list[str] = field(default_factory=list)
    runtime: str = SKLEARN_RUNTIME
    artifact: str = "model.joblib"
    validator: InstanceValidator = field(init=False)

    def __post_init__(self) -> None:
        self.validator = InstanceValidator(self.manifest.schema)
        self._has_proba = self.manifest.task == "classification" and hasattr(self.estimator, "predict_proba")

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def version(self) -> str:
        return self.manifest.version

    def predict(self, matrix: np.ndarray) -> tuple[list[Any], list[list[float]] | None]:
        """Predictions (and class probabilities for classifiers) as plain JSON-ready lists."""
        if self._has_proba:
            proba = self.estimator.predict_proba(matrix)
            classes = self.estimator.classes_
            labels = classes[np.argmax(proba, axis=1)]
            return _plain(labels), proba.tolist()
        return _plain(self.estimator.predict(matrix)), None


def _plain(values: np.ndarray) -> list[Any]:
    return np.asarray(values).tolist()


def serving_artifact(manifest: Manifest) -> tuple[str, str]:
    """(file, runtime) the predict path loads for a version: the lean artifact when accepted."""
    lean = manifest.lean
    if lean is not None and lean.accepted and lean.artifact in manifest.artifacts:
        ref = manifest.artifacts[lean.artifact]
        return lean.artifact, ref.runtime or lean.runtime
    file = manifest.primary_artifact
    primary = manifest.artifacts.get(file)
    return file, (primary.runtime if primary is not None and primary.runtime else SKLEARN_RUNTIME)


def load_version(registry: ModelRegistry, manifest: Manifest) -> LoadedModel:
    """Runtime choice → compatibility check → verified fetch (``ModelRegistry.get_artifact``) → deserialise."""
    file, runtime = serving_artifact(manifest)
    if file not in manifest.artifacts:
        raise ModelLoadError(f"{manifest.name} v{manifest.version} has no artifact {file!r}")
    if runtime not in RUNTIMES:
        raise ModelLoadError(f"{manifest.name} v{manifest.version}: unknown runtime {runtime!r} for {file}")
    if runtime == SKLEARN_RUNTIME:
        check_compatibility(manifest)
    data = registry.get_artifact(manifest, file)  # sha256-verified: nothing is parsed before this
    load_warnings: list[str] = []
    estimator: Any
    try:
        if runtime == LEAN_RUNTIME:
            from sklambda.serving import lean

            estimator = lean.load(data)
        elif runtime == TREES_RUNTIME:
            from sklambda.serving import trees

            estimator = trees.load(data)
        else:
            estimator, load_warnings = deserialise_sklearn(data)
    except SklambdaError:
        raise
    except Exception as err:  # a corrupt pickle can raise almost anything
        raise ModelLoadError(f"{manifest.name} v{manifest.version}: {file} could not be loaded: {err!r}") from err
    if not hasattr(estimator, "predict"):
        raise ModelLoadError(f"{manifest.name} v{manifest.version}: {file} holds no estimator with predict()")
    lean_classes = runtime in (LEAN_RUNTIME, TREES_RUNTIME) and manifest.task == "classification"
    if lean_classes and np.asarray(estimator.classes_).tolist() != list(manifest.classes or []):
        raise ModelLoadError(f"{manifest.name} v{manifest.version}: {file} classes differ from the manifest's")
    return LoadedModel(
        manifest=manifest, estimator=estimator, load_warnings=load_warnings, runtime=runtime, artifact=file
    )
