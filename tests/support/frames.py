"""chispa-style DataFrame assertions: compare whole frames (schema and rows) with a readable diff.

Written locally rather than taken as a dependency: the two functions below are all the suite needs,
and chispa's releases lag pyspark's (it pins pyspark 3.x in its metadata).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

from pyspark.sql import DataFrame
from pyspark.sql.types import StructType


class DataFramesNotEqualError(AssertionError):
    """Two frames differ; the message lists the rows only one side has, or the schema difference."""


def _describe(rows: Iterable[tuple[Any, ...]]) -> str:
    return "\n".join(f"    {row!r}" for row in rows) or "    (none)"


def _row_diff(actual: list[tuple[Any, ...]], expected: list[tuple[Any, ...]], ordered: bool) -> str | None:
    if ordered:
        if actual == expected:
            return None
        pairs = zip(actual, expected, strict=False)  # lengths may differ: the first mismatch is what matters
        first = next((i for i, (a, e) in enumerate(pairs) if a != e), min(len(actual), len(expected)))
        return (f"rows differ from position {first} (actual {len(actual)} rows, expected {len(expected)}):\n"
                f"  actual:\n{_describe(actual[first:first + 5])}\n"
                f"  expected:\n{_describe(expected[first:first + 5])}")
    missing = Counter(expected) - Counter(actual)
    unexpected = Counter(actual) - Counter(expected)
    if not missing and not unexpected:
        return None
    return (f"rows differ (actual {len(actual)} rows, expected {len(expected)}):\n"
            f"  expected but missing:\n{_describe(missing.elements())}\n"
            f"  present but not expected:\n{_describe(unexpected.elements())}")


def assert_rows_equal(actual: DataFrame, expected: Sequence[Sequence[Any]], columns: Sequence[str] | None = None,
                      ordered: bool = False) -> None:
    """The rows of `actual` (restricted to `columns`, in that order) are exactly `expected`.

    Row order matters only with `ordered=True`; duplicates count (a multiset comparison).
    """
    frame = actual.select(*columns) if columns else actual
    got = [tuple(row) for row in frame.collect()]
    diff = _row_diff(got, [tuple(row) for row in expected], ordered)
    if diff:
        raise DataFramesNotEqualError(f"columns {frame.columns}: {diff}")


def _schema_fields(schema: StructType, ignore_nullable: bool) -> list[tuple[str, str, bool]]:
    return [(f.name, f.dataType.simpleString(), True if ignore_nullable else f.nullable) for f in schema.fields]


def assert_frames_equal(actual: DataFrame, expected: DataFrame, ordered: bool = False,
                        ignore_nullable: bool = True) -> None:
    """Same column names, types and order, and the same rows (as a multiset unless `ordered`)."""
    got_schema, want_schema = (_schema_fields(actual.schema, ignore_nullable),
                               _schema_fields(expected.schema, ignore_nullable))
    if got_schema != want_schema:
        raise DataFramesNotEqualError(f"schemas differ:\n  actual:   {got_schema}\n  expected: {want_schema}")
    assert_rows_equal(actual, [tuple(row) for row in expected.collect()], ordered=ordered)
