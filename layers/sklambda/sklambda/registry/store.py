"""The S3 model registry: immutable versions and atomically moved aliases.

Layout (docs/architecture.md)::

    models/<name>/versions/<version>/manifest.json
    models/<name>/versions/<version>/<artifact files>   model.joblib, baseline.json, ...
    models/<name>/aliases/<alias>.json

Every write is conditional: new objects use ``If-None-Match: *`` (a version can never be
overwritten) and alias moves use ``If-Match: <etag>`` (concurrent promotions never lose an
update; the loser re-reads and retries). This is the only module that talks to S3 for models.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sklambda.core.errors import (
    ConcurrentUpdate,
    IntegrityError,
    InvalidManifest,
    ModelNotFound,
    RegistryError,
    SklambdaError,
    VersionNotFound,
)
from sklambda.core.s3 import PRECONDITION_CODES, error_code, is_missing
from sklambda.registry.manifest import (
    ALIAS_HISTORY_LIMIT,
    ARTIFACT_NAME_PATTERN,
    MODEL_NAME_PATTERN,
    VERSION_PATTERN,
    AliasEvent,
    AliasRecord,
    ArtifactRef,
    CanaryRoute,
    Manifest,
    utcnow,
)

ROOT = "models/"
MANIFEST = "manifest.json"
DEFAULT_ALIAS = "production"
_NAME_RE = re.compile(MODEL_NAME_PATTERN)
_VERSION_RE = re.compile(VERSION_PATTERN)
_ARTIFACT_RE = re.compile(ARTIFACT_NAME_PATTERN)
MAX_WRITE_ATTEMPTS = 12


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class NotModified:
    """Sentinel returned by a conditional alias read when the alias has not moved."""


NOT_MODIFIED = NotModified()


@dataclass(frozen=True)
class VersionedAlias:
    record: AliasRecord
    etag: str


def check_model_name(name: str) -> str:
    if not isinstance(name, str) or not _NAME_RE.match(name):
        raise ModelNotFound(f"model {str(name)[:80]!r} not found (names are lower-case letters, digits and '-')")
    return name


class ModelRegistry:
    """Reads and writes the registry in one bucket. The S3 client is injected."""

    def __init__(self, s3: Any, bucket: str, *, sleep: Callable[[float], None] = time.sleep) -> None:
        self.s3 = s3
        self.bucket = bucket
        self._sleep = sleep

    # ---------------------------------------------------------------- keys
    @staticmethod
    def version_prefix(name: str, version: str) -> str:
        return f"{ROOT}{name}/versions/{version}/"

    @staticmethod
    def alias_key(name: str, alias: str) -> str:
        return f"{ROOT}{name}/aliases/{alias}.json"

    # ------------------------------------------------------------ low level
    def _get(self, key: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.s3.get_object(Bucket=self.bucket, Key=key, **kwargs)
        except ClientError as err:
            if is_missing(err, self.s3, self.bucket, key):
                raise KeyError(key) from err
            if error_code(err) in {"304", "NotModified"}:
                raise
            raise RegistryError(f"could not read s3://{self.bucket}/{key}: {error_code(err)}") from err
        except BotoCoreError as err:
            raise RegistryError(f"could not reach the model registry: {err}") from err

    def _put_new(self, key: str, body: bytes, content_type: str) -> bool:
        """Create an object that must not exist yet. False if it already exists."""
        try:
            self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type, IfNoneMatch="*")
            return True
        except ClientError as err:
            if error_code(err) in PRECONDITION_CODES:
                return False
            raise RegistryError(f"could not write s3://{self.bucket}/{key}: {error_code(err)}") from err
        except BotoCoreError as err:
            raise RegistryError(f"could not reach the model registry: {err}") from err

    def _list_prefixes(self, prefix: str) -> list[str]:
        out: list[str] = []
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix, Delimiter="/"):
                out.extend(p["Prefix"][len(prefix) :].rstrip("/") for p in page.get("CommonPrefixes", []))
        except ClientError as err:
            raise RegistryError(f"could not list s3://{self.bucket}/{prefix}: {error_code(err)}") from err
        except BotoCoreError as err:
            raise RegistryError(f"could not reach the model registry: {err}") from err
        return out

    def _list_keys(self, prefix: str) -> list[str]:
        keys: list[str] = []
        try:
            paginator = self.s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
                keys.extend(o["Key"] for o in page.get("Contents", []))
        except ClientError as err:
            raise RegistryError(f"could not list s3://{self.bucket}/{prefix}: {error_code(err)}") from err
        except BotoCoreError as err:
            raise RegistryError(f"could not reach the model registry: {err}") from err
        return keys

    # ------------------------------------------------------------- versions
    def list_models(self) -> list[str]:
        return sorted(n for n in self._list_prefixes(ROOT) if _NAME_RE.match(n))

    def _version_numbers(self, name: str) -> list[int]:
        """Every version number with any object, finished or not (so a crashed publish is skipped)."""
        found = self._list_prefixes(f"{ROOT}{name}/versions/")
        return sorted(int(v) for v in found if _VERSION_RE.match(v))

    def list_versions(self, name: str) -> list[Manifest]:
        """Published versions (manifest written), in publish order."""
        check_model_name(name)
        manifests = []
        for number in self._version_numbers(name):
            try:
                manifests.append(self.get_manifest(name, str(number)))
            except VersionNotFound:
                continue  # artifacts without a manifest: an interrupted publish, never served
        return manifests

    def get_manifest(self, name: str, version: str) -> Manifest:
        check_model_name(name)
        if not isinstance(version, str) or not _VERSION_RE.match(version):
            raise VersionNotFound(f"model {name!r} has no version {str(version)[:40]!r}")
        try:
            obj = self._get(self.version_prefix(name, version) + MANIFEST)
        except KeyError:
            raise VersionNotFound(f"model {name!r} has no version {version!r}") from None
        try:
            manifest = Manifest.model_validate_json(obj["Body"].read())
        except ValueError as err:
            raise InvalidManifest(f"manifest of {name} v{version} is invalid: {err}") from err
        if manifest.name != name or manifest.version != version:
            raise RegistryError(f"manifest at {name} v{version} describes {manifest.name} v{manifest.version}")
        return manifest

    def get_artifact(self, manifest: Manifest, file: str | None = None) -> bytes:
        """An artifact's bytes, fetched only from the version's own prefix and returned only once they
        match the manifest's sha256 and size (IntegrityError otherwise). Every reader of a version's
        files goes through here, so nothing is ever parsed (let alone unpickled) unverified."""
        file = file or manifest.primary_artifact
        ref = manifest.artifacts.get(file)
        if ref is None:
            raise RegistryError(f"{manifest.name} v{manifest.version} lists no artifact {file!r}")
        # Defence in depth: a validated manifest cannot name anything else, but one built without
        # validation (model_construct) could; the key must stay inside the version's own prefix.
        prefix = self.version_prefix(manifest.name, manifest.version)
        if not (
            isinstance(file, str)
            and _ARTIFACT_RE.fullmatch(file)
            and _NAME_RE.fullmatch(manifest.name)
            and _VERSION_RE.fullmatch(manifest.version)
        ):
            raise InvalidManifest(
                f"{manifest.name!r} v{manifest.version!r}: artifact name {file[:80]!r} is not a file in the "
                "version's own prefix; refusing to fetch it"
            )
        try:
            data: bytes = self._get(prefix + file)["Body"].read()
        except KeyError:
            raise RegistryError(f"artifact {file} of {manifest.name} v{manifest.version} is missing") from None
        digest = sha256_hex(data)
        if len(data) != ref.bytes or digest != ref.sha256:
            raise IntegrityError(
                f"{manifest.name} v{manifest.version}: {file} does not match its manifest "
                f"(sha256 {digest[:12]}…, {len(data)} bytes; expected {ref.sha256[:12]}…, {ref.bytes} bytes); "
                "refusing to load it"
            )
        return data

    def get_json_artifact(self, manifest: Manifest, file: str) -> Any:
        """A JSON artifact (e.g. ``baseline.json``), verified like every artifact."""
        return json.loads(self.get_artifact(manifest, file))

    def publish_version(
        self,
        *,
        name: str,
        artifacts: dict[str, bytes],
        manifest_fields: dict[str, Any],
        runtimes: dict[str, str] | None = None,
        progress: Callable[[str], None] | None = None,
    ) -> Manifest:
        """Write a new immutable version and return its manifest.

        The version number is the next free one; artifacts are written first with
        ``If-None-Match: *`` (losing a race moves on to the next number) and the manifest last,
        so a version is visible only once complete.
        """
        check_model_name(name)
        runtimes = runtimes or {}
        refs = {
            file: ArtifactRef(sha256=sha256_hex(data), bytes=len(data), runtime=runtimes.get(file))
            for file, data in artifacts.items()
        }
        numbers = self._version_numbers(name)
        candidate = (numbers[-1] if numbers else 0) + 1
        for _ in range(MAX_WRITE_ATTEMPTS * 4):
            version = str(candidate)
            manifest = Manifest.model_validate(
                {**manifest_fields, "name": name, "version": version, "created_at": utcnow(), "artifacts": refs}
            )
            prefix = self.version_prefix(name, version)
            ordered = [manifest.primary_artifact] + [f for f in artifacts if f != manifest.primary_artifact]
            claimed = True
            for i, file in enumerate(ordered):
                if progress:
                    progress(f"uploading {file} ({len(artifacts[file]):,} bytes) as {name} v{version}")
                if not self._put_new(prefix + file, artifacts[file], _content_type(file)):
                    if i == 0:
                        claimed = False  # someone else published this number first
                        break
                    raise RegistryError(f"{name} v{version} was modified while being published")
            if not claimed:
                candidate += 1
                continue
            body = manifest.model_dump_json(indent=2).encode()
            if not self._put_new(prefix + MANIFEST, body, "application/json"):
                raise RegistryError(f"{name} v{version} manifest already exists")
            return manifest
        raise ConcurrentUpdate(f"could not claim a version number for {name}")

    # -------------------------------------------------------------- aliases
    def get_alias(self, name: str, alias: str = DEFAULT_ALIAS) -> VersionedAlias | None:
        check_model_name(name)
        try:
            obj = self._get(self.alias_key(name, alias))
        except KeyError:
            return None
        return VersionedAlias(AliasRecord.model_validate_json(obj["Body"].read()), obj["ETag"])

    def get_alias_if_changed(self, name: str, alias: str, etag: str | None) -> VersionedAlias | NotModified | None:
        """Conditional GET: NOT_MODIFIED if the alias still has ``etag``; None if it does not exist."""
        check_model_name(name)
        kwargs = {"IfNoneMatch": etag} if etag else {}
        try:
            obj = self._get(self.alias_key(name, alias), **kwargs)
        except KeyError:
            return None
        except ClientError as err:
            if error_code(err) in {"304", "NotModified"}:
                return NOT_MODIFIED
            raise RegistryError(f"could not read alias {alias} of {name}: {error_code(err)}") from err
        return VersionedAlias(AliasRecord.model_validate_json(obj["Body"].read()), obj["ETag"])

    def _move_alias(
        self, name: str, alias: str, change: Callable[[AliasRecord | None], AliasRecord | None]
    ) -> AliasRecord:
        """Read-modify-write the alias with If-Match / If-None-Match, retrying lost races."""
        key = self.alias_key(name, alias)
        for attempt in range(MAX_WRITE_ATTEMPTS):
            current = self.get_alias(name, alias)
            updated = change(current.record if current else None)
            if updated is None:  # nothing to change
                assert current is not None
                return current.record
            body = updated.model_dump_json(indent=2).encode()
            condition = {"IfMatch": current.etag} if current else {"IfNoneMatch": "*"}
            try:
                self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType="application/json", **condition)
                return updated
            except ClientError as err:
                if error_code(err) not in PRECONDITION_CODES:
                    raise RegistryError(f"could not write alias {alias} of {name}: {error_code(err)}") from err
            except BotoCoreError as err:
                raise RegistryError(f"could not reach the model registry: {err}") from err
            # Lost a race: back off with jitter and re-read.
            self._sleep(min(0.5, 0.01 * 2**attempt) * (0.5 + random.random()))
        raise ConcurrentUpdate(f"alias {alias} of {name} kept changing; try again")

    def promote(self, name: str, version: str, alias: str = DEFAULT_ALIAS, reason: str | None = None) -> AliasRecord:
        """Point ``alias`` at ``version`` (which must be published). Clears any canary."""
        self.get_manifest(name, version)  # raises VersionNotFound

        def change(current: AliasRecord | None) -> AliasRecord | None:
            if current and current.version == version and current.canary is None:
                return None
            now = utcnow()
            lineage = [v for v in (current.lineage if current else []) if v != version] + [version]
            event = AliasEvent(
                action="promote",
                version=version,
                from_version=current.version if current else None,
                at=now,
                reason=reason,
            )
            history = ((current.history if current else []) + [event])[-ALIAS_HISTORY_LIMIT:]
            return AliasRecord(
                model=name,
                alias=alias,
                version=version,
                previous=current.version if current else None,
                canary=None,
                updated_at=now,
                lineage=lineage[-ALIAS_HISTORY_LIMIT:],
                history=history,
            )

        return self._move_alias(name, alias, change)

    def rollback(self, name: str, alias: str = DEFAULT_ALIAS, reason: str | None = None) -> AliasRecord:
        """Move ``alias`` back to the version that was live before the current one."""

        def change(current: AliasRecord | None) -> AliasRecord:
            if current is None:
                raise ModelNotFound(f"model {name!r} has no alias {alias!r} to roll back")
            if len(current.lineage) < 2:
                raise VersionNotFound(f"{name} alias {alias} has no earlier version to roll back to")
            lineage = current.lineage[:-1]
            target = lineage[-1]
            now = utcnow()
            event = AliasEvent(action="rollback", version=target, from_version=current.version, at=now, reason=reason)
            return AliasRecord(
                model=name,
                alias=alias,
                version=target,
                previous=lineage[-2] if len(lineage) > 1 else None,
                canary=None,
                updated_at=now,
                lineage=lineage,
                history=(current.history + [event])[-ALIAS_HISTORY_LIMIT:],
            )

        return self._move_alias(name, alias, change)

    def set_canary(
        self, name: str, version: str, weight: float, alias: str = DEFAULT_ALIAS, reason: str | None = None
    ) -> AliasRecord:
        """Route ``weight`` of the alias's traffic to ``version`` (model-level canary)."""
        self.get_manifest(name, version)

        def change(current: AliasRecord | None) -> AliasRecord:
            if current is None:
                raise ModelNotFound(f"model {name!r} has no alias {alias!r}; promote a version first")
            now = utcnow()
            event = AliasEvent(action="canary", version=version, from_version=current.version, at=now, reason=reason)
            return current.model_copy(
                update={
                    "canary": CanaryRoute(version=version, weight=weight),
                    "updated_at": now,
                    "history": (current.history + [event])[-ALIAS_HISTORY_LIMIT:],
                }
            )

        return self._move_alias(name, alias, change)

    def list_aliases(self, name: str) -> dict[str, AliasRecord]:
        check_model_name(name)
        prefix = f"{ROOT}{name}/aliases/"
        out: dict[str, AliasRecord] = {}
        for key in self._list_keys(prefix):
            alias = key[len(prefix) :].removesuffix(".json")
            if "/" in alias or not key.endswith(".json"):
                continue
            found = self.get_alias(name, alias)
            if found:
                out[alias] = found.record
        return out

    def describe_models(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Every model with its aliases: what GET /models answers."""
        out = []
        for name in names if names is not None else self.list_models():
            try:
                aliases = self.list_aliases(name)
            except SklambdaError:
                raise
            out.append(
                {
                    "name": name,
                    "aliases": {
                        a: {
                            "version": r.version,
                            "canary": r.canary.model_dump() if r.canary else None,
                            "updated_at": r.updated_at,
                        }
                        for a, r in sorted(aliases.items())
                    },
                }
            )
        return out


def _content_type(file: str) -> str:
    if file.endswith(".json"):
        return "application/json"
    return "application/octet-stream"


def dumps_json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True).encode()
