"""Before a version is written: score sample rows the way the predict function will, in a clean process.

``check(...)`` writes the artifacts, the manifest fields and the sample requests to a temporary folder
and runs ``python -I -m sklambda.lifecycle.serving_check DIR``: a fresh interpreter in isolated mode
(no current directory, no ``PYTHONPATH``, so nothing defined in a notebook or a user's script can be
imported), with pandas made unimportable as it is on Lambda. There the real loader loads the runtime
that will serve the version (the lean artifact when accepted, else the scikit-learn pickle), the
real validator turns the JSON instances into the input matrix, and the version answers. The pickle
is also loaded there on its own (retrains start from it). The parent compares the answers with the
user's estimator on the user's own rows: labels equal, probabilities and values within ``TOLERANCE``.

Anything else — an unpicklable custom class, a pipeline that needs pandas, a library the layers do
not ship, an answer that differs — refuses the version with the reason.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

TOLERANCE = 1e-9
TIMEOUT_SECONDS = 300


class ServingCheckFailed(ValueError):
    """The version would not serve, or would not answer like the estimator it was published from."""


def _plain(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def check(
    artifacts: dict[str, bytes],
    runtimes: dict[str, str],
    fields: dict[str, Any],
    instances: list[dict[str, Any]],
    expected_predictions: list[Any],
    expected_probabilities: list[list[float]] | None,
    *,
    python: str | None = None,
) -> dict[str, Any]:
    """Run the clean-process check; return what it measured, or raise ServingCheckFailed with the reason."""
    with tempfile.TemporaryDirectory(prefix="sklambda-check-") as tmp:
        folder = Path(tmp)
        (folder / "artifacts").mkdir()
        for file, data in artifacts.items():
            (folder / "artifacts" / file).write_bytes(data)
        (folder / "request.json").write_text(
            json.dumps({"runtimes": runtimes, "fields": fields, "instances": instances}, default=str)
        )
        proc = subprocess.run(
            [python or sys.executable, "-I", "-m", "sklambda.lifecycle.serving_check", str(folder)],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_SECONDS,
        )
        answer_file = folder / "answer.json"
        if proc.returncode != 0 or not answer_file.exists():
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
            raise ServingCheckFailed(f"the serving runtime could not load or score the version: {' | '.join(tail)}")
        answer = json.loads(answer_file.read_text())
    if answer.get("error"):
        raise ServingCheckFailed(answer["error"])
    return compare(answer, expected_predictions, expected_probabilities)


def compare(
    answer: dict[str, Any], expected_predictions: list[Any], expected_probabilities: list[list[float]] | None
) -> dict[str, Any]:
    served = answer["predictions"]
    rows = len(expected_predictions)
    if len(served) != rows:
        raise ServingCheckFailed(f"the served runtime answered {len(served)} rows for {rows}")
    max_diff = 0.0
    if fields_are_numbers(expected_predictions) and expected_probabilities is None:  # a regressor
        for got, want in zip(served, expected_predictions, strict=True):
            diff = abs(float(got) - float(want)) / max(1.0, abs(float(want)))
            max_diff = max(max_diff, diff)
        if not max_diff <= TOLERANCE:
            raise ServingCheckFailed(
                f"the {answer['runtime']} runtime's values differ from the estimator's by up to {max_diff:.3g}"
            )
    else:
        wrong = [i for i, (g, w) in enumerate(zip(served, expected_predictions, strict=True)) if g != w]
        if wrong:
            i = wrong[0]
            raise ServingCheckFailed(
                f"the {answer['runtime']} runtime labels {len(wrong)} of {rows} sample rows differently "
                f"(row {i}: {served[i]!r}, the estimator says {expected_predictions[i]!r})"
            )
    if expected_probabilities is not None:
        got_p = answer.get("probabilities")
        if got_p is None:
            raise ServingCheckFailed(f"the {answer['runtime']} runtime answers no probabilities")
        for got_row, want_row in zip(got_p, expected_probabilities, strict=True):
            for g, w in zip(got_row, want_row, strict=True):
                max_diff = max(max_diff, abs(g - w))
        if not max_diff <= TOLERANCE:
            raise ServingCheckFailed(
                f"the {answer['runtime']} runtime's probabilities differ from the estimator's by up to {max_diff:.3g}"
            )
    return {
        "rows": rows,
        "runtime": answer["runtime"],
        "max_abs_diff": max_diff,
        "pickle_loads": answer.get("pickle_loads", False),
    }


def fields_are_numbers(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


# ----------------------------------------------------------------------------- the clean process
class _FolderRegistry:
    """The loader's one call on a registry, served from the folder the parent wrote (its own bytes)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def get_artifact(self, _manifest: Any, file: str) -> bytes:
        return (self.folder / "artifacts" / file).read_bytes()


def _child(folder: Path) -> dict[str, Any]:
    import hashlib

    from sklambda.registry.manifest import Manifest
    from sklambda.serving.loader import deserialise_sklearn, load_version

    request = json.loads((folder / "request.json").read_text())
    refs = {}
    for path in sorted((folder / "artifacts").iterdir()):
        data = path.read_bytes()
        refs[path.name] = {
            "sha256": hashlib.sha256(data).hexdigest(),
            "bytes": len(data),
            "runtime": request["runtimes"].get(path.name),
        }
    fields = {**request["fields"], "name": "serving-check", "version": "1", "created_at": "1970-01-01T00:00:00Z"}
    manifest = Manifest.model_validate({**fields, "artifacts": refs})
    try:
        loaded = load_version(_FolderRegistry(folder), manifest)  # type: ignore[arg-type]
    except Exception as err:
        return {"error": f"the serving runtime cannot load the version: {err}"}
    pickle_loads = True
    try:
        deserialise_sklearn((folder / "artifacts" / manifest.primary_artifact).read_bytes())
    except Exception as err:
        return {"error": f"model.joblib cannot be loaded where sklambda runs (no pandas, no notebook code): {err!r}"}
    try:
        matrix = loaded.validator.to_matrix(request["instances"])
    except Exception as err:
        return {"error": f"the version's own schema refuses its sample rows: {err}"}
    try:
        predictions, probabilities = loaded.predict(matrix)
    except Exception as err:
        return {"error": f"the {loaded.runtime} runtime fails on the sample rows: {err!r}"}
    return {
        "runtime": loaded.runtime,
        "predictions": predictions,
        "probabilities": probabilities,
        "pickle_loads": pickle_loads,
    }


class _NoPandas:
    """A meta-path finder that makes pandas unimportable, as on Lambda (the layers do not ship it).

    Not ``sys.modules["pandas"] = None``: libraries test ``"pandas" in sys.modules`` before using it.
    """

    @staticmethod
    def find_spec(name: str, path: Any = None, target: Any = None) -> None:
        if name == "pandas" or name.startswith("pandas."):
            raise ModuleNotFoundError(f"No module named {name!r} (the Lambda layers do not ship pandas)", name=name)
        return None


def main(argv: list[str]) -> int:
    sys.meta_path.insert(0, _NoPandas())
    folder = Path(argv[0])
    answer = _child(folder)
    (folder / "answer.json").write_text(json.dumps(answer, default=_plain))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
