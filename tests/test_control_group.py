"""The control group is stable per (segment, user) for a rotation period or a named experiment (issue 21 item 4).

The period boundaries are hand-computed: 2026-06-01 is day 20,605 after 1970-01-01 (56 years with 14 leap
days = 20,454 days to 2026-01-01, plus 151 for January to May), so with 90-day periods it is in period
228 = floor(20,605 / 90), which runs from day 20,520 (2026-03-08) to day 20,609 (2026-06-05); period 229
starts on 2026-06-06.
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import pytest

from segments_lib.config import ConfigError, load_config
from segments_lib.job.scoring import (
    LevelThreshold,
    ScoringContext,
    control_draw,
    control_period,
    membership_rows,
)

NINETY = timedelta(days=90)
USERS = 2000
SHARE = 0.10
PERIOD_228 = (date(2026, 3, 8), date(2026, 4, 20), date(2026, 5, 31), date(2026, 6, 1), date(2026, 6, 5))
PERIOD_229_FIRST = date(2026, 6, 6)
PERIOD_227_LAST = date(2026, 3, 7)


def test_periods_are_counted_from_the_epoch_in_whole_rotation_lengths() -> None:
    assert control_period(date(1970, 1, 1), NINETY) == 0
    assert control_period(date(1970, 3, 31), NINETY) == 0  # day 89
    assert control_period(date(1970, 4, 1), NINETY) == 1  # day 90
    assert [control_period(d, NINETY) for d in PERIOD_228] == [228] * len(PERIOD_228)
    assert control_period(PERIOD_227_LAST, NINETY) == 227
    assert control_period(PERIOD_229_FIRST, NINETY) == 229
    assert control_period(date(1969, 12, 31), NINETY) == -1  # floor, not truncation
    assert control_period(date(2026, 6, 1), timedelta(days=1)) == 20605  # 1d: re-drawn every night
    with pytest.raises(ValueError, match="whole number of days"):
        control_period(date(2026, 6, 1), timedelta(hours=12))


def test_the_draw_names_the_period_or_the_experiment() -> None:
    assert control_draw(date(2026, 6, 1), NINETY) == "every:90d:period:228"
    assert control_draw(date(2026, 6, 6), NINETY) == "every:90d:period:229"
    assert control_draw(date(2026, 6, 1), timedelta(days=30)) == "every:30d:period:686"  # 20605 // 30
    assert control_draw(date(2026, 6, 1), NINETY, "spring_promo") == "experiment:spring_promo"
    assert control_draw(date(2031, 1, 1), NINETY, "spring_promo") == "experiment:spring_promo"


def _flags(spark, run_date: date, experiment: str | None = None, segment: str = "seg") -> dict[str, bool]:
    """user → control_group of one night's membership rows for USERS users (through membership_rows)."""
    ctx = ScoringContext(
        segment=segment, run_date=run_date, segment_level="medium", levels=(LevelThreshold("medium", 0.6, 0.5),),
        model_name="m", model_version=1, mlflow_run_id="r", control_share=SHARE,
        control_rotate_every=NINETY, control_experiment=experiment,
    )
    scored = spark.range(USERS).selectExpr("concat('u', cast(id as string)) as user_id", "0.5 as score")
    rows = membership_rows(scored, ctx).select("user_id", "control_group").collect()
    return {r.user_id: r.control_group for r in rows}


def _share_ok(flags: dict[str, bool]) -> bool:
    # 2,000 users at 10 %: 200 expected, binomial sd ≈ 13.4; 5 sd either way.
    return 133 <= sum(flags.values()) <= 267


def test_a_user_keeps_their_arm_on_every_night_of_a_period_and_is_redrawn_in_the_next(spark) -> None:
    nights = {d: _flags(spark, d) for d in (*PERIOD_228, PERIOD_227_LAST, PERIOD_229_FIRST)}
    inside = [nights[d] for d in PERIOD_228]
    assert len(inside[0]) == USERS
    assert all(flags == inside[0] for flags in inside[1:])  # every user, every night of period 228
    assert _share_ok(inside[0])
    assert _flags(spark, date(2026, 6, 1)) == inside[0]  # a rerun gives the same flags
    for neighbour in (nights[PERIOD_227_LAST], nights[PERIOD_229_FIRST]):
        assert _share_ok(neighbour)
        changed = sum(neighbour[u] != inside[0][u] for u in inside[0])
        # Independent draws: 2 × 0.1 × 0.9 × 2,000 = 360 users expected to switch arm (sd ≈ 17).
        assert 250 <= changed <= 470, changed
    # The old per-night draw would have switched ~360 users between these two nights.
    assert nights[date(2026, 5, 31)] == nights[date(2026, 6, 1)]


def test_a_named_experiment_keeps_its_arms_across_periods_until_the_name_changes(spark) -> None:
    nights = [_flags(spark, d, "spring_promo") for d in (PERIOD_227_LAST, date(2026, 6, 1), PERIOD_229_FIRST,
                                                         date(2027, 1, 1))]
    assert all(flags == nights[0] for flags in nights[1:])
    assert _share_ok(nights[0])
    renamed = _flags(spark, date(2026, 6, 1), "summer_promo")
    assert _share_ok(renamed)
    assert 250 <= sum(renamed[u] != nights[0][u] for u in renamed) <= 470


def test_segments_draw_independently(spark) -> None:
    one, other = _flags(spark, date(2026, 6, 1), segment="a"), _flags(spark, date(2026, 6, 1), segment="b")
    assert 250 <= sum(one[u] != other[u] for u in one) <= 470


def _overlay(tmp_path: Path, nightly: str) -> Path:
    path = tmp_path / "overlay.yaml"
    path.write_text(f"nightly:\n{nightly}")
    return path


def test_the_keys_default_to_ninety_days_and_no_experiment(tmp_path: Path) -> None:
    cfg = load_config(None)
    assert (cfg.nightly.control_rotate_every, cfg.nightly.control_experiment) == (NINETY, None)
    cfg = load_config(_overlay(tmp_path, "  control_rotate_every: 13w\n  control_experiment: spring_promo\n"))
    assert (cfg.nightly.control_rotate_every, cfg.nightly.control_experiment) == (timedelta(days=91), "spring_promo")


@pytest.mark.parametrize(("nightly", "message"), [
    ("  control_rotate_every: 12h\n", r"'nightly\.control_rotate_every' must be a whole number of days .*'12h'"),
    ("  control_rotate_every: 36h\n", r"'nightly\.control_rotate_every' must be a whole number of days .*'36h'"),
    ("  control_rotate_every: soon\n", r"'nightly\.control_rotate_every': 'soon' is not a duration"),
    ("  control_rotate_every: 0d\n", r"'nightly\.control_rotate_every': '0d' must be positive"),
    ("  control_rotate_every: 90\n", r"'nightly\.control_rotate_every' must be str, found 90"),
    ("  control_rotate_every: null\n", r"'nightly\.control_rotate_every' must be str, found null"),
    ("  control_experiment: '  '\n", r"'nightly\.control_experiment' must be a non-empty name or null"),
    ("  control_experiment: 7\n", r"'nightly\.control_experiment' must be str, found 7"),
    ("  control_share: 1.5\n", r"'nightly\.control_share' must be in \[0, 1\), found 1\.5"),
])
def test_bad_values_name_the_file_and_the_key(tmp_path: Path, nightly: str, message: str) -> None:
    overlay = _overlay(tmp_path, nightly)
    with pytest.raises(ConfigError, match=message) as caught:
        load_config(overlay)
    assert str(caught.value).startswith("base.yaml + overlay.yaml: ")
