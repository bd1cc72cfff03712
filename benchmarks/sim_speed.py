"""Simulator speed: the 58-day nasa trace for 40 hosts (target < 60 s) and 1,000 hosts
over the 8-day alibaba trace (target < 120 s), powerpool's planner only, on this machine.
Reads ../shared/traces/canonical; skips without it."""

from __future__ import annotations

from pathlib import Path

from powerpool.config import discover, load_all
from powerpool.sim.report import scale_trace, with_hosts
from powerpool.sim.runner import simulate
from powerpool.sim.trace import read_trace

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT.parent / "shared" / "traces" / "canonical"


def main() -> None:
    if not TRACES.is_dir():
        print(f"sim speed: skipped, {TRACES} not found")
        return
    hw, policies = discover([ROOT / "policies", ROOT / "hardware"])
    web = load_all(policies, hw).policies["web"].pool
    print("sim speed (powerpool on the web policy):")
    for name, hosts, target in (("nasa-http-1995", 40, 60.0), ("alibaba2018-dc", 1000, 120.0)):
        pool = with_hosts(web, hosts)
        trace = scale_trace(pool, read_trace(TRACES / f"{name}.csv"), hosts * 0.75)
        r = simulate(pool, trace)
        verdict = "ok" if r.wall_s < target else "MISS"
        print(
            f"  {name:16s} {hosts:5d} hosts {trace.duration / 86400:5.1f} days: "
            f"{r.wall_s:6.1f} s (target < {target:g} s) {verdict}"
        )


if __name__ == "__main__":
    main()
