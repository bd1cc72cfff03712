"""A simulated fleet: hosts that honour their hardware profile, and exact accounting.

A host told to sleep spends `enter_s.sleep` entering, then rests; woken, it spends
`ready_s.sleep` before it serves. The accountant integrates the pool's draw piecewise:
every change of demand or of the state counts closes a segment, so reported energy is
exactly the sum of the timeline's power x interval.

Serving power is spread over the active hosts: each draws idle + (peak - idle) x
utilisation. freq_scaled hosts are warm: they absorb at once whatever exceeds the active
capacity (charged the same dynamic power per unit served) until the planner un-scales
them. Demand beyond all warm capacity is unserved.
"""

from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from datetime import datetime

from powerpool.journal import Intent
from powerpool.model import LADDER, Action, Pool, PowerState, Profile
from powerpool.planner.ladder import needed

A, F = PowerState.ACTIVE, PowerState.FREQ_SCALED
COLUMNS = [s.value for s in LADDER] + ["waking", "entering"]


@dataclass(slots=True)
class _Host:
    name: str
    prof: Profile
    state: PowerState
    moving_to: PowerState | None = None
    moving_from: PowerState | None = None
    done_at: float = math.inf
    token: int = 0  # invalidates a scheduled completion after abandon


@dataclass
class Faults:
    """Injected failures: hosts whose wakes never complete, hosts that die at a time."""

    never_wake: frozenset[str] = frozenset()
    die_at: dict[str, float] = field(default_factory=dict)  # host -> sim seconds


class Accountant:
    """Pool power as a step function of time; energy, unserved demand, reserve shortfall."""

    def __init__(self, pool: Pool, t0: float, keep_timeline: bool) -> None:
        self.pool = pool
        self.t = t0
        self.demand = 0.0
        self.counts = dict.fromkeys(COLUMNS, 0)
        self.base_w = 0.0  # resting watts of every host, transitions at transition_w
        self.dyn_a = 0.0  # sum of active hosts' (peak - idle): drawn at full utilisation
        self.cap_a = 0.0
        self.dyn_f = 0.0  # the same for freq_scaled hosts, which take the overflow
        self.cap_f = 0.0
        self.energy_j = 0.0
        self.demand_s = 0.0  # integral of demand (host-capacity seconds)
        self.unserved = 0.0  # integral of unserved demand (host-capacity seconds)
        self.unserved_s = 0.0  # seconds with any unserved demand
        self.short_s = 0.0  # seconds with the warm reserve short
        self.timeline: list[tuple[float, ...]] | None = [] if keep_timeline else None

    @property
    def cap_warm(self) -> float:
        return self.cap_a + self.cap_f

    def power(self) -> float:
        d = self.demand
        watts = self.base_w
        if self.cap_a > 0:
            watts += self.dyn_a * min(1.0, d / self.cap_a)
        if d > self.cap_a and self.cap_f > 0:
            watts += self.dyn_f * min(1.0, (d - self.cap_a) / self.cap_f)
        return watts

    def flush(self, t: float) -> None:
        """Close the segment [self.t, t) at the current power and counts."""
        dt = t - self.t
        if dt <= 0:
            return
        self.energy_j += self.power() * dt
        self.demand_s += self.demand * dt
        gap = self.demand - self.cap_warm
        if gap > 1e-9:
            self.unserved += gap * dt
            self.unserved_s += dt
        if self.cap_warm + 1e-9 < needed(self.pool, self.demand) + self.pool.warm:
            self.short_s += dt
        self.t = t

    def row(self) -> None:
        if self.timeline is not None:
            row = (self.t, self.demand, *(self.counts[c] for c in COLUMNS), self.power())
            if self.timeline and self.timeline[-1][0] == self.t:
                self.timeline[-1] = row  # several changes at one instant: keep the last
            else:
                self.timeline.append(row)

    def add(self, h: _Host, sign: int) -> None:
        """Add (+1) or remove (-1) a host's contribution in its current condition."""
        p = h.prof
        if h.moving_to is not None:
            key = "waking" if h.moving_to.warm and not (h.moving_from or A).warm else "entering"
            self.counts[key] += sign
            end = h.moving_from if key == "waking" else h.moving_to
            self.base_w += sign * p.moving_w(end or A)
            return
        self.counts[h.state.value] += sign
        self.base_w += sign * p.power[h.state]  # ACTIVE maps to active_idle
        if h.state is A:
            self.dyn_a += sign * (p.active_peak - p.active_idle)
            self.cap_a += sign * p.capacity
        elif h.state is F:
            self.dyn_f += sign * (p.active_peak - p.active_idle)
            self.cap_f += sign * p.capacity


