"""sklambda edge runtime: one exported model version, answered with numpy alone.

``sklambda export NAME [--version V] DIR`` writes a bundle of four files:

    model.lean.npz     the version's lean artifact, byte for byte as published (JSON header + numeric arrays, no pickle)
    features.json      its feature schema (names, types, categories, nullability)
    certificate.json   the parity certificate: every file's sha256, golden rows with the answers sklambda's served
                       runtime gave them at export time, the library versions they were checked with
    sklambda_edge.py   this module: sklambda's lean runtime and the API's request validator, copied from the library
                       when the bundle was written, plus this command line

It needs Python 3.10+ and numpy, nothing else (no scikit-learn, no sklambda, no pydantic):

    python sklambda_edge.py check [--exact]     re-verify every sha256 and every golden row on this machine;
                                                exit 1 with the reason if anything differs
    python sklambda_edge.py predict rows.json   answer rows: a JSON list or {"instances": [...]}; '-' reads stdin
    python sklambda_edge.py info                what the bundle serves

Rows are objects keyed by feature name or lists in schema order, as the HTTP API takes them, and are
validated the same way (types, categories, nulls; every error names its field, e.g.
``instances[3].age``). From Python, with the bundle directory on ``sys.path``::

    import sklambda_edge
    model = sklambda_edge.load_bundle("path/to/bundle")   # verifies the artifact's sha256 before parsing it
    model.predict([{"age": 41, "plan": "pro"}])            # labels (classifiers) or values (regressors)
    model.predict_proba([[41, "pro"]])                     # probabilities, columns in model.classes order
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

if TYPE_CHECKING:  # in a bundle, the code of these modules stands here (inlined by sklambda.lifecycle.export)
    from sklambda.core.errors import InvalidInput
    from sklambda.serving.lean import LeanModel, load
    from sklambda.serving.validation import InstanceValidator

EDGE_FORMAT = 1
CERTIFICATE_FILE = "certificate.json"
CERTIFICATE_KIND = "sklambda-edge-certificate"
FEATURE_TYPES = ("number", "integer", "boolean", "category")
UNKNOWN_POLICIES = ("error", "allow")
FEATURE_KEYS = ("name", "type", "nullable", "categories", "unknown_category", "description")
MAX_FEATURE_NAME = 256
MAX_PROBLEMS_SHOWN = 10
EXIT_FAILED = 1
EXIT_USAGE = 2


class BundleError(Exception):
    """The bundle is incomplete, altered, or not one this runtime reads; the message says which file and why."""


class ScoringError(Exception):
    """Rows that passed validation but that the model refuses (as scikit-learn refuses them, e.g. an infinity)."""


# ----------------------------------------------------------------------------- the feature schema
class FeatureSpec:
    """One input column, read from ``features.json`` (the rules of ``sklambda.registry.features.FeatureSpec``)."""

    __slots__ = FEATURE_KEYS

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise BundleError(f"{where}: a feature must be an object")
        extra = sorted(set(data) - set(FEATURE_KEYS))
        if extra:
            raise BundleError(f"{where}: unknown keys {extra}")
        name, kind = data.get("name"), data.get("type")
        if not isinstance(name, str) or not name.strip() or len(name) > MAX_FEATURE_NAME:
            raise BundleError(f"{where}: 'name' must be a non-blank string of at most {MAX_FEATURE_NAME} characters")
        if any(not c.isprintable() and c != " " for c in name):
            raise BundleError(f"{where}: feature name {name[:64]!r} contains a control character")
        if kind not in FEATURE_TYPES:
            raise BundleError(f"{where} ({name}): 'type' must be one of {', '.join(FEATURE_TYPES)}")
        nullable = data.get("nullable", False)
        categories = data.get("categories")
        unknown = data.get("unknown_category", "error")
        description = data.get("description")
        if not isinstance(nullable, bool):
            raise BundleError(f"{where} ({name}): 'nullable' must be true or false")
        if kind == "category":
            if not isinstance(categories, list) or not categories or not all(isinstance(c, str) for c in categories):
                raise BundleError(f"{where} ({name}): a category feature needs a non-empty list of string categories")
        elif categories is not None:
            raise BundleError(f"{where} ({name}): a {kind} feature cannot list categories")
        if unknown not in UNKNOWN_POLICIES:
            raise BundleError(f"{where} ({name}): 'unknown_category' must be 'error' or 'allow'")
        if description is not None and not isinstance(description, str):
            raise BundleError(f"{where} ({name}): 'description' must be a string")
        self.name: str = name
        self.type: str = kind
        self.nullable: bool = nullable
        self.categories: list[str] | None = categories
        self.unknown_category: str = unknown
        self.description: str | None = description


class FeatureSchema:
    """The ordered input columns (what ``InstanceValidator`` reads: ``features``, ``names``, ``all_numeric``)."""

    def __init__(self, data: Any) -> None:
        if not isinstance(data, dict) or set(data) != {"features"} or not isinstance(data["features"], list):
            raise BundleError('the feature schema must be {"features": [...]}')
        if not data["features"]:
            raise BundleError("the feature schema lists no features")
        self.features = [FeatureSpec(f, f"features[{i}]") for i, f in enumerate(data["features"])]
        if len(set(self.names)) != len(self.names):
            raise BundleError("the feature schema names a feature twice")

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def all_numeric(self) -> bool:
        return all(f.type != "category" for f in self.features)


# ----------------------------------------------------------------------------- shared with the exporter
def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def canonical_json(value: Any) -> bytes:
    """The bytes a golden section is hashed as: sorted keys, no spaces, ASCII, no NaN literals."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False).encode()


