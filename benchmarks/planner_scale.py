"""One planning step for 10,000 hosts in 100 pools: wall time and memory.

Target (issue: foundation): under 50 ms for all 100 pools together, under 200 MB.
Each pool is a realistic mix: a 3-tier ladder, two racks and four PDUs, hosts spread
over every state with some holds, failures and in-flight transitions, 30 minutes of
load history. The step is timed after one warm-up (profile tables are cached per pool).

The best of 30 rounds is the code's own cost (as timeit advises); the median and worst
show how much a shared, noisy machine adds on top.
"""

from __future__ import annotations

import gc
import random
import statistics
import time
import tracemalloc
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from powerpool.config.load import load_profiles
from powerpool.errors import Problem
from powerpool.model import (
    Health,
    Hold,
    HoldKind,
    Host,
    HostObservation,
    Outlet,
    Pool,
    PowerState,
    Profile,
    Snapshot,
    Tier,
    Transition,
)
from powerpool.planner import plan
from powerpool.planner.layout import settle

ROOT = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
S = PowerState


def _profile() -> Profile:
    """The shipped modern-2s profile, minus hibernate (as the web pool uses it)."""
    problems: list[Problem] = []
    (prof,) = load_profiles([ROOT / "hardware/servers/modern-2s.toml"], problems).values()
    assert not problems, problems
    drop = PowerState.HIBERNATE
    keep = {s: v for s, v in prof.power.items() if s is not drop}
    return replace(
        prof,
        power=keep,
        ready_s={s: v for s, v in prof.ready_s.items() if s in keep},
        enter_s={s: v for s, v in prof.enter_s.items() if s in keep},
    )


def build(
    pools: int = 100, hosts: int = 100, seed: int = 7, steady: bool = False
) -> list[tuple[Pool, Snapshot]]:
    """Pools of `hosts` hosts. `steady`: each pool rests where the planner settled it for
    its load (the common tick of a running service), with the load now 15 % higher or
    lower and a few holds, failures and wakes in flight. Otherwise (churn): every host
    in a random state, the worst case for one step."""
    rnd = random.Random(seed)
    prof = _profile()
    out = []
    for p in range(pools):
        hs = []
        for i in range(hosts):
            outlet = Outlet(f"pdu{p}-{i % 4}", i // 4 + 1)
            mac = f"02:00:00:{p:02x}:{i // 256:02x}:{i % 256:02x}"
            domains = (f"rack:r{p}-{i % 2}", f"pdu:{outlet.pdu}")
            hs.append(Host(f"p{p:03d}h{i:03d}", f"127.1.{p}.{i}", mac, prof.name, (outlet,), domains))
        pool = Pool(
            name=f"pool{p:03d}",
            hosts=tuple(hs),
            profiles={prof.name: prof},
            capacity_per_host=100.0,
            target_utilisation=0.7,
            allowed=frozenset(prof.power),
            min_active=2,
            warm=1,
            tiers=(Tier(60.0, 2), Tier(600.0, 0, 25.0)),
            wakes_per_minute=10,
            sleeps_per_minute=5,
            max_ops_per_pdu=2,
        )
        load = rnd.uniform(0.1, 0.6) * hosts * 100.0
        layout = settle(pool, load, NOW) if steady else {}
        if steady:
            load *= rnd.choice([0.85, 1.15])
        obs = []
        for h in hs:
            state = layout.get(h.name) or rnd.choice(
                [S.ACTIVE] * 4 + [S.FREQ_SCALED, S.SLEEP, S.OFF, S.UNPOWERED, S.DISK_STANDBY]
            )
            health = Health.OK if rnd.random() > 0.02 else Health.FAILED
            hold = Hold(HoldKind.AWAKE, None, "bench") if rnd.random() < 0.02 else None
            moving = rnd.random() < 0.03 and state not in (S.ACTIVE, S.FREQ_SCALED)
            tr = Transition(S.ACTIVE, NOW - timedelta(seconds=5)) if moving else None
            since = NOW - timedelta(seconds=rnd.uniform(0, 20000))
            obs.append(HostObservation(h.name, state, since, health, hold, tr, rnd.randint(0, 50)))
        t0 = NOW.timestamp()
        history = tuple((t0 - 10 * k, load * rnd.uniform(0.9, 1.1)) for k in range(180, 0, -1))
        out.append((pool, Snapshot(NOW, load, NOW - timedelta(seconds=3), tuple(obs), history)))
    return out


def measure(cases: list[tuple[Pool, Snapshot]], rounds: int = 30) -> list[float]:
    for pool, snap in cases:  # warm-up: builds the per-pool tables once, as the service does
        plan(pool, snap)
    gc.collect()
    gc.freeze()  # long-lived inputs leave the GC's view, as a service does after start-up
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for pool, snap in cases:
            plan(pool, snap)
        times.append(time.perf_counter() - t0)
    gc.unfreeze()
    return times


def main() -> None:
    print("planner scale: one planning step for 10,000 hosts in 100 pools (target < 50 ms)")
    for label, steady in (("steady", True), ("churn", False)):
        cases = build(steady=steady)
        t = measure(cases)
        print(
            f"  {label:7s} median {1000 * statistics.median(t):6.1f} ms   best {1000 * min(t):6.1f} ms"
            f"   worst {1000 * max(t):6.1f} ms"
        )
    tracemalloc.start()
    for pool, snap in build(steady=False):
        plan(pool, snap)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"  memory  {peak / 2**20:.1f} MB peak traced for inputs + planning (target < 200 MB)")


if __name__ == "__main__":
    main()
