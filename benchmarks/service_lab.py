"""The real service on a 500-host lab rack in 10 pools: tick durations, reaction to a
load step, memory and CPU.

The rack (500 asyncssh hosts with pinned keys in one child process, one snmpsim agent
with 4 PDUs, one WOL listener) and the service (`Service`, the code of `powerpool run`,
with its APScheduler jobs) talk over loopback: real SSH, SNMPv3 and Wake-on-LAN. They
share the machine's 2 cores, so the figures include the emulation's load. The load
drops to 15 % of the pools (they park about 40 hosts each), then steps to 60 %.
Reported: every pool tick's duration (what `powerpool_tick_seconds` exports), how long
after the step each pool sent its first wake, CPU (the whole service process, and its
event loop thread alone) and RSS.

Targets (issue 5): every tick under 1 s; wakes within one tick of a load step.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import resource
import statistics
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path

from powerpool.cliutil import load
from powerpool.lab.rack import LabRack, write_load
from powerpool.service import Service

ROOT = Path(__file__).resolve().parent.parent
HOSTS, POOLS, PDUS, SPEED = 500, 10, 4, 30.0
PARK_S, STEP_S = 75.0, 25.0  # wall seconds at low load, then after the step


class TimedService(Service):
    """The service, recording each tick's duration as the metrics see it."""

    ticks: list[tuple[str, float, float]]

    async def tick(self, name: str) -> None:
        await super().tick(name)
        self.ticks.append((name, time.time(), self.pools[name].tick_s))


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def serve_rack(root: Path, ready: Event, stop: Event) -> None:
    """The child process: the emulated rack, until told to stop."""
    with LabRack(root, ROOT / "hardware", hosts=HOSTS, pdus=PDUS, speed=SPEED, pools=POOLS):
        ready.set()
        stop.wait()


async def drive(root: Path) -> dict[str, float]:
    loaded = load((root / "policies",), root / "hardware")
    svc = TimedService(loaded, root / "state", ROOT / "hardware" / "pdus")
    svc.ticks = []
    cap = 100.0 * HOSTS / POOLS  # per pool; every pool reads the same load file
    level = [0.15 * cap]

    async def publish() -> None:  # a fresh reading, as a live metric would be
        while True:
            write_load(root / "load", level[0])
            await asyncio.sleep(0.2)

    feeder = asyncio.ensure_future(publish())
    t_open = time.monotonic()
    await svc.open()
    opened_s = time.monotonic() - t_open
    sched = svc.schedule()
    sched.start()
    cpu0, thread0 = time.process_time(), time.thread_time()
    await asyncio.sleep(PARK_S)
    parked = parked_now(svc)
    step_at = time.time()
    level[0] = 0.60 * cap
    write_load(root / "load", level[0])
    await asyncio.sleep(STEP_S)
    cpu, thread = time.process_time() - cpu0, time.thread_time() - thread0
    first_wake = {}
    for name in svc.pools:
        row = svc.store.db.execute(
            "SELECT min(started) FROM intents WHERE pool = ? AND dst = 'active' AND started >= ?",
            (name, step_at),
        ).fetchone()
        first_wake[name] = (row[0] - step_at) if row[0] else float("inf")
    intents = svc.store.db.execute("SELECT count(*) FROM intents").fetchone()[0]
    awake = HOSTS - parked_now(svc)
    tick_s = next(iter(svc.pools.values())).bundle.pool.tick_s
    feeder.cancel()
    await svc.close()
    durations = [d for _, _, d in svc.ticks]
    return {
        "open_s": opened_s,
        "ticks": len(durations),
        "tick_median_s": statistics.median(durations),
        "tick_p99_s": sorted(durations)[int(0.99 * (len(durations) - 1))],
        "tick_max_s": max(durations),
        "tick_interval_s": tick_s,
        "parked": parked,
        "awake_after": awake,
        "first_wake_max_s": max(first_wake.values()),
        "intents": intents,
        "cpu_s": cpu,
        "loop_cpu_s": thread,
        "wall_s": PARK_S + STEP_S,
    }


def parked_now(svc: Service) -> int:
    return sum(not o.state.warm for rt in svc.pools.values() for o in rt.journal.snapshot(svc.now()).hosts)


def run() -> dict[str, float]:
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory(prefix="powerpool-bench-lab-") as tmp:
        ready, stop = ctx.Event(), ctx.Event()
        child = ctx.Process(target=serve_rack, args=(Path(tmp), ready, stop), daemon=True)
        child.start()
        try:
            if not ready.wait(300):
                raise RuntimeError("the lab rack did not start")
            r = asyncio.run(drive(Path(tmp)))
        finally:
            stop.set()
            child.join(60)
    return {**r, "rss_mb": rss_mb()}


def main() -> None:
    print(
        f"service on the lab rack: {HOSTS} hosts in {POOLS} pools, real SSH/SNMPv3/WOL (target: ticks < 1 s)"
    )
    r = run()
    print(
        f"  start-up (first look at {HOSTS} hosts) {r['open_s']:.1f} s; {r['ticks']:.0f} ticks, "
        f"every {r['tick_interval_s']:g} s per pool: median {1000 * r['tick_median_s']:.0f} ms, "
        f"p99 {1000 * r['tick_p99_s']:.0f} ms, max {1000 * r['tick_max_s']:.0f} ms"
    )
    print(
        f"  {r['parked']:.0f} hosts parked at 15 % load; after the step to 60 %: first wake in every pool "
        f"within {r['first_wake_max_s']:.2f} s (one tick = {r['tick_interval_s']:g} s); "
        f"{r['awake_after']:.0f} active {STEP_S:.0f} s later; {r['intents']:.0f} intents"
    )
    print(
        f"  CPU over {r['wall_s']:.0f} s: {r['cpu_s']:.0f} s for the service process (SSH threads included), "
        f"{r['loop_cpu_s']:.0f} s on its event loop; service peak RSS {r['rss_mb']:.0f} MB"
    )


if __name__ == "__main__":
    main()
