"""The offline optimum: the least energy any schedule could use with perfect foresight.

Method 1 of the performance anchors (layered, exact for identical hosts), in continuous
time so that coarse trace steps never round a latency up (which would make the "optimum"
beatable). Layer k is needed as *active* while needed(demand) >= k, as *warm* (active or
freq_scaled) while needed + warm tier >= k, and free otherwise. Each free run of length
g is bridged at the cheapest of: staying warm, or entering a parked state s and waking
in time (enter_s + ready_s <= g). Runs at the end need no wake. The serving (dynamic)
energy is the same for every schedule and is added once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from powerpool.model import PARKED_STATES, Pool, PowerState, Profile
from powerpool.planner.ladder import needed

F = PowerState.FREQ_SCALED


@dataclass(frozen=True)
class Optimum:
    energy_kwh: float
    dynamic_kwh: float
    transitions: dict[str, int]
    notes: tuple[str, ...] = ()


Bridge = tuple[float, float, float, float, PowerState]  # enter, ready, J moving, W resting


def _bridges(prof: Profile, allowed: frozenset[PowerState]) -> list[Bridge]:
    """One entry per parked state this pool may use."""
    out = []
    for s in PARKED_STATES:
        if s in allowed and prof.supports(s):
            t_in, t_out = prof.enter_s[s], prof.ready_s[s]
            out.append((t_in, t_out, prof.moving_w(s) * (t_in + t_out), prof.power[s], s))
    return out


def bridge_cost(
    g: float, warm_w: float, bridges: Sequence[Bridge], tail: bool
) -> tuple[float, PowerState | None]:
    """Cheapest way for one host to spend a free run of g seconds: (J, the parked state,
    or None to stay warm). `tail`: the run ends with the trace, so no wake is paid."""
    best, how = warm_w * g, None
    for t_in, t_out, e_move, p, s in bridges:
        if tail and t_in <= g:
            e_in = e_move * t_in / (t_in + t_out) if t_in + t_out > 0 else 0.0
            cost = e_in + p * (g - t_in)
        elif not tail and t_in + t_out <= g:
            cost = e_move + p * (g - t_in - t_out)
        else:
            continue
        if cost < best:
            best, how = cost, s
    return best, how


def layered_optimum(pool: Pool, times: Sequence[float], demand: Sequence[float], end: float) -> Optimum:
    """Demand in host-capacities, as a step function: demand[i] holds on [times[i], times[i+1])."""
    names = {h.profile for h in pool.hosts}
    prof = pool.profiles[sorted(names)[0]]
    notes = () if len(names) == 1 else (f"mixed profiles: the optimum assumes all hosts are {prof.name}",)
    hosts = len(pool.hosts)
    warm_w = min(prof.active_idle, prof.power.get(F, math.inf) if F in pool.allowed else math.inf)
    bridges = _bridges(prof, pool.allowed)
    dyn_per_cap = (prof.active_peak - prof.active_idle) / prof.capacity

    bounds = [*times[1:], end]
    n_act = [min(hosts, needed(pool, d / prof.capacity)) for d in demand]
    n_warm = [min(hosts, a + pool.warm) for a in n_act]
    cap_total = hosts * prof.capacity
    dynamic = sum(
        dyn_per_cap * min(d, cap_total) * (t1 - t0) for t0, t1, d in zip(times, bounds, demand, strict=True)
    )
    moves: dict[str, int] = {}

    def bridge(g: float, tail: bool) -> float:
        cost, how = bridge_cost(g, warm_w, bridges, tail)
        if how is not None:
            keys = [f"active->{how.value}"] + ([] if tail else [f"{how.value}->active"])
            for key in keys:
                moves[key] = moves.get(key, 0) + 1
        return cost

    energy = 0.0
    for k in range(1, hosts + 1):
        free_since: float | None = None  # start of the current free run, if any
        for t, t_next, a, w in zip(times, bounds, n_act, n_warm, strict=True):
            if w >= k:
                if free_since is not None:
                    energy += bridge(t - free_since, tail=False)
                    free_since = None
                energy += (prof.active_idle if a >= k else warm_w) * (t_next - t)
            elif free_since is None:
                free_since = t
        if free_since is not None:
            energy += bridge(end - free_since, tail=True)
    return Optimum((energy + dynamic) / 3.6e6, dynamic / 3.6e6, moves, notes)
