"""sklambda runtime library, deployed as a Lambda layer. Its packages, lowest first:

- ``core``: errors, settings, AWS client factories, S3 answers, observability — what every part shares;
- ``registry``: the registry contract (manifest, alias record, feature schema) and its S3 store;
- ``serving``: the request path — artifact loading and runtimes, request validation, the model service;
- ``monitoring``: capture, drift, live quality, feedback and reports;
- ``lifecycle``: training, lean conversion, publishing, the retrain steps and the deploy check.

Imports only point down this list. Nothing here talks to AWS or imports scikit-learn at import
time. The map: docs/architecture.md.
"""

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    """``sklambda.publish`` for notebooks and scripts (development install), imported on first use only:
    the predict path imports this package and must not pay for it."""
    if name == "publish":
        try:
            from sklambda_dev.api import publish
        except ImportError as err:  # the Lambda layer ships the runtime library only
            raise AttributeError("sklambda.publish needs the development install (pip install -e .)") from err
        return publish
    raise AttributeError(f"module 'sklambda' has no attribute {name!r}")
