"""Nested list columns (reliability bins, target tables) read as arrays from Arrow's flat values
give what numpy gives from Python lists, nulls inside included."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from runner.report.plot_data import _nested_array


@pytest.mark.parametrize("shape", [(5, 10, 3), (7, 10, 10), (1, 2, 2)])
def test_equal_shapes_read_flat_as_numpy_reads_the_lists(shape: tuple[int, ...]) -> None:
    values = np.random.default_rng(0).random(shape).tolist()
    assert np.array_equal(_nested_array(pl.Series("x", values)), np.array(values))


def test_a_null_inside_is_nan_and_ragged_rows_are_refused_as_numpy_refuses_them() -> None:
    values = [[[1.0, 2.0], [3.0, None]], [[1.0, 2.0], [3.0, 4.0]]]
    assert np.array_equal(_nested_array(pl.Series("x", values)),
                          np.array(values, dtype=float), equal_nan=True)
    with pytest.raises(ValueError):
        _nested_array(pl.Series("x", [[[1.0, 2.0]], [[1.0, 2.0], [3.0, 4.0]]]))
