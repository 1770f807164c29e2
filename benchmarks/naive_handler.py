"""The baseline: a Lambda inference handler as the public aws-samples / blog examples write it.

Everything happens at import time (init phase): import scikit-learn and joblib, download
``model.joblib`` from S3 to ``/tmp`` with boto3, ``joblib.load`` it. The handler parses the JSON
body, builds the rows in a hard-coded feature order and calls ``predict_proba``. No schema
validation, no registry (it reads a fixed key, never an alias), no integrity check, no logging or
metrics. It reads the same artifact from the same bucket as the sklambda handler.

Environment: ``MODEL_BUCKET``, ``MODEL_KEY`` (the version's ``model.joblib`` key) and, for the
benchmark only, ``NAIVE_MODEL_PATH`` (default ``/tmp/model.joblib``) so every process starts
with an empty "/tmp" as a fresh Lambda sandbox does.
"""

import json
import os

import boto3
import joblib
import numpy as np
import sklearn  # noqa: F401 - the samples import it at module level

FEATURES = [
    "age",
    "income",
    "tenure_months",
    "monthly_spend",
    "support_calls",
    "late_payments",
    "data_usage_gb",
    "satisfaction",
    "plan",
    "region",
    "channel",
    "payment_method",
]

if os.environ.get("NAIVE_FEATURES"):  # the benchmark's other model: its own hard-coded order
    FEATURES = os.environ["NAIVE_FEATURES"].split(",")

s3 = boto3.client("s3")
MODEL_PATH = os.environ.get("NAIVE_MODEL_PATH", "/tmp/model.joblib")
s3.download_file(os.environ["MODEL_BUCKET"], os.environ["MODEL_KEY"], MODEL_PATH)
model = joblib.load(MODEL_PATH)


def lambda_handler(event, context):
    body = json.loads(event["body"])
    rows = np.array([[instance[f] for f in FEATURES] for instance in body["instances"]], dtype=object)
    proba = model.predict_proba(rows)
    return {
        "statusCode": 200,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps(
            {
                "predictions": model.classes_[proba.argmax(axis=1)].tolist(),
                "probabilities": proba.tolist(),
            }
        ),
    }
