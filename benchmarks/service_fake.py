"""The service's per-pool work at scale: 10,000 hosts in 100 pools on fake channels.

Each pool runs the real reconcile tick (`powerpool.reconcile.tick`: load -> verify ->
plan -> guard -> journal intent -> act) with the durable journal (SQLite, WAL,
synchronous=FULL, one shared file as the service has) and the simulator's fleet as the
channels, on a fake clock. The load sits at 25 % of the pool for 30 simulated minutes
(the pools park their spares), then steps to 75 %: every pool must send wake commands
in the first tick after the step. Reported: the wall time of a round of 100 pool ticks
(the service's ticks run one pool at a time on one event loop), the slowest single
pool tick, CPU time, peak RSS and the journal's size.

Target (issue 5): every tick under 1 s; a load step answered with wakes within one tick.
"""

from __future__ import annotations

import resource
import statistics
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from benchmarks.planner_scale import build
from powerpool.clock import FakeClock
from powerpool.journal.durable import DurableJournal
from powerpool.journal.store import Store
from powerpool.model import Pool
from powerpool.reconcile import Controller, Reading, run_now, tick
from powerpool.sim.fleet import Accountant, SimFleet

START = datetime(2026, 11, 23, 2, 0, tzinfo=UTC)
LOW_S, HIGH_S = 1800.0, 600.0  # simulated seconds before and after the step


class StepLoad:
    """A fresh reading every tick: `low` until `step_at`, then `high`."""

    def __init__(self, clock: FakeClock, low: float, high: float, step_at: datetime) -> None:
        self.clock, self.low, self.high, self.step_at = clock, low, high, step_at

    async def read(self, now: datetime) -> Reading:
        return Reading(self.high if now >= self.step_at else self.low, now)


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run(pools: int = 100, hosts: int = 100) -> dict[str, float]:
    clock = FakeClock(START)
    step_at = START + timedelta(seconds=LOW_S)
    with tempfile.TemporaryDirectory(prefix="powerpool-bench-") as tmp:
        store = Store(Path(tmp) / "journal.sqlite")
        ctrls: list[Controller] = []
        for p, _ in build(pools, hosts, steady=True):
            pool: Pool = replace(p, tick_s=10.0)
            cap = pool.capacity_per_host * len(pool.hosts)
            fleet = SimFleet(pool, START, Accountant(pool, START.timestamp(), False))
            journal = DurableJournal(pool, store, START, "bench@here:1", history_s=2700.0)
            load = StepLoad(clock, 0.25 * cap, 0.75 * cap, step_at)
            ctrls.append(Controller(pool, clock, load, fleet, journal))
        rounds: list[float] = []
        slowest = 0.0
        reacted = 0
        cpu0 = time.process_time()
        t = 0.0
        while t < LOW_S + HIGH_S:
            clock.set(START + timedelta(seconds=t))
            first_after_step = LOW_S <= t < LOW_S + 10.0
            r0 = time.perf_counter()
            for c in ctrls:
                p0 = time.perf_counter()
                run_now(tick(c))
                slowest = max(slowest, time.perf_counter() - p0)
                if first_after_step:
                    now = clock.now()
                    reacted += any(
                        it.started == now and it.dst.warm and not it.src.warm
                        for it in c.journal.open.values()
                    )
            rounds.append(time.perf_counter() - r0)
            t += 10.0
        cpu = time.process_time() - cpu0
        intents = store.db.execute("SELECT count(*) FROM intents").fetchone()[0]
        size = (Path(tmp) / "journal.sqlite").stat().st_size + (
            Path(tmp) / "journal.sqlite-wal"
        ).stat().st_size
        store.close()
    return {
        "pools": pools,
        "hosts": pools * hosts,
        "ticks": len(rounds),
        "round_median_s": statistics.median(rounds),
        "round_max_s": max(rounds),
        "pool_tick_max_s": slowest,
        "reacted_pools": reacted,
        "cpu_s": cpu,
        "simulated_s": LOW_S + HIGH_S,
        "intents": intents,
        "journal_mb": size / 2**20,
        "rss_mb": rss_mb(),
    }


def main() -> None:
    print("service, fake channels: 10,000 hosts in 100 pools, durable journal (target: every tick < 1 s)")
    r = run()
    print(
        f"  {r['ticks']:.0f} rounds of {r['pools']:.0f} pool ticks ({r['simulated_s'] / 60:.0f} sim. min): "
        f"round median {1000 * r['round_median_s']:.0f} ms, worst {1000 * r['round_max_s']:.0f} ms; "
        f"slowest pool tick {1000 * r['pool_tick_max_s']:.0f} ms"
    )
    print(f"  load step 25 % -> 75 %: {r['reacted_pools']:.0f}/{r['pools']:.0f} pools woke hosts in one tick")
    print(
        f"  {r['intents']:.0f} intents journaled ({r['journal_mb']:.1f} MB); CPU {r['cpu_s']:.1f} s "
        f"({100 * r['cpu_s'] / r['simulated_s']:.1f} % of a core at real time); peak RSS {r['rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
