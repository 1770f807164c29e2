"""Feature names are data, CloudWatch dimension values are printable ASCII: the one conversion between them."""

from __future__ import annotations

import pytest

from sklambda.core.observability import dimension_value


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("age", "age"),
        ("od280/od315_of_diluted_wines", "od280/od315_of_diluted_wines"),
        ("Median income ($)", "Median income ($)"),
        ("größe", "gr\\xf6\\xdfe"),
        ("a\tb", "a?b"),
        ("   ", "?"),
    ],
)
def test_dimension_values_are_printable_ascii_and_keep_names_apart(name, expected):
    value = dimension_value(name)
    assert value == expected
    assert value.isascii() and value.isprintable() and value.strip()


def test_distinct_names_stay_distinct_and_long_ones_are_cut():
    assert dimension_value("größe") != dimension_value("grösse")
    assert len(dimension_value("x" * 2000)) == 250
