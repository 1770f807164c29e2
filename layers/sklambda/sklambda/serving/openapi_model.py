"""A typed OpenAPI document for one model: its predict request and answer, from its manifest.

``GET /openapi.json`` documents the API for every model at once, so an instance there is any object.
``GET /models/{name}/openapi.json`` (this module) documents ``POST /models/{name}/predict`` for the
version the model serves: one property per feature, typed as the validator checks it, and the answer
typed by the model's task. It is exact, so a contract-testing tool can hold the API to it: every
request the document accepts is scored (2xx), every request it refuses is a 4xx.

How the feature schema maps to JSON Schema (OpenAPI 3.1):

| feature | property |
|---|---|
| ``number`` | ``number`` in ±3.4028234663852886e38 (float32, what tree models score) |
| ``integer`` | ``integer`` in ±2**53 (integers past it are not exactly representable as float64) |
| ``boolean`` | ``boolean`` |
| ``category`` | ``string``; an ``enum`` of the categories when unknown values are refused |
| nullable | ``null`` allowed, and the property may be left out |

An instance is that object, or an array of the values in schema order (``prefixItems``).
"""

from __future__ import annotations

from typing import Any

from sklambda.registry.features import FeatureSpec
from sklambda.registry.manifest import Manifest

OPENAPI_VERSION = "3.1.0"
FLOAT32_MAX = 3.4028234663852886e38  # the validator's bound (serving.validation.FLOAT32_MAX)
EXACT_INTEGER = 2**53

_TYPES = {"number": "number", "integer": "integer", "boolean": "boolean", "category": "string"}
_ERROR_STATUSES = {
    "400": "Malformed JSON, or a body that is not UTF-8 text",
    "404": "The model is no longer in the registry",
    "413": "More instances than the batch limit, or a body over 6 MiB",
    "415": "A body that is not application/json",
    "422": "Instances the model refuses: each problem names its field",
    "503": "The model cannot be served right now",
}


def feature_schema(spec: FeatureSpec, position: int, width: int) -> dict[str, Any]:
    """The JSON Schema of one feature's value, as ``InstanceValidator`` accepts it."""
    kind = _TYPES[spec.type]
    schema: dict[str, Any] = {"title": spec.name, "type": [kind, "null"] if spec.nullable else kind}
    if spec.type == "number":
        schema.update(minimum=-FLOAT32_MAX, maximum=FLOAT32_MAX)
    elif spec.type == "integer":
        schema.update(minimum=-EXACT_INTEGER, maximum=EXACT_INTEGER)
    described = [spec.description] if spec.description else []
    described.append(f"Feature {position + 1} of {width} ({spec.type}{', nullable' if spec.nullable else ''}).")
    if spec.categories is not None:
        if spec.unknown_category == "error":
            schema["enum"] = [*spec.categories, *([None] if spec.nullable else [])]
        else:
            described.append(
                "Known categories: "
                + ", ".join(repr(c) for c in spec.categories[:20])
                + (", ..." if len(spec.categories) > 20 else "")
                + "; any other value is accepted (the model was fitted to ignore unknown categories)."
            )
            schema["examples"] = spec.categories[:5]
    if spec.nullable:
        described.append("null, or leaving it out, marks a missing value.")
    schema["description"] = " ".join(described)
    return schema


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _label_schema(manifest: Manifest) -> dict[str, Any]:
    if manifest.task != "classification":
        return {"type": "number"}
    classes = manifest.classes or []
    return {"enum": classes} if classes else {}


def model_document(
    manifest: Manifest, *, max_batch_rows: int, probabilities: bool, alias: str, runtime: str
) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``POST /models/{manifest.name}/predict`` for this version."""
    name, features = manifest.name, manifest.features
    width = len(features)
    properties = {f.name: feature_schema(f, j, width) for j, f in enumerate(features)}
    instance_object = {
        "type": "object",
        "title": f"{name} instance (object)",
        "description": "One row keyed by feature name.",
        "properties": properties,
        "required": [f.name for f in features if not f.nullable],
        "additionalProperties": False,
    }
    instance_array = {
        "type": "array",
        "title": f"{name} instance (array)",
        "description": "One row as the values in schema order: " + ", ".join(repr(f.name) for f in features),
        "prefixItems": [properties[f.name] for f in features],
        "items": False,
        "minItems": width,
        "maxItems": width,
    }
    request = {
        "type": "object",
        "properties": {
            "instances": {
                "type": "array",
                "minItems": 1,
                "maxItems": max_batch_rows,
                "items": {"anyOf": [_ref("Instance"), _ref("InstanceList")]},
                "description": f"Rows to score, at most {max_batch_rows:,}.",
            }
        },
        "required": ["instances"],
        "additionalProperties": False,
    }
    label = _label_schema(manifest)
    answer_properties: dict[str, Any] = {
        "model": {
            "type": "object",
            "properties": {"name": {"const": name}, "version": {"type": "string"}},
            "required": ["name", "version"],
        },
        "predictions": {
            "type": "array",
            "items": label,
            "description": "One class per instance" if manifest.task == "classification" else "One value per instance",
        },
        "prediction_ids": {
            "type": "array",
            "items": {"type": "string"},
            "description": "One per instance; POST /feedback takes them with the true label",
        },
    }
    required = ["model", "predictions", "prediction_ids"]
    if probabilities:
        classes = manifest.classes or []
        answer_properties["probabilities"] = {
            "type": "array",
            "description": "One row per instance, one probability per class in the order of classes",
            "items": {
                "type": "array",
                "items": {"type": "number", "minimum": 0, "maximum": 1},
                "minItems": len(classes),
                "maxItems": len(classes),
            },
        }
        answer_properties["classes"] = {
            "type": "array",
            "items": {"enum": classes},
            "minItems": len(classes),
            "maxItems": len(classes),
            "description": "The column order of probabilities",
        }
        required += ["probabilities", "classes"]
    response = {"type": "object", "properties": answer_properties, "required": required}
    error = {
        "type": "object",
        "properties": {
            "error": {"type": "string"},
            "message": {"type": "string"},
            "details": {
                "type": "array",
                "items": {
                    "type": "object",
                    "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
                    "required": ["field", "message"],
                },
            },
        },
        "required": ["error", "message"],
    }
    responses: dict[str, Any] = {
        "200": {"description": "Predictions", "content": {"application/json": {"schema": _ref("PredictResponse")}}}
    }
    for status, description in _ERROR_STATUSES.items():
        responses[status] = {
            "description": description,
            "content": {"application/json": {"schema": _ref("Error")}},
        }
    what = "classifier" if manifest.task == "classification" else "regressor"
    description = (
        f"Model {name!r}, version {manifest.version} (a {what}, {width} features), served by {runtime} through the "
        f"{alias!r} alias. The document describes the version served when it was fetched; a promotion changes it."
    )
    if manifest.description:
        description += f" {manifest.description}"
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": f"sklambda model {name}", "version": manifest.version, "description": description},
        "servers": [{"url": "/"}],
        "paths": {
            f"/models/{name}/predict": {
                "post": {
                    "operationId": f"predict_{name.replace('-', '_')}",
                    "summary": f"Score instances with {name} v{manifest.version}",
                    "requestBody": {
                        "required": True,
                        "content": {"application/json": {"schema": _ref("PredictRequest")}},
                    },
                    "responses": responses,
                }
            }
        },
        "components": {
            "schemas": {
                "Instance": instance_object,
                "InstanceList": instance_array,
                "PredictRequest": request,
                "PredictResponse": response,
                "Error": error,
            }
        },
    }
