"""The reserve ladder as numbers: evaluation points, requirements and per-profile tables.

Every rule of the ladder has the same shape: "capacity ready within h seconds must be at
least R(h)". The planner evaluates it at a few points h (0 for the warm floor, each
tier's deadline, each state's ready time), so one array per side answers every tier.
"""

from __future__ import annotations

import bisect
import math
import weakref
from collections.abc import Sequence
from dataclasses import dataclass

from powerpool.model import LADDER, Host, Pool, PowerState, Profile, Tier, can_transition, fmt_duration

EPS = 1e-9


def needed(pool: Pool, demand: float) -> int:
    """Unit hosts that must serve `demand` (in host-capacities) at target utilisation."""
    return max(pool.min_active, math.ceil(demand / pool.target_utilisation - EPS))


@dataclass(frozen=True, slots=True)
class ProfileTable:
    """Per-profile constants the planner reads on every host, computed once per pool."""

    profile: Profile
    ready: dict[PowerState, float]  # resting -> serving; 0 for warm states
    parked_ready: dict[PowerState, float]  # entering + ready: pessimistic while entering
    break_even: dict[PowerState, float]
    efficiency: float  # watts per unit capacity at peak: lower serves cheaper
    cap: float  # the profile's capacity
    park_targets: tuple[PowerState, ...]  # allowed, supported, non-warm; deepest first
    deeper: dict[PowerState, tuple[PowerState, ...]]  # park targets reachable directly
    worth: dict[PowerState, str]  # why a state is worth going to, for reasons


@dataclass(frozen=True, slots=True)
class PoolTable:
    points: tuple[float, ...]  # ascending, points[0] == 0 (the warm floor)
    profiles: dict[str, ProfileTable]
    horizon: float  # the slowest ready time that matters
    hosts: tuple[tuple[Host, ProfileTable, tuple[str, ...], int], ...]  # host, profile, PDUs, position
    short_why: tuple[str, ...]  # per point: what a refused sleep would break
    index: dict[float, int]  # index_of for every ready time of a host at rest
    multi_domain: bool  # hosts span more than one failure domain
    pdus: frozenset[str]  # every PDU a host of the pool is plugged into
    lookback: float  # seconds of load history any rule looks at
    due: tuple[tuple[Tier, ...], ...]  # per point: the tiers due within it
    labels: tuple[str, ...]  # per tier of the policy: its name in plans

    def index_of(self, ready: float) -> int:
        """First point a host with this ready time counts at."""
        return bisect.bisect_left(self.points, ready - EPS)


_TABLES: weakref.WeakKeyDictionary[Pool, PoolTable] = weakref.WeakKeyDictionary()


def table(pool: Pool) -> PoolTable:
    """Static numbers for a pool; cached, since a pool is immutable."""
    cached = _TABLES.get(pool)
    if cached is None:
        cached = _TABLES[pool] = _build(pool)
    return cached


def _build(pool: Pool) -> PoolTable:
    used = {h.profile for h in pool.hosts}
    profiles: dict[str, ProfileTable] = {}
    points = {0.0} | {t.within_s for t in pool.tiers}
    for name in sorted(used):
        p = pool.profiles[name]
        supported = [s for s in LADDER if s in pool.allowed and p.supports(s)]
        ready = {s: (0.0 if s.warm else p.ready_s[s]) for s in supported}
        ready[PowerState.ACTIVE] = 0.0
        parked_ready = {s: 0.0 if s.warm else p.enter_s[s] + r for s, r in ready.items()}
        targets = tuple(s for s in reversed(supported) if not s.warm)
        be = {s: p.break_even_s(s) for s in supported}
        profiles[name] = ProfileTable(
            profile=p,
            ready=ready,
            parked_ready=parked_ready,
            break_even=be,
            efficiency=p.active_peak / p.capacity,
            cap=p.capacity,
            park_targets=targets,
            deeper={
                src: tuple(t for t in targets if t.depth > src.depth and can_transition(src, t))
                for src in LADDER
            },
            worth={
                s: "stays warm"
                if s.warm
                else f"break-even {fmt_duration(round(be[s]))}, ready again in {fmt_duration(ready[s])}"
                for s in supported
            },
        )
        points |= {r for s, r in ready.items() if not s.warm}
    ordered = tuple(sorted(points))
    # Hosts in serving order: most efficient first, so a filter keeps the order.
    # Each keeps its position in the pool, where a snapshot normally lists it.
    ordered_hosts = sorted(
        enumerate(pool.hosts), key=lambda kh: (profiles[kh[1].profile].efficiency, kh[1].name)
    )
    hosts = tuple(
        (h, profiles[h.profile], tuple(sorted({o.pdu for o in h.outlets})), k) for k, h in ordered_hosts
    )
    why = tuple(
        "would break the warm floor (needed + warm tier)"
        if h == 0
        else f"would leave too little ready within {fmt_duration(h)}"
        for h in ordered
    )
    index = {
        r: bisect.bisect_left(ordered, r - EPS)
        for pt in profiles.values()
        for r in (*pt.ready.values(), *pt.parked_ready.values())
    }
    multi = len({d for h in pool.hosts for d in h.domains}) > 1
    pdus = frozenset(o.pdu for h in pool.hosts for o in h.outlets)
    lookback = max(pool.idle_before_sleep_s, pool.peak_hold_s, pool.trend_window_s, ordered[-1])
    due = tuple(tuple(t for t in pool.tiers if t.within_s <= h) for h in ordered)
    labels = tuple(t.label for t in pool.tiers)
    return PoolTable(
        ordered,
        profiles,
        ordered[-1],
        hosts,
        why,
        index,
        multi,
        pdus,
        lookback,
        due,
        labels,
    )


def requirements(
    pool: Pool, tab: PoolTable, forecast: Sequence[float], floors: Sequence[int], safe: bool
) -> list[int]:
    """R(h) at each point: needed for the demand forecast, plus the warm tier, plus every
    tier due within h, and at least any schedule window's floor.

    What is ready within h stays the same until the next point, while forecast demand
    keeps rising, so point i must already cover the forecast up to point i + 1: the
    warm hosts carry the pool until the fastest spare could arrive. With `safe` (the
    breaker), the whole ladder must be warm.
    """
    out: list[int] = []
    running = 0
    last = len(tab.points) - 1
    for i, due in enumerate(tab.due):
        j = i + 1 if i < last else last
        n = needed(pool, forecast[j])
        r = n + pool.warm
        for t in due:
            r += t.extra(n)
        if floors[j] > r:
            r = floors[j]  # a schedule window's floor (see forecast.window_floors)
        if r > running:
            running = r
        out.append(running)
    if safe:
        out = [max(r, out[-1]) for r in out]
    return out
