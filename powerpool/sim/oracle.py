"""The offline optimum: the least energy any schedule could use with perfect foresight.

Method 1 of the performance anchors (layered, for identical hosts), in continuous time so
that coarse trace steps never round a latency up. Layer k is needed as *active* while
needed(demand) >= k, as *warm* (active or freq_scaled) while needed + warm tier >= k, and
free otherwise. Each free run of g seconds is bridged at the cheapest of: staying warm, or
entering a parked state and being warm again at its end; a run reaching the end of the
trace pays no wake. The serving (dynamic) energy is the same for every schedule and is
added once.

Serving layers in nested (last freed, first woken) order is optimal when a run's cost is
concave in its length and a run reaching the end never gains more from lengthening than a
run ending earlier. Real profiles meet both, but not every profile does (a transition
drawing less than idle; a state cheap to enter and dear to leave). So the layered pass runs
twice: once with costs relaxed until both hold, which gives a bound no schedule beats, and
once with the true costs, which is a schedule. Equal, the optimum is exact; otherwise the
report says how far apart they are.
"""

from __future__ import annotations

import bisect
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from powerpool.model import PARKED_STATES, Pool, PowerState, Profile
from powerpool.planner.ladder import needed

F = PowerState.FREQ_SCALED


@dataclass(frozen=True)
class Optimum:
    energy_kwh: float  # no schedule uses less
    dynamic_kwh: float
    transitions: dict[str, int]
    notes: tuple[str, ...] = ()
    gap_kwh: float = 0.0  # the best schedule found uses this much more; 0: exact


@dataclass(frozen=True)
class Line:
    """A free run of `shortest` <= g <= `longest` seconds spent this way costs `fixed` +
    `watts` * g."""

    fixed: float
    watts: float
    shortest: float
    state: PowerState | None  # None: the host stays warm
    longest: float = math.inf


Price = Callable[[float], tuple[float, PowerState | None]]


def run_lines(prof: Profile, allowed: frozenset[PowerState], warm_w: float) -> tuple[list[Line], list[Line]]:
    """Ways to spend a free run: one that must end warm, and one the trace's end cuts off."""
    warm = Line(0.0, warm_w, 0.0, None)
    wake, tail = [warm], [warm]
    for s in PARKED_STATES:
        if s in allowed and prof.supports(s):
            t_in, t_out, p, moving = prof.enter_s[s], prof.ready_s[s], prof.power[s], prof.moving_w(s)
            wake.append(Line((moving - p) * (t_in + t_out), p, t_in + t_out, s))
            tail += [
                Line((moving - p) * t_in, p, t_in, s),
                Line(0.0, moving, 0.0, s, t_in),
            ]  # or cut off entering
    return wake, tail


def cheapest(lines: Sequence[Line], g: float, feasible: bool) -> tuple[float, PowerState | None]:
    """(J, state) of the cheapest line at g; `feasible` skips lines g is too short or too
    long for (the relaxed bound extends every line to all g)."""
    return min(
        (
            (ln.fixed + ln.watts * g, ln.state)
            for ln in lines
            if not feasible or ln.shortest <= g <= ln.longest
        ),
        key=lambda c: c[0],
    )


def relaxed_tail(wake: Sequence[Line], tail: Sequence[Line]) -> Price:
    """The end-of-trace price lowered just enough that it never rises faster than a run's.

    tail~(g) = wake(g) + min over y <= g of (tail(y) - wake(y)); both are piecewise linear,
    so the running minimum is read at their crossings and at g itself.
    """
    lines = [*wake, *tail]
    cross = {0.0}
    for a, b in itertools.combinations(lines, 2):
        if a.watts != b.watts:
            x = (b.fixed - a.fixed) / (a.watts - b.watts)
            if x > 0:
                cross.add(x)
    points = sorted(cross)

    def diff(g: float) -> float:
        return cheapest(tail, g, False)[0] - cheapest(wake, g, False)[0]

    low = list(itertools.accumulate((diff(x) for x in points), min))

    def price(g: float) -> tuple[float, PowerState | None]:
        w = cheapest(wake, g, False)[0]
        t, state = cheapest(tail, g, False)
        return w + min(low[bisect.bisect_right(points, g) - 1], t - w), state

    return price


def _layered(
    hosts: int,
    times: Sequence[float],
    end: float,
    warm_w: float,
    idle_w: float,
    n_act: Sequence[int],
    n_warm: Sequence[int],
    wake: Price,
    tail: Price,
    moves: dict[str, int] | None,
) -> float:
    """Joules of serving every layer in nested order, each free run priced by wake/tail."""
    bounds = [*times[1:], end]

    def bridge(g: float, at_end: bool) -> float:
        cost, how = (tail if at_end else wake)(g)
        if how is not None and moves is not None:
            for key in [f"active->{how.value}"] + ([] if at_end else [f"{how.value}->active"]):
                moves[key] = moves.get(key, 0) + 1
        return cost

    energy = 0.0
    for k in range(1, hosts + 1):
        free_since: float | None = None  # start of the current free run, if any
        for t, t_next, a, w in zip(times, bounds, n_act, n_warm, strict=True):
            if w >= k:
                if free_since is not None:
                    energy += bridge(t - free_since, at_end=False)
                    free_since = None
                energy += (idle_w if a >= k else warm_w) * (t_next - t)
            elif free_since is None:
                free_since = t
        if free_since is not None:
            energy += bridge(end - free_since, at_end=True)
    return energy


def layered_optimum(pool: Pool, times: Sequence[float], demand: Sequence[float], end: float) -> Optimum:
    """Demand in host-capacities, as a step function: demand[i] holds on [times[i], times[i+1])."""
    names = {h.profile for h in pool.hosts}
    prof = pool.profiles[sorted(names)[0]]
    notes = [] if len(names) == 1 else [f"mixed profiles: the optimum assumes all hosts are {prof.name}"]
    hosts = len(pool.hosts)
    warm_w = min(prof.active_idle, prof.power.get(F, math.inf) if F in pool.allowed else math.inf)
    wake, tail = run_lines(prof, pool.allowed, warm_w)
    dyn_per_cap = (prof.active_peak - prof.active_idle) / prof.capacity

    n_act = [min(hosts, needed(pool, d / prof.capacity)) for d in demand]
    n_warm = [min(hosts, a + pool.warm) for a in n_act]
    cap_total = hosts * prof.capacity
    dynamic = sum(
        dyn_per_cap * min(d, cap_total) * (t1 - t0)
        for t0, t1, d in zip(times, [*times[1:], end], demand, strict=True)
    )
    common = (hosts, times, end, warm_w, prof.active_idle, n_act, n_warm)
    moves: dict[str, int] = {}
    bound = _layered(*common, lambda g: cheapest(wake, g, False), relaxed_tail(wake, tail), moves)
    schedule = _layered(*common, lambda g: cheapest(wake, g, True), lambda g: cheapest(tail, g, True), None)
    gap = max(0.0, schedule - bound) / 3.6e6
    if gap > 1e-9 * max(1.0, schedule / 3.6e6):
        notes.append(
            f"optimum: a bound, exact within {gap:.4g} kWh ({prof.name} has a transition drawing "
            "less than idle, or a state whose price at the trace's end outgrows a run's)"
        )
    else:
        gap = 0.0
    return Optimum((bound + dynamic) / 3.6e6, dynamic / 3.6e6, moves, tuple(notes), gap)
