"""Every canonical trace x every shipped policy: 40 hosts, peak 30 host-capacities.

Reads the traces from ../shared/traces/canonical (beside the repository); without them
it says so and skips. Prints, per run, powerpool against the optimum and each anchor,
and checks the targets: >= 85 % of the optimal saving on the web and daily-cycle traces
(nasa, alibaba), within 5 points of the optimum's saving on the flat ones, unserved
< 0.01 %, reserve short < 2 % of the time, energy identity within 0.5 %. Where an anchor
uses less energy, a leaner setting must beat it on energy at no more unserved demand.

Set POWERPOOL_BENCH_DAYS to cut each trace (a quick look); unset for the full traces.
"""

from __future__ import annotations

import os
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

from powerpool.config import discover, load_all
from powerpool.sim.report import (
    Report,
    optimum_of,
    run_report,
    scale_trace,
    sweep_peak_hold,
    timeline_energy_kwh,
    with_hosts,
    write_timeline,
)
from powerpool.sim.runner import Result, simulate
from powerpool.sim.trace import Trace, read_trace

ROOT = Path(__file__).resolve().parent.parent
TRACES = ROOT.parent / "shared" / "traces" / "canonical"
HOSTS, PEAK = 40, 30.0
SWINGING = ("nasa-http-1995", "alibaba2018-dc")


def _cut(trace: Trace, days: float | None) -> Trace:
    if not days:
        return trace
    n = max(2, int(days * 86400 / trace.step))
    return Trace(trace.name, trace.t[:n], trace.load[:n], trace.step, trace.notes)


LEANER = [120.0, 60.0, 0.0]  # peak_hold values tried when an anchor uses less energy
BUSIER = [0.9, 0.95]  # then, at peak_hold 0, target utilisations above the policy's


def _frontier(report: Report, anchor: str, busier: dict[float, Result]) -> str | None:
    """The first leaner setting that uses less energy than `anchor` at no more unserved
    demand, or None: first peak_hold (the sweep `powerpool simulate --sweep-peak-hold`
    runs), then, with peak_hold 0, a higher target_utilisation. An anchor that saves
    more by leaving demand unserved is beaten only by a setting that leaves no more."""
    if not report.sweep:
        sweep_peak_hold(report, LEANER)
    hold = report.leaner(anchor)
    if hold is not None:
        r = report.sweep[hold]
        return f"peak_hold {hold:g}s ({r.energy_kwh:.0f} kWh, unserved {r.unserved_fraction:.4%})"
    trace = report.trace
    for u in (u for u in BUSIER if u > report.pool.target_utilisation):
        pool = replace(report.pool, peak_hold_s=0.0, target_utilisation=u)
        if u not in busier:
            busier[u] = simulate(pool, trace)
        r = busier[u]
        if anchor in report.beaten(r):
            # A busier target is a smaller reserve, with an optimum of its own (lower).
            opt = optimum_of(pool, trace).energy_kwh
            return (
                f"--set forecast.peak_hold=0s --set target_utilisation={u:g} ({r.energy_kwh:.0f} kWh, "
                f"its own optimum {opt:.0f}; unserved {r.unserved_fraction:.4%})"
            )
    return None


def check(report: Report, tl: Path) -> tuple[list[str], list[str]]:
    """The targets this run misses, in words; and the anchors a leaner setting beats."""
    data = report.as_json()
    ours = data["results"]["powerpool"]
    misses: list[str] = []
    notes: list[str] = []
    busier: dict[float, Result] = {}
    share = report.share("powerpool")
    if report.trace.name in SWINGING and share < 0.85:
        misses.append(f"share {share:.1%} < 85%")
    on = data["results"]["always_on"]["energy_kwh"]
    opt_saving = (on - data["results"]["optimum"]["energy_kwh"]) / on
    our_saving = (on - ours["energy_kwh"]) / on
    if report.trace.name not in SWINGING and opt_saving - our_saving > 0.05:
        misses.append(f"saving {our_saving:.1%} more than 5 points below the optimum's {opt_saving:.1%}")
    if ours["unserved_fraction"] >= 1e-4:
        misses.append(f"unserved {ours['unserved_fraction']:.4%}")
    if ours["reserve_short_s"] >= 0.02 * report.trace.duration:
        misses.append(f"short {ours['reserve_short_s'] / report.trace.duration:.2%} of the time")
    for name, r in data["results"].items():
        if name not in ("powerpool", "optimum", "always_on") and r["energy_kwh"] <= ours["energy_kwh"]:
            leaner = _frontier(report, name, busier)
            if leaner is None:
                misses.append(f"{name} uses less energy, and no leaner setting beats it at its unserved")
            else:
                notes.append(
                    f"{name} uses less energy ({r['energy_kwh']:.0f} kWh, unserved "
                    f"{r['unserved_fraction']:.4%}); powerpool with {leaner} beats it on both"
                )
    for name, r in data["results"].items():
        if name != "optimum" and r["energy_kwh"] < data["results"]["optimum"]["energy_kwh"]:
            misses.append(f"{name} beats the optimum (it does not keep the reserve)")
    identity = abs(timeline_energy_kwh(tl, report.trace.duration) - ours["energy_kwh"]) / ours["energy_kwh"]
    if identity > 0.005:
        misses.append(f"timeline energy off by {identity:.2%}")
    return misses, notes


def main() -> None:
    if not TRACES.is_dir():
        print(f"sim traces: skipped, {TRACES} not found (the traces live beside the repository)")
        return
    days = float(os.environ.get("POWERPOOL_BENCH_DAYS", "0")) or None
    hw, policies = discover([ROOT / "policies", ROOT / "hardware"])
    loaded = load_all(policies, hw)
    print(
        f"sim traces: {HOSTS} hosts, peak {PEAK:g} host-capacities"
        + (f", first {days:g} days" if days else "")
    )
    failures = 0
    for bundle in loaded.policies.values():
        pool = with_hosts(bundle.pool, HOSTS)
        for path in sorted(TRACES.glob("*.csv")):
            trace = _cut(scale_trace(pool, read_trace(path), PEAK), days)
            report = run_report(pool, trace, peak_hosts=PEAK, timeline=True)
            with tempfile.TemporaryDirectory() as tmp:
                tl = Path(tmp) / "t.csv"
                write_timeline(report.results["powerpool"], tl)
                misses, notes = check(report, tl)
            data = report.as_json()["results"]
            ours = data["powerpool"]
            anchors = "  ".join(
                f"{k} {data[k]['energy_kwh']:.0f}" for k in ("slurm", "dpm", "ovirt", "watcher")
            )
            print(
                f"  {pool.name:6s} {trace.name:24s} share {report.share('powerpool'):6.1%}  "
                f"kWh {ours['energy_kwh']:.0f} (opt {data['optimum']['energy_kwh']:.0f}, "
                f"on {data['always_on']['energy_kwh']:.0f}; {anchors})  "
                f"unserved {ours['unserved_fraction']:.4%}  "
                f"short {ours['reserve_short_s'] / trace.duration:.2%}  "
                f"wall {report.results['powerpool'].wall_s:.1f}s"
            )
            for m in misses:
                print(f"      MISS: {m}")
            for n in notes:
                print(f"      {n}")
            failures += bool(misses)
    print(f"  {failures} run(s) missing a target")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
