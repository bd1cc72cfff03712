"""The layered optimum against an independent exact dynamic programme, and as a bound."""

from __future__ import annotations

import itertools
import random
from functools import cache

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from powerpool.config.load import load_profiles
from powerpool.errors import Problem
from powerpool.model import PowerState
from powerpool.planner.ladder import needed
from powerpool.sim.oracle import layered_optimum
from powerpool.sim.runner import simulate
from powerpool.sim.trace import Trace
from tests.conftest import REPO, S, make_pool, profile

Phase = tuple[object, ...]


def exact_dp(
    pool, demand: list[float], idle: float, parked: dict[PowerState, tuple[int, int, float, float]]
) -> float:
    """Brute-force optimum over whole-slot schedules (slot = 1 s), hosts start warm.

    parked: state -> (enter slots, ready slots, resting W, moving W). A host is warm (W),
    entering (E, s, slots left), resting (S, s) or waking (U, s, slots left), and may wake
    as soon as it has entered; every slot needs needed(d) + warm tier warm hosts, and a
    host still entering when the demand ends simply stops there. Independent of the
    layered method.
    """
    hosts = len(pool.hosts)
    need = [min(hosts, needed(pool, d) + pool.warm) for d in demand]

    def moves(ph: Phase) -> list[Phase]:
        kind = ph[0]
        if kind == "W":
            return [("W",)] + [("E", s, e) for s, (e, _, _, _) in parked.items()]
        if kind == "E":
            s, k = ph[1], ph[2]
            return [("E", s, k - 1)] if k > 1 else [("S", s), ("U", s, parked[s][1])]  # type: ignore[index]
        if kind == "S":
            return [("S", ph[1]), ("U", ph[1], parked[ph[1]][1])]  # type: ignore[index]
        s, k = ph[1], ph[2]
        return [("U", s, k - 1)] if k > 1 else [("W",)]

    def cost(ph: Phase) -> float:
        if ph[0] == "W":
            return idle
        return parked[ph[1]][2] if ph[0] == "S" else parked[ph[1]][3]  # type: ignore[index]

    def after(state: tuple[Phase, ...]) -> set[tuple[Phase, ...]]:
        return {tuple(sorted(c, key=repr)) for c in itertools.product(*(moves(ph) for ph in state))}

    @cache
    def best(t: int, state: tuple[Phase, ...]) -> float:
        if t == len(demand):
            return 0.0
        if sum(1 for ph in state if ph[0] == "W") < need[t]:
            return float("inf")
        return sum(cost(ph) for ph in state) + min(best(t + 1, nxt) for nxt in after(state))

    # every host is warm just before slot 0 and may start entering a state at once
    return min(best(0, first) for first in after(tuple([("W",)] * hosts)))


def _instance(
    seed: int,
) -> tuple[object, list[float], dict[PowerState, tuple[int, int, float, float]]]:
    """A 3-host pool with sleep and off, random latencies and powers (some transitions
    drawing less than idle), and a short random demand."""
    rnd = random.Random(seed)
    sleep_in, sleep_out = rnd.randint(1, 2), rnd.randint(1, 2)
    off_in, off_out = rnd.randint(1, 3), rnd.randint(1, 3)
    sleep_w, sleep_moving = rnd.choice([10.0, 30.0]), rnd.choice([60.0, 100.0, 150.0])
    off_moving = rnd.choice([80.0, 120.0])
    prof = profile(
        active_idle=100.0,
        active_peak=100.0,  # no serving energy: only the schedule's energy is compared
        power={S.ACTIVE: 100.0, S.SLEEP: sleep_w, S.OFF: 0.0},
        ready_s={S.ACTIVE: 0.0, S.SLEEP: float(sleep_out), S.OFF: float(off_out)},
        enter_s={S.ACTIVE: 0.0, S.SLEEP: float(sleep_in), S.OFF: float(off_in)},
        transition_w={S.SLEEP: sleep_moving, S.OFF: off_moving},
    )
    pool = make_pool(3, prof=prof, allowed=(S.ACTIVE, S.SLEEP, S.OFF), min_active=0, warm=rnd.randint(0, 1))
    demand = [float(rnd.randint(0, 2)) for _ in range(rnd.randint(4, 10))]
    parked = {
        S.SLEEP: (sleep_in, sleep_out, sleep_w, sleep_moving),
        S.OFF: (off_in, off_out, 0.0, off_moving),
    }
    return pool, demand, parked


