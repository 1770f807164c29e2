"""Signed prediction ids (no network)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from sklambda.core.errors import InvalidInput, UnknownPrediction
from sklambda.serving.ids import PredictionIds

IDS = PredictionIds("k1")
BASE = "0123456789abcdef0123456789abcdef"


def test_issued_ids_verify_and_name_model_version_and_row():
    issued = IDS.issue("churn-model", "12", BASE, 3)
    assert len(set(issued)) == 3
    ref = IDS.verify(issued[2])
    assert (ref.model, ref.version, ref.base, ref.row) == ("churn-model", "12", BASE, 2)


def test_a_changed_id_or_another_key_is_unknown():
    pid = IDS.issue("demo", "1", BASE, 1)[0]
    with pytest.raises(UnknownPrediction):
        PredictionIds("k2").verify(pid)
    with pytest.raises(UnknownPrediction):
        IDS.verify(pid.replace("demo.v1", "demo.v2"))


@given(st.one_of(st.text(max_size=200), st.integers(), st.none(), st.lists(st.text())))
def test_anything_else_is_invalid_input_never_a_crash(value):
    with pytest.raises((InvalidInput, UnknownPrediction)):
        IDS.verify(value)


def test_a_key_is_required():
    with pytest.raises(ValueError):
        PredictionIds("")
