"""Replay a trace through the real reconcile tick on a simulated fleet."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from powerpool.clock import FakeClock
from powerpool.journal import MemoryJournal
from powerpool.model import Pool, PowerState
from powerpool.planner import plan
from powerpool.reconcile import Controller, Planner, Reading, run_now, tick
from powerpool.sim.fleet import COLUMNS, Accountant, Faults, SimFleet
from powerpool.sim.trace import Trace

START = datetime(2026, 1, 5, 0, 0, tzinfo=UTC)  # a Monday: schedule windows line up
HISTORY_S = 2700.0  # load history every planner may look back over (DPM: 40 minutes)


@dataclass
class Result:
    name: str
    energy_kwh: float
    demand_host_s: float
    unserved_host_s: float
    unserved_s: float
    reserve_short_s: float
    duration_s: float
    hosts: int
    transitions: dict[str, int]
    wall_s: float
    timeline: list[tuple[float, ...]] | None = field(default=None, repr=False)

    @property
    def unserved_fraction(self) -> float:
        return self.unserved_host_s / self.demand_host_s if self.demand_host_s else 0.0

    @property
    def transitions_per_host_day(self) -> float:
        """Every transition, governor switches (active <-> freq_scaled) included."""
        return per_host_day(sum(self.transitions.values()), self.hosts, self.duration_s)

    @property
    def moves_per_host_day(self) -> float:
        return per_host_day(moves(self.transitions), self.hosts, self.duration_s)

    def as_json(self) -> dict[str, object]:
        return {
            "energy_kwh": round(self.energy_kwh, 4),
            "unserved_s": round(self.unserved_s, 1),
            "unserved_fraction": self.unserved_fraction,
            "reserve_short_s": round(self.reserve_short_s, 1),
            "transitions": dict(sorted(self.transitions.items())),
            "transitions_per_host_day": round(self.transitions_per_host_day, 3),
            "moves_per_host_day": round(self.moves_per_host_day, 3),
        }


def moves(transitions: dict[str, int]) -> int:
    """Sleeps and wakes among transition counts keyed "src->dst": a governor switch
    (active <-> freq_scaled) costs no energy, latency or wear."""
    return sum(n for k, n in transitions.items() if not all(PowerState(s).warm for s in k.split("->")))


def per_host_day(count: int, hosts: int, duration_s: float) -> float:
    days = duration_s / 86400.0
    return count / hosts / days if days and hosts else 0.0


class TraceLoad:
    """The trace as a load source: each sample holds until the next one; inside a gap
    the reading keeps its old timestamp, so it turns stale as a live metric would."""

    def __init__(self, trace: Trace, start: datetime) -> None:
        self.trace = trace
        self.t0 = start.timestamp()
        self.i = 0

    async def read(self, now: datetime) -> Reading:
        t, tr = now.timestamp() - self.t0, self.trace
        while self.i + 1 < len(tr.t) and tr.t[self.i + 1] <= t:
            self.i += 1
        nxt = tr.t[self.i + 1] if self.i + 1 < len(tr.t) else tr.t[self.i] + tr.step
        if nxt - tr.t[self.i] > 3 * tr.step:  # inside a gap: the last sample ages
            seen = datetime.fromtimestamp(self.t0 + tr.t[self.i] + tr.step, UTC)
            return Reading(tr.load[self.i], min(seen, now))
        return Reading(tr.load[self.i], now)


def simulate(
    pool: Pool,
    trace: Trace,
    planner: Planner = plan,
    *,
    name: str = "powerpool",
    faults: Faults | None = None,
    timeline: bool = False,
    progress: Callable[[float], None] | None = None,
) -> Result:
    """Run `planner` over `trace` (in the pool's load unit) and account every joule."""
    wall = time.perf_counter()
    clock = FakeClock(START)
    t0 = START.timestamp()
    acct = Accountant(pool, t0, timeline)
    fleet = SimFleet(pool, START, acct, faults)
    journal = MemoryJournal(pool, START, history_s=HISTORY_S)
    ctrl = Controller(pool, clock, TraceLoad(trace, START), fleet, journal, planner)
    scale = 1.0 / pool.capacity_per_host
    end = trace.t[-1] + trace.step
    next_tick, i, n = 0.0, 0, len(trace.t)
    report_every = max(1, n // 200)
    while True:
        t_sample = trace.t[i] if i < n else end
        if t_sample <= next_tick and i < n:
            fleet.set_demand(t0 + t_sample, trace.load[i] * scale)
            i += 1
            if progress and i % report_every == 0:
                progress(i / n)
            continue
        if next_tick >= end:
            break
        clock.set(START + timedelta(seconds=next_tick))
        next_tick += run_now(tick(ctrl))
    fleet.advance(t0 + end)
    acct.row()
    if progress:
        progress(1.0)
    return Result(
        name=name,
        energy_kwh=acct.energy_j / 3.6e6,
        demand_host_s=acct.demand_s,
        unserved_host_s=acct.unserved,
        unserved_s=acct.unserved_s,
        reserve_short_s=acct.short_s,
        duration_s=end,
        hosts=len(pool.hosts),
        transitions=dict(fleet.transitions),
        wall_s=time.perf_counter() - wall,
        timeline=acct.timeline,
    )


def timeline_header() -> list[str]:
    return ["t_s", "demand", *COLUMNS, "power_w"]
