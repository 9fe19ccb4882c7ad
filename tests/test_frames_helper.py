"""The chispa-style frame assertions fail when they should, with a message naming the difference."""

from __future__ import annotations

import pytest

from tests.support.frames import DataFramesNotEqualError, assert_frames_equal, assert_rows_equal


def test_rows_compare_as_a_multiset_unless_ordered(spark) -> None:
    frame = spark.createDataFrame([("a", 1), ("b", 2), ("b", 2)], "k string, v int")
    assert_rows_equal(frame, [("b", 2), ("a", 1), ("b", 2)])
    with pytest.raises(DataFramesNotEqualError, match=r"expected but missing:\n    \('b', 2\)"):
        assert_rows_equal(frame, [("a", 1), ("b", 2), ("b", 2), ("b", 2)])
    with pytest.raises(DataFramesNotEqualError, match=r"present but not expected:\n    \('a', 1\)"):
        assert_rows_equal(frame, [("b", 2), ("b", 2)])
    with pytest.raises(DataFramesNotEqualError, match="rows differ from position 0"):
        assert_rows_equal(frame.orderBy("k"), [("b", 2), ("a", 1), ("b", 2)], ordered=True)


def test_columns_select_and_order_what_is_compared(spark) -> None:
    frame = spark.createDataFrame([("a", 1, 10.0)], "k string, v int, w double")
    assert_rows_equal(frame, [(10.0, "a")], columns=("w", "k"))
    with pytest.raises(DataFramesNotEqualError, match=r"columns \['k', 'v'\]"):
        assert_rows_equal(frame, [("a", 2)], columns=("k", "v"))


def test_frames_must_share_names_types_and_order(spark) -> None:
    left = spark.createDataFrame([("a", 1)], "k string, v int")
    assert_frames_equal(left, spark.createDataFrame([("a", 1)], "k string, v int"))
    with pytest.raises(DataFramesNotEqualError, match="schemas differ"):
        assert_frames_equal(left, spark.createDataFrame([("a", 1)], "k string, v long"))
    with pytest.raises(DataFramesNotEqualError, match="schemas differ"):
        assert_frames_equal(left, spark.createDataFrame([(1, "a")], "v int, k string"))
