"""The bring-your-own-model baseline: benchmarks/naive_handler.py's shape, written for one published pipeline.

Everything happens at import time (init phase): import scikit-learn and joblib, download the version's
``model.joblib`` from S3 to ``/tmp`` with boto3, ``joblib.load`` it. The handler parses the JSON body, builds
the rows in the pipeline's feature order (as an object array, nulls as None, like naive_handler.py) and calls
``predict_proba`` (classifiers) or ``predict`` (regressors). No validation, registry, integrity check, logs or
metrics. It reads the same artifact sklambda's scikit-learn fallback serves.

Environment: ``MODEL_BUCKET``, ``MODEL_KEY`` (the version's ``model.joblib`` key), ``NAIVE_FEATURES_JSON`` (the
feature order as a JSON list: names may hold commas or slashes), ``NAIVE_TASK`` (``classification`` or
``regression``) and ``NAIVE_MODEL_PATH`` (an empty "/tmp" per process, as a fresh Lambda sandbox has).
"""

import json
import os

import boto3
import joblib
import numpy as np
import sklearn  # noqa: F401 - the samples import it at module level

FEATURES = json.loads(os.environ["NAIVE_FEATURES_JSON"])
CLASSIFIER = os.environ.get("NAIVE_TASK", "classification") == "classification"

s3 = boto3.client("s3")
MODEL_PATH = os.environ.get("NAIVE_MODEL_PATH", "/tmp/model.joblib")
s3.download_file(os.environ["MODEL_BUCKET"], os.environ["MODEL_KEY"], MODEL_PATH)
model = joblib.load(MODEL_PATH)


def lambda_handler(event, context):
    body = json.loads(event["body"])
    rows = np.array([[instance[f] for f in FEATURES] for instance in body["instances"]], dtype=object)
    if CLASSIFIER:
        proba = model.predict_proba(rows)
        answer = {"predictions": model.classes_[proba.argmax(axis=1)].tolist(), "probabilities": proba.tolist()}
    else:
        answer = {"predictions": model.predict(rows).tolist()}
    return {"statusCode": 200, "headers": {"Content-Type": "application/json"}, "body": json.dumps(answer)}