def golden_digest(golden: dict[str, Any]) -> str:
    """sha256 of the golden section without its own ``sha256`` field."""
    return hashlib.sha256(canonical_json({k: v for k, v in golden.items() if k != "sha256"})).hexdigest()


def encode_number(value: float) -> float | str:
    """A float for strict JSON: finite as is, NaN and infinities as the strings "NaN", "Infinity", "-Infinity"."""
    if math.isfinite(value):
        return value
    return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")


def decode_number(value: Any) -> float:
    return float(value)  # float("NaN"), float("Infinity") and float("-Infinity") parse


def encode_answer(prediction: Any, probabilities: list[float] | None, task: str) -> dict[str, Any]:
    """One row's answer as the certificate stores it."""
    out: dict[str, Any] = {"prediction": encode_number(prediction) if task == "regression" else prediction}
    if probabilities is not None:
        out["probabilities"] = [encode_number(p) for p in probabilities]
    return out


def _same_label(expected: Any, got: Any) -> bool:
    if isinstance(expected, float) and isinstance(got, float) and math.isnan(expected) and math.isnan(got):
        return True
    return type(expected) is type(got) and expected == got


def _difference(expected: float, got: float, relative: bool) -> float:
    if expected == got or (math.isnan(expected) and math.isnan(got)):
        return 0.0
    if math.isnan(expected) or math.isnan(got) or math.isinf(expected) or math.isinf(got):
        return math.inf
    diff = abs(expected - got)
    return diff / max(1.0, abs(expected)) if relative else diff


def compare_answer(expected: dict[str, Any], prediction: Any, probabilities: list[float] | None, task: str) -> float:
    """The largest difference between a stored answer and a computed one (inf: labels or shapes differ).

    Labels must be equal (value and JSON type); a probability is compared absolutely, a regression
    value relative to max(1, |value|), as the publish-time parity check compares them.
    """
    if task == "regression":
        return _difference(decode_number(expected.get("prediction")), float(prediction), relative=True)
    if not _same_label(expected.get("prediction"), prediction):
        return math.inf
    want = expected.get("probabilities")
    if want is None or probabilities is None:
        return 0.0 if want is None and probabilities is None else math.inf
    if len(want) != len(probabilities):
        return math.inf
    return max(
        (_difference(decode_number(w), float(g), relative=False) for w, g in zip(want, probabilities, strict=True)),
        default=0.0,
    )


# ----------------------------------------------------------------------------- the model
def read_certificate(directory: Path) -> dict[str, Any]:
    path = directory / CERTIFICATE_FILE
    try:
        certificate = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: not an sklambda edge bundle") from None
    except (OSError, ValueError) as err:
        raise BundleError(f"{path} cannot be read: {err}") from err
    if not isinstance(certificate, dict) or certificate.get("kind") != CERTIFICATE_KIND:
        raise BundleError(f"{path} is not an sklambda edge certificate")
    if certificate.get("format") != EDGE_FORMAT:
        raise BundleError(f"{path} has format {certificate.get('format')!r}; this runtime reads format {EDGE_FORMAT}")
    for key in ("files", "artifact", "schema", "module", "model", "golden"):
        if key not in certificate:
            raise BundleError(f"{path} lacks {key!r}")
    return certificate


