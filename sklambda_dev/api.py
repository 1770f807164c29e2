"""The Python API for notebooks and scripts: ``sklambda.publish(model, X, y, name=..., promote=True)``.

It publishes to the running local stack (``make serve``) by default, or to a deployed stack with
``stack="sklambda-dev"`` (the bucket is read from the stack's outputs, with your AWS credentials).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from typing import Any

from sklambda.lifecycle.user_model import Published, PublishRefused, publish_user_model
from sklambda.registry.features import FeatureSchema
from sklambda.registry.store import DEFAULT_ALIAS

__all__ = ["publish", "Published", "PublishRefused"]


def publish(
    estimator: Any,
    X: Any = None,  # scikit-learn's own name for the feature matrix
    y: Any = None,
    *,
    name: str,
    promote: bool = False,
    X_holdout: Any = None,
    y_holdout: Any = None,
    schema: FeatureSchema | list[dict[str, Any]] | None = None,
    feature_names: list[str] | None = None,
    target: str | None = None,
    description: str | None = None,
    stack: str | None = None,
    verbose: bool = True,
    progress: Callable[[str], None] | None = None,
) -> Published:
    """Publish a fitted scikit-learn estimator or pipeline as the next version of ``name``.

    ``X``/``y`` (a pandas DataFrame or a 2-D array, and the labels) give the feature schema, the drift
    baseline, the stored training set for retrains and holdout metrics (on ``X_holdout``/``y_holdout`` or
    a split drawn from ``X``). Without them the schema is read from the fitted pipeline and the version
    lacks drift and retraining (``Published.lacks`` says so). Raises :class:`PublishRefused` with the
    reason when the version could not be served exactly; nothing is written then.
    """
    from sklambda_dev.cli import CliError, resolve_target

    try:
        target_stack = resolve_target(argparse.Namespace(stack=stack, bucket=None))
    except CliError as err:
        raise RuntimeError(str(err)) from err
    registry = target_stack.registry()
    if isinstance(schema, list):
        schema = FeatureSchema(features=schema)  # type: ignore[arg-type]
    say = progress or (print if verbose else (lambda _m: None))
    published = publish_user_model(
        registry,
        name,
        estimator,
        X,
        y,
        x_holdout=X_holdout,
        y_holdout=y_holdout,
        schema=schema,
        feature_names=feature_names,
        target=target,
        description=description,
        progress=say,
    )
    if promote:
        registry.promote(name, published.manifest.version, reason="sklambda.publish")
    if verbose:
        print(published.summary())
        if promote:
            print(f"promoted {name} v{published.manifest.version} to {DEFAULT_ALIAS} ({target_stack.description})")
    return published
