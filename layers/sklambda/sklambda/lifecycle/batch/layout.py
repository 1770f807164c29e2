"""Where a batch job's files live in the batch bucket: one place for every key name.

::

    input/...                                   what is scored (the CLI uploads local files here)
    output/<job>/manifest.json                  the job's account, written last
    output/<job>/predictions/part-NNNNN.<ext>   one file per part, rows in input order
    output/<job>/rejects/part-NNNNN.jsonl       rows that failed validation (only when a part has some)
    output/<job>/parts/part-NNNNN.json          a part's commit: counts, the files' sha256 and sizes
    output/<job>/_job/plan.json                 the plan: pinned version, input files and their ETags
    output/<job>/_job/parts-<sha>.json          the part list the Distributed Map reads (a JSON array)
    output/<job>/_job/errors/part-NNNNN/...     why an attempt at a part failed
    output/_map/<map run>/                      the Distributed Map's ResultWriter output (never read by a job)
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sklambda.lifecycle.batch.models import JOB_PATTERN, BatchInputError, Format

INPUT_ROOT = "input/"
OUTPUT_ROOT = "output/"
EXTENSIONS: dict[str, Format] = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl"}
_JOB_RE = re.compile(JOB_PATTERN)


@dataclass(frozen=True)
class S3Uri:
    bucket: str
    key: str

    def __str__(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(text: str, what: str) -> S3Uri:
    if not isinstance(text, str) or not text.startswith("s3://"):
        raise BatchInputError(f"{what} must be an s3://bucket/key URI, got {str(text)[:200]!r}")
    bucket, _, key = text[5:].partition("/")
    if not bucket or "\x00" in key or any(part in (".", "..") for part in key.split("/")):
        raise BatchInputError(f"{what} {text[:200]!r} is not a valid S3 URI")
    return S3Uri(bucket, key)


def input_location(text: str, batch_bucket: str) -> S3Uri:
    """The input object or prefix; it must be under ``input/`` of the batch bucket (what the functions may read)."""
    uri = parse_s3_uri(text, "input")
    if uri.bucket != batch_bucket or not uri.key.startswith(INPUT_ROOT) or uri.key == INPUT_ROOT:
        raise BatchInputError(
            f"input {text[:200]!r} is not under s3://{batch_bucket}/{INPUT_ROOT}: the batch functions read only "
            f"there (copy it there, or let `sklambda batch` upload a local file)"
        )
    return uri


def output_location(text: str | None, batch_bucket: str, job: str) -> S3Uri:
    """The job's output prefix (always ending in ``/``), under ``output/`` of the batch bucket."""
    if text is None:
        return S3Uri(batch_bucket, f"{OUTPUT_ROOT}{job}/")
    uri = parse_s3_uri(text, "output")
    key = uri.key if uri.key.endswith("/") else uri.key + "/"
    if uri.bucket != batch_bucket or not key.startswith(OUTPUT_ROOT) or key == OUTPUT_ROOT:
        raise BatchInputError(
            f"output {text[:200]!r} is not a prefix under s3://{batch_bucket}/{OUTPUT_ROOT}: the batch functions "
            "write only there"
        )
    return S3Uri(batch_bucket, key)


def job_name(text: str) -> str:
    """A job name from free text (an execution name): S3- and Step-Functions-safe."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-.") or "job"
    cleaned = cleaned[:80]
    if not _JOB_RE.match(cleaned):
        cleaned = "j" + cleaned[:79]
    return cleaned


def format_of(key: str) -> Format | None:
    lowered = key.lower()
    return next((fmt for ext, fmt in EXTENSIONS.items() if lowered.endswith(ext)), None)


def part_name(part: int) -> str:
    return f"part-{part:05d}"


def predictions_key(prefix: str, part: int, fmt: Format) -> str:
    return f"{prefix}predictions/{part_name(part)}.{fmt}"


def rejects_key(prefix: str, part: int) -> str:
    return f"{prefix}rejects/{part_name(part)}.jsonl"


def record_key(prefix: str, part: int) -> str:
    return f"{prefix}parts/{part_name(part)}.json"


def records_prefix(prefix: str) -> str:
    return f"{prefix}parts/"


def error_key(prefix: str, part: int, attempt_id: str) -> str:
    return f"{prefix}_job/errors/{part_name(part)}/{attempt_id}.json"


def errors_prefix(prefix: str, part: int) -> str:
    return f"{prefix}_job/errors/{part_name(part)}/"


def plan_key(prefix: str) -> str:
    return f"{prefix}_job/plan.json"


def parts_key(prefix: str, digest: str) -> str:
    """Named by its content's sha256: planners racing for a job never overwrite each other's list."""
    return f"{prefix}_job/parts-{digest[:16]}.json"


def manifest_key(prefix: str) -> str:
    return f"{prefix}manifest.json"