def file_problem(directory: Path, file: str, ref: Any) -> str | None:
    """Why ``file`` does not match its certificate entry, or None."""
    if not isinstance(ref, dict) or not isinstance(ref.get("sha256"), str) or not isinstance(ref.get("bytes"), int):
        return f"{file}: the certificate's entry is malformed"
    if Path(file).name != file:
        return f"{file}: not a plain file name"
    path = directory / file
    if not path.is_file():
        return f"{file}: missing"
    size = path.stat().st_size
    if size != ref["bytes"]:
        return f"{file}: {size} bytes, the certificate says {ref['bytes']}"
    digest = sha256_file(path)
    if digest != ref["sha256"]:
        return f"{file}: sha256 {digest} differs from the certificate's {ref['sha256']}"
    return None


class EdgeModel:
    """A bundle loaded for scoring: the artifact and schema are verified against the certificate first."""

    def __init__(self, directory: str | Path = ".") -> None:
        self.directory = Path(directory)
        self.certificate = read_certificate(self.directory)
        about = self.certificate["model"]
        self.name, self.version, self.task = about.get("name"), about.get("version"), about.get("task")
        self.schema = FeatureSchema(json.loads(self._verified(self.certificate["schema"])))
        self.model: LeanModel = load(self._verified(self.certificate["artifact"]))
        if self.model.task != self.task:
            raise BundleError(f"the artifact is a {self.model.task} model, the certificate says {self.task}")
        if self.model.n_features_in_ != len(self.schema.features):
            raise BundleError("the artifact and the feature schema have different numbers of inputs")
        self.classes: list[Any] | None = None
        if self.task == "classification":
            self.classes = np.asarray(self.model.classes_).tolist()
            if self.classes != about.get("classes"):
                raise BundleError("the artifact's classes differ from the certificate's")
        self.validator = InstanceValidator(cast(Any, self.schema))
        self.has_proba = self.task == "classification" and hasattr(self.model, "predict_proba")

    def _verified(self, file: str) -> bytes:
        problem = file_problem(self.directory, file, self.certificate["files"].get(file))
        if problem:
            raise BundleError(f"refusing to load {file}: {problem}")
        return (self.directory / file).read_bytes()

    def matrix(self, instances: Any) -> np.ndarray:
        """The validated input matrix (InvalidInput naming each bad field, as the API answers 422)."""
        if not isinstance(instances, list):
            raise InvalidInput(
                "instances: expected a list of instances",
                details=[{"field": "instances", "message": "expected a list of instances"}],
            )
        if not instances:
            raise InvalidInput(
                "instances: must contain at least one instance",
                details=[{"field": "instances", "message": "must contain at least one instance"}],
            )
        return self.validator.to_matrix(instances)

    def score(self, instances: Any) -> tuple[list[Any], list[list[float]] | None]:
        """(predictions, probabilities or None), as the predict function answers them."""
        matrix = self.matrix(instances)
        try:
            if self.has_proba:
                proba = np.asarray(self.model.predict_proba(matrix), dtype=np.float64)
                labels = np.asarray(self.model.classes_)[np.argmax(proba, axis=1)]
                return labels.tolist(), proba.tolist()
            return np.asarray(self.model.predict(matrix)).tolist(), None
        except Exception as err:  # validated rows the model refuses (the predict function answers 503)
            raise ScoringError(f"the model cannot score these rows: {err}") from err

    def predict(self, instances: Any) -> list[Any]:
        return self.score(instances)[0]

    def predict_proba(self, instances: Any) -> list[list[float]]:
        if not self.has_proba:
            raise AttributeError(f"{self.name} v{self.version} ({self.task}) has no predict_proba")
        proba = self.score(instances)[1]
        assert proba is not None
        return proba

    def answer(self, instances: Any) -> dict[str, Any]:
        """The HTTP API's response body, without prediction ids."""
        predictions, probabilities = self.score(instances)
        body: dict[str, Any] = {"model": {"name": self.name, "version": self.version}, "predictions": predictions}
        if probabilities is not None:
            body["probabilities"] = probabilities
            body["classes"] = self.classes
        return body


def load_bundle(directory: str | Path = ".") -> EdgeModel:
    return EdgeModel(directory)


# ----------------------------------------------------------------------------- check
class CheckReport:
    def __init__(self) -> None:
        self.problems: list[str] = []
        self.notes: list[str] = []

    @property
    def passed(self) -> bool:
        return not self.problems


