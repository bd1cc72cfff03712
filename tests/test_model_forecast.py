"""The model's numbers and the forecast's signals, checked against hand calculations."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from powerpool.config.types import parse_clock, parse_days, parse_duration
from powerpool.forecast import (
    forecast,
    peak_since,
    rises_within,
    swing,
    swing_margin,
    trend_per_s,
    window_floor,
    window_floors,
)
from powerpool.model import PowerState, Window, can_transition, fmt_duration
from tests.conftest import S, make_pool, profile


def test_break_even_matches_the_formula_and_never_undercuts_the_round_trip() -> None:
    p = profile()
    # sleep: (150 W x 25 s - 12 W x 25 s) / (150 - 12) = 25 s = the round trip itself
    assert p.break_even_s(S.SLEEP) == pytest.approx(25.0)
    # unpowered: 150 x 290 / 150 = 290 s
    assert p.break_even_s(S.UNPOWERED) == pytest.approx(290.0)
    # off with a costlier transition: (300 x 225 - 9 x 225) / 141
    costly = profile(transition_w={S.OFF: 300.0})
    assert costly.break_even_s(S.OFF) == pytest.approx((300 * 225 - 9 * 225) / 141)
    # a "saving" state that draws more than idle never pays off
    silly = profile(power={**p.power, S.DISK_STANDBY: 151.0})
    assert silly.break_even_s(S.DISK_STANDBY) == float("inf")
    assert p.break_even_s(S.ACTIVE) == 0.0


def test_transition_table_needs_a_wake_between_sleep_and_off() -> None:
    assert can_transition(S.ACTIVE, S.UNPOWERED)
    assert can_transition(S.DISK_STANDBY, S.SLEEP)
    assert can_transition(S.OFF, S.UNPOWERED)
    assert not can_transition(S.SLEEP, S.OFF)
    assert all(can_transition(s, S.ACTIVE) for s in PowerState if s is not S.ACTIVE)
    assert [s.depth for s in PowerState] == list(range(7))


def test_serving_power_is_linear_in_utilisation() -> None:
    p = profile()
    assert p.watts(S.ACTIVE, 0.0) == 150.0
    assert p.watts(S.ACTIVE, 0.5) == 325.0
    assert p.watts(S.SLEEP) == 12.0


def test_forecast_keeps_room_for_the_swing_and_follows_a_rising_trend() -> None:
    hist = [(-300.0, 2.0), (-200.0, 5.0), (-100.0, 2.0), (-10.0, 2.0)]
    assert peak_since(hist, -150.0) == 2.0
    assert peak_since(hist, -250.0) == 5.0
    f = forecast(hist, 0.0, 2.0, [0.0, 60.0, 250.0], trend_window_s=50.0, margin=1.5)
    assert f == [3.5, 3.5, 3.5]  # current + the swing margin at every horizon; no trend
    ramp = [(-600.0 + 60 * k, 1.0 + 0.1 * k) for k in range(10)]
    assert trend_per_s(ramp, -600.0) == pytest.approx(0.1 / 60)
    g = forecast(ramp, 0.0, 1.9, [0.0, 600.0], trend_window_s=600.0, margin=0.5)
    assert g[0] == pytest.approx(2.4) and g[1] == pytest.approx(1.9 + 0.1 / 60 * 600)  # the trend wins at 10m
    falling = [(-600.0 + 60 * k, 2.0 - 0.1 * k) for k in range(10)]
    assert forecast(falling, 0.0, 1.1, [600.0], 600.0) == [1.1]  # no negative trend, no margin asked


def test_swing_weights_each_reading_by_how_long_it_held() -> None:
    # 2.0 for 100 s, then 4.0 for 100 s (until now): mean 3, standard deviation 1
    assert swing([(-200.0, 2.0), (-100.0, 4.0)], -200.0) == pytest.approx(1.0)
    # a run of equal readings kept as two samples or as five weighs the same
    every = [(-200.0, 2.0), (-175.0, 2.0), (-150.0, 2.0), (-125.0, 2.0), (-100.0, 4.0)]
    assert swing(every, -200.0) == pytest.approx(1.0)
    # the reading before the window holds from the window's start; older ones do not count
    assert swing([(-900.0, 50.0), (-300.0, 2.0), (-100.0, 4.0)], -200.0) == pytest.approx(1.0)
    assert swing([(-300.0, 3.0)], -200.0) == 0.0  # one value all along: calm
    assert swing([], -200.0) == 0.0
    # a burst raises the margin while it is inside the window, and only then
    calm = [(-600.0 + 30 * k, 10.0) for k in range(20)]
    burst = [*calm[:-4], (-120.0, 16.0), *calm[-3:]]
    assert swing_margin(calm, -600.0) == 0.0
    assert swing_margin(burst, -600.0) > 1.0
    assert swing_margin(burst, -60.0) == 0.0


@given(
    st.lists(st.tuples(st.integers(1, 60), st.integers(0, 20).map(float)), min_size=1, max_size=30),
    st.integers(-900, -1),
)
@settings(max_examples=300)
def test_swing_equals_the_deviation_of_the_load_second_by_second(
    steps: list[tuple[int, float]], since: int
) -> None:
    """Against the definition: the load as a step function, read once per second."""
    t, history = -1000.0, []
    for dt, v in steps:
        t += dt
        history.append((t, v))
    assume(history[-1][0] <= 0)  # a history ends at or before now
    seconds = []
    for x in range(since, 0):
        before = [v for tt, v in history if tt <= x]
        if before:
            seconds.append(before[-1])
    if not seconds:
        assert swing(history, float(since)) == 0.0
        return
    mean = sum(seconds) / len(seconds)
    sd = (sum((v - mean) ** 2 for v in seconds) / len(seconds)) ** 0.5
    assert swing(history, float(since)) == pytest.approx(sd, abs=1e-6)


def test_windows_cross_midnight_and_are_seen_a_horizon_early() -> None:
    night = Window("night batch", frozenset({4}), 22 * 60, 2 * 60, 7)  # Fri 22:00 - Sat 02:00
    pool = make_pool(8, windows=(night,))
    sat_0100 = datetime(2026, 11, 21, 1, 0, tzinfo=UTC)
    sat_0300 = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)
    fri_2150 = datetime(2026, 11, 20, 21, 50, tzinfo=UTC)
    assert window_floor(pool, sat_0100, 0) == 7
    assert window_floor(pool, sat_0300, 0) == 0
    assert window_floor(pool, fri_2150, 0) == 0
    assert window_floor(pool, fri_2150, 900) == 7  # opens within the next 15 minutes


def test_human_durations_days_and_clock_times() -> None:
    assert parse_duration("90s") == 90 and parse_duration("1h30m") == 5400
    assert parse_duration("250ms") == 0.25 and parse_duration(12) == 12
    for bad in ("10 minutes", "", "-5s", True, -1):
        with pytest.raises(ValueError, match="duration"):
            parse_duration(bad)
    assert parse_days("mon-fri") == frozenset(range(5))
    assert parse_days("sat,sun") == frozenset({5, 6})
    assert parse_days("fri-mon") == frozenset({4, 5, 6, 0})
    assert parse_days("1-5") == frozenset(range(5)) and parse_days("0") == frozenset({6})
    with pytest.raises(ValueError):
        parse_days("funday")
    assert parse_clock("08:30") == 510 and parse_clock("24:00") == 1440
    with pytest.raises(ValueError):
        parse_clock("25:00")
    assert fmt_duration(600) == "10m" and fmt_duration(90) == "90s" and fmt_duration(7200) == "2h"


def test_kept_window_floors_equal_a_fresh_computation_at_every_instant() -> None:
    """window_floors keeps its answer until a window could flip it; walking a week in odd
    steps, with horizons that are not whole minutes, it must agree with a computation
    that keeps nothing. Fails if the kept answer outlives a change."""
    from powerpool import forecast as fc

    windows = (
        Window("office", frozenset(range(5)), 8 * 60, 18 * 60, 6),
        Window("night batch", frozenset({4}), 22 * 60, 2 * 60, 9),
    )
    pool = make_pool(12, windows=windows, tz=ZoneInfo("Europe/Berlin"))
    horizons = [0.0, 15.0, 60.0, 245.0, 900.0]
    t = datetime(2026, 3, 27, 0, 0, 3, tzinfo=UTC)  # across the spring DST change
    seen = set()
    for _ in range(7 * 86400 // 37):
        kept = window_floors(pool, t, horizons)
        fc._FLOORS.clear()
        fresh = window_floors(pool, t, horizons)
        assert kept == fresh, t
        seen.add(tuple(fresh))
        t += timedelta(seconds=37)
    assert len(seen) > 3  # the walk did meet openings, closings and lead times


@given(
    st.lists(st.tuples(st.integers(1, 40), st.integers(0, 6).map(float)), max_size=40),  # runs of equals
    st.integers(-3000, -2000),
    st.lists(st.integers(0, 150), max_size=6),
)
@settings(max_examples=400)
def test_rises_within_equals_the_largest_rise_over_every_pair(
    steps: list[tuple[int, float]], since: int, horizons: list[int]
) -> None:
    """Against the definition: every pair of samples at or after `since`, later minus earlier."""
    t, history = -3000.0, []
    for dt, v in steps:
        t += dt
        history.append((t, v))
    horizons = sorted(horizons)
    got = rises_within(history, since, horizons)
    inside = [(t, v) for t, v in history if t >= since]
    for h, r in zip(horizons, got, strict=True):
        pairs = [b - a for i, (ta, a) in enumerate(inside) for tb, b in inside[i + 1 :] if 0 < tb - ta <= h]
        assert r == max([0.0, *pairs])


def test_rises_within_sees_a_ramp_that_no_single_step_shows() -> None:
    ramp = [(-150.0, 1.0), (-120.0, 2.0), (-90.0, 3.0), (-60.0, 4.0), (-30.0, 5.0)]
    assert rises_within(ramp, -400.0, [0.0, 30.0, 60.0, 120.0, 600.0]) == [0.0, 1.0, 2.0, 4.0, 4.0]
    assert rises_within(ramp, -100.0, [600.0]) == [2.0]  # only the window counts
    assert rises_within([(t, 6.0 - v) for t, v in ramp], -400.0, [600.0]) == [0.0]  # a fall
    # A run of equal readings: its last sample starts a rise, its first one ends a rise.
    assert rises_within([(-60.0, 1.0), (-30.0, 1.0), (-10.0, 1.0), (0.0, 5.0)], -100.0, [20.0]) == [4.0]
    assert rises_within([(-60.0, 1.0), (-50.0, 5.0), (-30.0, 5.0), (0.0, 5.0)], -100.0, [20.0]) == [4.0]
