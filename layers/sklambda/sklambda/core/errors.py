"""Domain errors. Each carries the HTTP status it maps to; the API maps them in one place."""

from __future__ import annotations

from http import HTTPStatus
from typing import Any


class SklambdaError(Exception):
    """Base class for every error sklambda raises on purpose."""

    status = HTTPStatus.INTERNAL_SERVER_ERROR
    code = "internal_error"

    def __init__(self, message: str, *, details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details or []

    def to_body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.details:
            body["details"] = self.details
        return body


class InvalidInput(SklambdaError):
    """The client sent something we cannot score; details name each offending field."""

    status = HTTPStatus.UNPROCESSABLE_ENTITY
    code = "invalid_input"


class MalformedRequest(SklambdaError):
    status = HTTPStatus.BAD_REQUEST
    code = "malformed_request"


class BatchTooLarge(SklambdaError):
    status = HTTPStatus.REQUEST_ENTITY_TOO_LARGE
    code = "batch_too_large"


class ModelNotFound(SklambdaError):
    status = HTTPStatus.NOT_FOUND
    code = "model_not_found"


class VersionNotFound(SklambdaError):
    status = HTTPStatus.NOT_FOUND
    code = "version_not_found"


class ModelUnavailable(SklambdaError):
    """The model exists but cannot be served right now (registry unreachable, load failed)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "model_unavailable"


class RegistryError(SklambdaError):
    """The registry could not be read or written (network, permissions, throttling)."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "registry_unavailable"


class IntegrityError(SklambdaError):
    """An artifact's bytes do not match the sha256 its manifest records. Never deserialised."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "integrity_error"


class InvalidManifest(IntegrityError):
    """A manifest that does not validate (e.g. an artifact name outside the version's prefix).

    Refused before any artifact is fetched, and permanent like a sha256 mismatch: the version is
    not retried until the alias moves."""

    code = "invalid_manifest"


class IncompatibleModel(SklambdaError):
    """The manifest was written by library versions this runtime cannot load safely."""

    status = HTTPStatus.SERVICE_UNAVAILABLE
    code = "incompatible_model"


class ConcurrentUpdate(SklambdaError):
    """A conditional write kept losing races; the caller may retry."""

    status = HTTPStatus.CONFLICT
    code = "concurrent_update"


class UnknownPrediction(SklambdaError):
    """A well-formed prediction id this API never issued (its signature does not verify)."""

    status = HTTPStatus.NOT_FOUND
    code = "unknown_prediction"