def _answered(
    model: EdgeModel, rows: list[Any], expected: list[dict[str, Any]], how: str, tolerance: float, report: CheckReport
) -> float:
    """Score ``rows`` in one batch and compare each answer; the largest difference (inf on a failure)."""
    try:
        predictions, probabilities = model.score(rows)
    except Exception as err:
        report.problems.append(f"golden rows {how}: the runtime refused them: {err}")
        return math.inf
    worst = 0.0
    for i, want in enumerate(expected):
        diff = compare_answer(want, predictions[i], None if probabilities is None else probabilities[i], model.task)
        worst = max(worst, diff)
        if diff > tolerance:
            report.problems.append(
                f"golden row {how} #{i}: expected {json.dumps(want)}, got prediction {predictions[i]!r}"
                + ("" if probabilities is None else f", probabilities {probabilities[i]}")
                + f" (difference {diff:.3g})"
            )
    return worst


def _golden(
    model: EdgeModel, cases: list[Any], tolerance: float, report: CheckReport
) -> tuple[float, tuple[int, int, int]]:
    """Every golden case against this runtime; (largest difference, (answered, refused, invalid) counts)."""
    answered = [c for c in cases if "refused" not in c["expect"]]
    refused_model = [c for c in cases if c["expect"].get("refused") == "model"]
    refused_input = [c for c in cases if c["expect"].get("refused") == "validation"]
    if len(answered) + len(refused_model) + len(refused_input) != len(cases):
        raise ValueError("a golden case is neither answered nor refused by the model or the validator")
    worst = 0.0
    if answered:
        rows = [c["row"] for c in answered]
        expected = [c["expect"] for c in answered]
        in_batch = [c.get("expect_in_batch", c["expect"]) for c in answered]  # a BLAS product rounds by batch shape
        names = model.schema.names
        as_lists = [[row[n] for n in names] if isinstance(row, dict) else row for row in rows]
        worst = max(worst, _answered(model, rows, in_batch, "in one batch", tolerance, report))
        worst = max(worst, _answered(model, as_lists, in_batch, "as lists in schema order", tolerance, report))
        for i, (row, want) in enumerate(zip(rows, expected, strict=True)):
            worst = max(worst, _answered(model, [row], [want], f"{i} alone", tolerance, report))
        if worst > tolerance:
            report.problems.insert(
                0,
                f"golden rows differ: largest difference {worst:.3g}, "
                + ("bit-identical answers required (--exact)" if tolerance == 0 else f"tolerance {tolerance:g}"),
            )
    for i, case in enumerate(refused_model):
        try:
            model.score([case["row"]])
            report.problems.append(f"refused row #{i}: the served runtime refused it, this runtime answers it")
        except ScoringError:
            pass
        except InvalidInput as err:
            report.problems.append(f"refused row #{i}: expected the model to refuse it, the validator did: {err}")
    for i, case in enumerate(refused_input):
        want = case["expect"]
        try:
            model.matrix([case["row"]])
            report.problems.append(f"invalid row #{i}: expected {want.get('field')} to be refused, it was accepted")
        except InvalidInput as err:
            first = err.details[0] if err.details else {}
            if first.get("field") != want.get("field") or first.get("message") != want.get("message"):
                report.problems.append(
                    f"invalid row #{i}: refused as {first.get('field')}: {first.get('message')!r}, "
                    f"the certificate says {want.get('field')}: {want.get('message')!r}"
                )
    return worst, (len(answered), len(refused_model), len(refused_input))


