"""Offline quality of a fitted estimator on held-out rows, and the retrain gate's score.

(Live quality, from labels posted for served predictions, is ``monitoring.quality``.)
"""

from __future__ import annotations

from typing import Any

import numpy as np


def holdout_metrics(task: str, estimator: Any, x: np.ndarray, y: np.ndarray) -> dict[str, float]:
    """Accuracy, macro F1, log loss (and ROC AUC for two classes); or RMSE, MAE and R²."""
    from sklearn import metrics as skm

    if task == "classification" and not hasattr(estimator, "predict_proba"):  # e.g. RidgeClassifier, LinearSVC
        pred = estimator.predict(x)
        return {
            "accuracy": round(float(skm.accuracy_score(y, pred)), 6),
            "f1_macro": round(float(skm.f1_score(y, pred, average="macro")), 6),
        }
    if task == "classification":
        proba = estimator.predict_proba(x)
        pred = estimator.classes_[np.argmax(proba, axis=1)]
        out = {
            "accuracy": float(skm.accuracy_score(y, pred)),
            "f1_macro": float(skm.f1_score(y, pred, average="macro")),
            "log_loss": float(skm.log_loss(y, proba, labels=estimator.classes_)),
        }
        if len(estimator.classes_) == 2:
            out["roc_auc"] = float(skm.roc_auc_score(y, proba[:, 1]))
        return {k: round(v, 6) for k, v in out.items()}
    pred = estimator.predict(x)
    return {
        "rmse": round(float(np.sqrt(skm.mean_squared_error(y, pred))), 6),
        "mae": round(float(skm.mean_absolute_error(y, pred)), 6),
        "r2": round(float(skm.r2_score(y, pred)), 6),
    }


def gate_score(task: str, metrics: dict[str, float]) -> tuple[str, float]:
    """The retrain gate's metric, as a higher-is-better score (accuracy, or R² for regressors)."""
    if task == "classification":
        return "accuracy", float(metrics["accuracy"])
    return "r2", float(metrics["r2"])
