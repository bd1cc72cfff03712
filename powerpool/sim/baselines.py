"""The anchor systems' power policies, from their documented rules and defaults.

Each is a planner with powerpool's signature, run through the same reconcile tick,
simulated fleet and accounting. They are models of the documented behaviour, not of
every implementation detail; where a default cannot work as such, the value used and
why is stated in the class docstring.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from powerpool.model import (
    PARKED_STATES,
    Action,
    Health,
    HostObservation,
    Plan,
    Pool,
    PowerState,
    Snapshot,
)
from powerpool.planner.ladder import needed

A = PowerState.ACTIVE


def _empty(p: Snapshot, actions: list[Action]) -> Plan:
    return Plan(tuple(actions), (), 0.0, 0.0, 0, ())


def always_on(pool: Pool, snap: Snapshot) -> Plan:
    """Every host stays active: the reference every saving is measured against."""
    return _empty(snap, [])


def _off_state(pool: Pool) -> PowerState:
    """The one power-off state the anchors use: soft-off if allowed, else the deepest."""
    if PowerState.OFF in pool.allowed:
        return PowerState.OFF
    return max((s for s in PARKED_STATES if s in pool.allowed), key=lambda s: s.depth, default=A)


def _on_period(snap: Snapshot, pool: Pool, period_s: float) -> bool:
    """True on the tick where a controller with this run period evaluates."""
    return snap.now.timestamp() % period_s < pool.tick_s


def _peak(snap: Snapshot, pool: Pool, window_s: float) -> float:
    """Peak demand (host-capacities) over the window, including the current reading."""
    since = snap.now.timestamp() - window_s
    vals = [v for t, v in snap.history if t >= since]
    if snap.load is not None:
        vals.append(snap.load)
    return max(vals, default=0.0) / pool.capacity_per_host


@dataclass
class _Counts:
    warm: list[HostObservation] = field(default_factory=list)  # resting warm
    parked: list[HostObservation] = field(default_factory=list)  # resting, not warm
    waking: int = 0
    parking: int = 0


def _count(snap: Snapshot) -> _Counts:
    c = _Counts()
    for o in sorted(snap.hosts, key=lambda o: o.name):
        if o.health is not Health.OK:
            continue
        if o.transition is not None:
            if o.transition.to.warm:
                c.waking += 1
            else:
                c.parking += 1
        elif o.state.warm:
            c.warm.append(o)
        else:
            c.parked.append(o)
    return c


def _wake(c: _Counts, n: int, why: str) -> list[Action]:
    return [Action(o.name, o.state, A, why) for o in c.parked[: max(0, n)]]


def _park(c: _Counts, n: int, to: PowerState, why: str) -> list[Action]:
    victims = sorted(c.warm, key=lambda o: o.since)[: max(0, n)]  # idle the longest first
    return [Action(o.name, o.state, to, why) for o in victims]


@dataclass
class Slurm:
    """Slurm power saving: suspend a node idle for SuspendTime; resume when jobs need it.

    SuspendTime defaults to -1 (disabled); the documentation's example value, 600 s, is
    used. SuspendExcNodes keeps 1 usable idle node. One power-off state. SuspendRate 60
    and ResumeRate 300 nodes/min. ResumeTimeout (60 s by default) must cover a boot to be
    usable at all; since the simulated fleet never fails a wake, it does not matter here.
    """

    suspend_time_s: float = 600.0
    keep_idle: int = 1
    suspend_rate: int = 60
    resume_rate: int = 300

    def __call__(self, pool: Pool, snap: Snapshot) -> Plan:
        c = _count(snap)
        demand = (snap.load or 0.0) / pool.capacity_per_host
        busy = needed(pool, demand)
        up = len(c.warm) + c.waking
        if busy > up:
            return _empty(snap, _wake(c, min(busy - up, self.resume_rate), "jobs need nodes"))
        # idle for SuspendTime: nodes not needed at any moment of the last SuspendTime
        recent = needed(pool, _peak(snap, pool, self.suspend_time_s))
        spare = len(c.warm) - max(recent, busy) - self.keep_idle
        return _empty(snap, _park(c, min(spare, self.suspend_rate), _off_state(pool), "idle for SuspendTime"))


@dataclass
class DPM:
    """VMware DPM: keep demand/capacity within 63 % +/- 18 %; power-on decisions over a
    5-minute demand history, power-off over 40 minutes; standby = off; at least 2 hosts
    on (HA enabled, its usual setting). DRS runs every 5 minutes."""

    target: float = 0.63
    tolerance: float = 0.18
    on_window_s: float = 300.0
    off_window_s: float = 2400.0
    min_on: int = 2
    period_s: float = 300.0

    def __call__(self, pool: Pool, snap: Snapshot) -> Plan:
        if not _on_period(snap, pool, self.period_s):
            return _empty(snap, [])
        c = _count(snap)
        cap = pool.profiles[pool.hosts[0].profile].capacity
        on = (len(c.warm) + c.waking) * cap
        high = _peak(snap, pool, self.on_window_s)
        if on <= 0 or high / on > self.target + self.tolerance:
            want = max(self.min_on, math.ceil(high / self.target / cap - 1e-9))
            return _empty(snap, _wake(c, want - len(c.warm) - c.waking, "demand/capacity above 81%"))
        low = _peak(snap, pool, self.off_window_s)
        if low / on < self.target - self.tolerance:
            want = max(self.min_on, math.ceil(low / self.target / cap - 1e-9))
            return _empty(
                snap,
                _park(
                    c,
                    len(c.warm) - want,
                    PowerState.OFF if PowerState.OFF in pool.allowed else _off_state(pool),
                    "demand/capacity below 45%",
                ),
            )
        return _empty(snap, [])


@dataclass
class OVirt:
    """oVirt power_saving: HostsInReserve = 1 empty host, LowUtilization 20 % /
    HighUtilization 80 % over CpuOverCommitDurationMinutes = 2, one action per balance
    run (every minute); a host goes to maintenance first, is powered down a run later."""

    reserve: int = 1
    high: float = 0.80
    window_s: float = 120.0
    period_s: float = 60.0
    maintenance: set[str] = field(default_factory=set)

    def __call__(self, pool: Pool, snap: Snapshot) -> Plan:
        if not _on_period(snap, pool, self.period_s):
            return _empty(snap, [])
        c = _count(snap)
        cap = pool.profiles[pool.hosts[0].profile].capacity
        used = max(1, math.ceil(_peak(snap, pool, self.window_s) / self.high / cap - 1e-9))
        names = {o.name for o in c.warm}
        self.maintenance &= names
        empty = len(c.warm) - len(self.maintenance) - used
        if empty < self.reserve:
            if self.maintenance:  # reactivate a parked host first: no power action
                self.maintenance.pop()
                return _empty(snap, [])
            return _empty(snap, _wake(c, 1, "too few empty hosts"))
        if self.maintenance:  # reserve met and a host parked: power it down
            name = sorted(self.maintenance)[0]
            self.maintenance.discard(name)
            o = next(o for o in c.warm if o.name == name)
            return _empty(snap, [Action(o.name, o.state, _off_state(pool), "parked host powered down")])
        if empty > self.reserve:
            self.maintenance.add(min(c.warm, key=lambda o: o.since).name)
        return _empty(snap, [])


@dataclass
class Watcher:
    """OpenStack Watcher saving_energy: keep max(min_free_hosts_num = 1,
    free_used_percent = 10 % of hosts with VMs) empty hosts on, power off the others.
    Runs as a continuous audit every 5 minutes (the interval is site-chosen)."""

    min_free: int = 1
    free_percent: float = 10.0
    period_s: float = 300.0

    def __call__(self, pool: Pool, snap: Snapshot) -> Plan:
        if not _on_period(snap, pool, self.period_s):
            return _empty(snap, [])
        c = _count(snap)
        demand = (snap.load or 0.0) / pool.capacity_per_host
        used = needed(pool, demand)
        free_needed = max(self.min_free, math.ceil(self.free_percent / 100.0 * used))
        want = used + free_needed
        have = len(c.warm) + c.waking
        if have < want:
            return _empty(snap, _wake(c, want - have, "too few free hosts"))
        return _empty(snap, _park(c, len(c.warm) - want, _off_state(pool), "free hosts above the target"))


def baselines() -> dict[str, object]:
    """Fresh instances (some keep state between ticks, like the real controllers)."""
    return {"always_on": always_on, "slurm": Slurm(), "dpm": DPM(), "ovirt": OVirt(), "watcher": Watcher()}