def check(directory: str | Path = ".", *, exact: bool = False, runtime_file: str | Path | None = None) -> CheckReport:
    """Re-verify a bundle here: every file's sha256, the golden section's digest, every golden row.

    Golden answers must match labels exactly and values within the certificate's tolerance (the
    publish-time parity tolerance), or bit for bit with ``exact``; rows the served runtime refused
    must be refused, and invalid rows refused with the same field and message.
    """
    directory = Path(directory)
    report = CheckReport()
    try:
        certificate = read_certificate(directory)
    except BundleError as err:
        report.problems.append(str(err))
        return report
    files = certificate["files"]
    for file in sorted(files):
        problem = file_problem(directory, file, files[file])
        if problem:
            report.problems.append(problem)
    for key in ("artifact", "schema", "module"):
        if certificate[key] not in files:
            report.problems.append(f"the certificate lists no sha256 for its {key} {certificate[key]!r}")
    if runtime_file is not None and certificate["module"] in files:
        running = sha256_file(Path(runtime_file))
        if running != files[certificate["module"]].get("sha256"):
            report.problems.append(
                f"this runtime ({runtime_file}, sha256 {running}) is not the bundle's {certificate['module']}"
            )
    golden = certificate["golden"]
    if not isinstance(golden, dict) or not isinstance(golden.get("cases"), list):
        report.problems.append("the certificate's golden section is malformed")
        return report
    try:
        digest = golden_digest(golden)
    except ValueError as err:
        report.problems.append(f"the golden section cannot be hashed: {err}")
        return report
    if digest != golden.get("sha256"):
        report.problems.append(f"the golden rows were altered: sha256 {digest} differs from the recorded one")
    if report.problems:
        return report  # nothing is parsed or scored from a bundle whose bytes are not the certified ones
    report.notes.append(f"{len(files)} files match their sha256: {', '.join(sorted(files))}")
    try:
        model = EdgeModel(directory)
    except Exception as err:
        report.problems.append(f"the bundle does not load: {err}")
        return report
    tolerance = 0.0 if exact else float(golden.get("tolerance", 1e-9))
    try:
        worst, counts = _golden(model, golden["cases"], tolerance, report)
    except Exception as err:  # a golden section that hashes right but is not one the exporter wrote
        report.problems.append(f"the golden section is malformed: {err!r}")
        return report
    if report.problems:
        return report
    versions = certificate.get("libraries", {})
    exported = versions.get("exported", {}) if isinstance(versions, dict) else {}
    answered, refused_model, refused_input = counts
    report.notes.append(
        f"{answered} golden rows answered in one batch, as lists and one by one: labels equal, "
        f"largest difference {worst:.3g} ({'bit-identical' if worst == 0 else f'tolerance {tolerance:g}'})"
    )
    report.notes.append(f"{refused_model} rows the served runtime refused are refused here too")
    report.notes.append(f"{refused_input} invalid rows are refused with the same field and message")
    report.notes.append(
        f"numpy {np.__version__} and Python {sys.version.split()[0]} here; "
        f"exported with numpy {exported.get('numpy')} and Python {exported.get('python')}"
    )
    return report


# ----------------------------------------------------------------------------- command line
def _read_rows(source: str) -> Any:
    text = sys.stdin.read() if source == "-" else Path(source).read_text(encoding="utf-8")
    data = json.loads(text)
    return data["instances"] if isinstance(data, dict) and "instances" in data else data


def _here() -> Path:
    return Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="sklambda_edge.py", description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--bundle", type=Path, default=None, help="the bundle directory (default: this file's)")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("check", help="re-verify every sha256 and golden row; exit 1 with the reason on a mismatch")
    p.add_argument("--exact", action="store_true", help="require bit-identical answers, not the parity tolerance")
    p = sub.add_parser("predict", help="answer rows: a JSON list or {'instances': [...]} ('-' reads stdin)")
    p.add_argument("rows")
    sub.add_parser("info", help="what the bundle serves")
    args = parser.parse_args(argv)
    if sys.version_info < (3, 10):  # noqa: UP036 -- the library needs 3.11; a device may run anything
        print("sklambda_edge: needs Python 3.10 or newer", file=sys.stderr)
        return EXIT_USAGE
    directory = args.bundle or _here()
    if args.command == "check":
        report = check(directory, exact=args.exact, runtime_file=Path(__file__).resolve())
        if not report.passed:
            shown = report.problems[:MAX_PROBLEMS_SHOWN]
            more = len(report.problems) - len(shown)
            print(
                "check FAILED:\n  " + "\n  ".join(shown) + (f"\n  ... and {more} more" if more > 0 else ""),
                file=sys.stderr,
            )
            return EXIT_FAILED
        print("check passed:\n  " + "\n  ".join(report.notes))
        return 0
    try:
        model = EdgeModel(directory)
    except BundleError as err:
        print(f"sklambda_edge: {err}", file=sys.stderr)
        return EXIT_FAILED
    if args.command == "info":
        about = dict(model.certificate["model"])
        about["features"] = [{"name": f.name, "type": f.type, "nullable": f.nullable} for f in model.schema.features]
        about["libraries"] = model.certificate.get("libraries")
        print(json.dumps(about, indent=2, ensure_ascii=False))
        return 0
    try:
        body = model.answer(_read_rows(args.rows))
    except (OSError, ValueError) as err:
        print(f"sklambda_edge: cannot read rows from {args.rows}: {err}", file=sys.stderr)
        return EXIT_USAGE
    except InvalidInput as err:
        print(json.dumps(err.to_body(), ensure_ascii=False), file=sys.stderr)
        return EXIT_USAGE
    except ScoringError as err:
        print(json.dumps({"error": "model_refused", "message": str(err)}), file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(body, separators=(",", ":")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