def _optimum(pool, demand: list[float]) -> tuple[float, float, tuple[str, ...]]:  # type: ignore[no-untyped-def]
    """The optimum on a 1-s-slot demand: (bound J, bound + gap J, notes)."""
    opt = layered_optimum(pool, [float(t) for t in range(len(demand))], demand, float(len(demand)))
    return opt.energy_kwh * 3.6e6, (opt.energy_kwh + opt.gap_kwh) * 3.6e6, opt.notes


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_layered_optimum_brackets_an_exact_dp_and_meets_it_when_it_says_exact(seed: int) -> None:
    pool, demand, parked = _instance(seed)
    joules = exact_dp(pool, demand, 100.0, parked)
    bound, schedule, _ = _optimum(pool, demand)
    assert bound <= joules + 1e-6  # no schedule beats the optimum
    assert joules <= schedule + 1e-6  # and the schedule it found is one
    if schedule == bound:  # the report calls it exact
        assert bound == pytest.approx(joules, rel=1e-9, abs=1e-6)


def test_a_host_parked_at_the_end_may_be_better_handed_over_and_the_optimum_says_it_is_a_bound() -> None:
    """Sleep is cheap to enter and dear to leave, off the reverse. Better leave parked at
    the end the host that left last (sleep, 220 J) and wake the one idle from the start
    for the peak at slot 7 (off, 480 J); nested layers do the reverse (230 + 480 J)."""
    prof = profile(
        active_idle=100.0,
        active_peak=100.0,
        power={S.ACTIVE: 100.0, S.SLEEP: 10.0, S.OFF: 0.0},
        ready_s={S.ACTIVE: 0.0, S.SLEEP: 2.0, S.OFF: 2.0},
        enter_s={S.ACTIVE: 0.0, S.SLEEP: 1.0, S.OFF: 2.0},
        transition_w={S.SLEEP: 150.0, S.OFF: 120.0},
    )
    pool = make_pool(3, prof=prof, allowed=(S.ACTIVE, S.SLEEP, S.OFF), min_active=0, warm=0)
    demand = [2.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 2.0, 1.0]
    parked = {S.SLEEP: (1, 2, 10.0, 150.0), S.OFF: (2, 2, 0.0, 120.0)}
    assert exact_dp(pool, demand, 100.0, parked) == pytest.approx(1900.0)
    bound, schedule, notes = _optimum(pool, demand)
    assert bound <= 1900.0 + 1e-6 and schedule == pytest.approx(1910.0)
    assert any("a bound, exact within" in n for n in notes)


@pytest.mark.parametrize("name", sorted(p.stem for p in (REPO / "hardware" / "servers").glob("*.toml")))
def test_the_optimum_is_exact_on_every_shipped_server_profile(name: str) -> None:
    problems: list[Problem] = []
    prof = next(iter(load_profiles([REPO / "hardware" / "servers" / f"{name}.toml"], problems).values()))
    assert not problems
    pool = make_pool(12, prof=prof, allowed=tuple(s for s in S if prof.supports(s)), min_active=1)
    trace = _wave(2.0, 60.0, 9.0 * prof.capacity, random.Random(3))
    opt = layered_optimum(pool, trace.t, [v / 100.0 for v in trace.load], trace.t[-1] + trace.step)
    assert opt.gap_kwh == 0.0 and not opt.notes
    assert any(k.startswith("active->") for k in opt.transitions)  # it did park hosts


def _wave(days: float, step: float, peak: float, rnd: random.Random) -> Trace:
    """A day/night load with minute noise, in host-capacities x 100 load units."""
    import math

    t = [i * step for i in range(int(days * 86400 / step))]
    load = [
        100.0 * max(0.3, peak * (0.55 - 0.45 * math.cos(2 * math.pi * x / 86400)) * rnd.uniform(0.9, 1.1))
        for x in t
    ]
    return Trace("wave", t, load, step)


@pytest.mark.parametrize("seed", [1, 2])
def test_no_simulated_policy_beats_the_optimum(seed: int) -> None:
    pool = make_pool(12, min_active=1, peak_hold_s=300.0, idle_before_sleep_s=120.0, min_uptime_s=300.0)
    trace = _wave(1.0, 60.0, 9.0, random.Random(seed))
    end = trace.t[-1] + trace.step
    opt = layered_optimum(pool, trace.t, [v / 100.0 for v in trace.load], end)
    ours = simulate(pool, trace)
    assert ours.energy_kwh >= opt.energy_kwh and opt.gap_kwh == 0.0
    assert ours.energy_kwh < simulate(pool, trace, lambda p, s: _noop(s)).energy_kwh


def _noop(snap):  # type: ignore[no-untyped-def]
    from powerpool.sim.baselines import always_on

    return always_on(None, snap)  # type: ignore[arg-type]