class SimFleet:
    """The simulator's channel set: commands take exactly the profile's time."""

    def __init__(self, pool: Pool, start: datetime, acct: Accountant, faults: Faults | None = None) -> None:
        self.pool = pool
        self.t0 = start.timestamp()
        self.acct = acct
        self.faults = faults or Faults()
        self.hosts = {h.name: _Host(h.name, pool.profiles[h.profile], A) for h in pool.hosts}
        for h in self.hosts.values():
            acct.add(h, +1)
        self._events: list[tuple[float, str, int]] = []
        self._done: list[tuple[str, PowerState | None, str]] = []
        self.transitions: dict[str, int] = {}
        for name, at in self.faults.die_at.items():
            heapq.heappush(self._events, (self.t0 + at, name, -1))

    # -- the Fleet protocol ---------------------------------------------------------------

    async def start(self, action: Action, intent: Intent) -> None:
        h = self.hosts[action.host]
        now = intent.started.timestamp()
        self.advance(now)
        p = h.prof
        key = f"{action.src.value}->{action.dst.value}"
        self.transitions[key] = self.transitions.get(key, 0) + 1
        if action.dst.warm and action.src.warm:  # a governor switch: warm throughout
            self.acct.add(h, -1)
            h.state = action.dst
            self.acct.add(h, +1)
            self.acct.row()
            self._done.append((h.name, h.state, "sim"))
            return
        took = p.ready_s[h.state] if action.dst.warm else p.enter_s[action.dst]
        self.acct.add(h, -1)
        h.moving_from, h.moving_to = h.state, action.dst
        h.done_at = math.inf if (action.dst.warm and h.name in self.faults.never_wake) else now + took
        self.acct.add(h, +1)
        self.acct.row()
        if h.done_at != math.inf:
            heapq.heappush(self._events, (h.done_at, h.name, h.token))

    def finished(self, now: datetime) -> list[tuple[str, PowerState | None, str]]:
        self.advance(now.timestamp())
        done, self._done = self._done, []
        return done

    def abandon(self, host: str, now: datetime) -> None:
        h = self.hosts[host]
        self.advance(now.timestamp())
        if h.moving_to is None:
            return
        self.acct.add(h, -1)
        h.state = h.moving_from or h.state  # the command never took: it rests where it was
        h.moving_to = h.moving_from = None
        h.token += 1
        self.acct.add(h, +1)
        self.acct.row()

    # -- time ---------------------------------------------------------------------------

    def advance(self, t: float) -> None:
        """Apply every completion up to time t, closing accounting segments at each."""
        ev = self._events
        while ev and ev[0][0] <= t:
            at, name, token = heapq.heappop(ev)
            h = self.hosts[name]
            self.acct.flush(at)
            if token == -1:  # injected death: the host drops out wherever it was
                self.acct.add(h, -1)
                h.state, h.moving_to, h.moving_from = PowerState.UNPOWERED, None, None
                h.token += 1
                self.acct.add(h, +1)
                self._done.append((name, None, "sim: never completed"))
            elif token == h.token and h.moving_to is not None:
                self.acct.add(h, -1)
                h.state, h.moving_to, h.moving_from = h.moving_to, None, None
                self.acct.add(h, +1)
                self._done.append((name, h.state, "sim"))
            self.acct.row()
        self.acct.flush(t)

    def set_demand(self, t: float, demand: float) -> None:
        """A trace sample: the timeline gets a row for it even if the value repeats."""
        self.advance(t)
        self.acct.demand = demand
        self.acct.row()
