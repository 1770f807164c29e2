"""Small input adapters a published scikit-learn fallback pipeline may start with (referenced by its pickle).

They live in the layer so a pipeline that needs one unpickles on Lambda; numpy only.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def missing_as_nan(x: np.ndarray, columns: Sequence[int] = ()) -> np.ndarray:
    """The validated matrix with null categories (None) as NaN in ``columns``.

    The predict path writes a null category as None; a pipeline fitted on pandas text columns saw its
    missing values as NaN (pandas' own marker), and its encoders and imputers only recognise that one.
    """
    if not columns or not isinstance(x, np.ndarray) or x.dtype != object:
        return x
    out = x.copy()
    for c in columns:
        column = out[:, c]
        column[np.array([v is None for v in column.tolist()], dtype=bool)] = np.nan
    return out
