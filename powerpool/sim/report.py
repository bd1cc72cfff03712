"""Run a policy, the optimum and the anchors over one trace, and report them alike."""

from __future__ import annotations

import csv
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from powerpool.model import Host, Pool, PowerState, fmt_duration
from powerpool.planner import plan
from powerpool.sim.baselines import baselines
from powerpool.sim.fleet import COLUMNS
from powerpool.sim.oracle import Optimum, layered_optimum
from powerpool.sim.runner import Result, moves, per_host_day, simulate, timeline_header
from powerpool.sim.trace import Trace

ORDER = ["powerpool", "optimum", "always_on", "slurm", "dpm", "ovirt", "watcher"]


@dataclass
class Report:
    pool: Pool
    trace: Trace
    peak_hosts: float | None
    results: dict[str, Result]
    optimum: Optimum
    profile_file: str = ""
    wall_s: float = 0.0
    notes: list[str] = field(default_factory=list)
    sweep: dict[float, Result] = field(default_factory=dict)  # powerpool's run per peak_hold

    def share(self, name: str) -> float:
        """(always_on - E) / (always_on - optimum): the share of the achievable saving."""
        return self.share_of(self.results[name])

    def share_of(self, r: Result) -> float:
        on = self.results["always_on"].energy_kwh
        gap = on - self.optimum.energy_kwh
        return (on - r.energy_kwh) / gap if gap > 0 else 1.0

    def beaten(self, r: Result) -> list[str]:
        """The anchors `r` beats on both counts: less energy at no more unserved demand."""
        return [
            name
            for name, a in self.results.items()
            if name not in ("powerpool", "always_on")
            and r.energy_kwh < a.energy_kwh
            and r.unserved_fraction <= a.unserved_fraction
        ]

    def leaner(self, anchor: str) -> float | None:
        """The first swept peak_hold whose run beats `anchor` on both counts, or None."""
        return next((h for h, r in self.sweep.items() if anchor in self.beaten(r)), None)

    def as_json(self) -> dict[str, Any]:
        prof = self.pool.profiles[self.pool.hosts[0].profile]
        out: dict[str, Any] = {
            "pool": {
                "name": self.pool.name,
                "hosts": len(self.pool.hosts),
                "profile": prof.name,
                "profile_file": self.profile_file or prof.source,
                "target_utilisation": self.pool.target_utilisation,
                "reserve": {
                    "min_active": self.pool.min_active,
                    "warm": self.pool.warm,
                    "tiers": [
                        {"within_s": t.within_s, "hosts": t.hosts, "percent": t.percent}
                        for t in self.pool.tiers
                    ],
                },
                "allowed_states": [s.value for s in sorted(self.pool.allowed, key=lambda s: s.depth)],
                "peak_hosts": self.peak_hosts,
                "trace": self.trace.name,
                "duration_s": self.trace.duration,
            },
            "results": {},
            "share_of_optimal_saving": round(self.share("powerpool"), 4),
            "shares": {k: round(self.share(k), 4) for k in self.results},
            "wall_s": round(self.wall_s, 2),
            "notes": self.notes + list(self.trace.notes) + list(self.optimum.notes),
        }
        if self.sweep:
            out["peak_hold_sweep"] = [
                {"peak_hold_s": h, "share_of_optimal_saving": round(self.share_of(r), 4)}
                | r.as_json()
                | {"beats": self.beaten(r)}
                for h, r in self.sweep.items()
            ]
        for name in ORDER:
            if name == "optimum":
                out["results"]["optimum"] = {
                    "energy_kwh": round(self.optimum.energy_kwh, 4),
                    "gap_kwh": round(self.optimum.gap_kwh, 4),  # 0: exact, else a bound
                    "unserved_s": 0.0,
                    "unserved_fraction": 0.0,
                    "reserve_short_s": 0.0,
                    "transitions": dict(sorted(self.optimum.transitions.items())),
                    "moves_per_host_day": round(
                        per_host_day(
                            moves(self.optimum.transitions), len(self.pool.hosts), self.trace.duration
                        ),
                        3,
                    ),
                }
            elif name in self.results:
                r = self.results[name]
                out["results"][name] = r.as_json() | {"wall_s": round(r.wall_s, 2)}
        return out


def with_hosts(pool: Pool, n: int) -> Pool:
    """The policy with its host list replaced by n hosts of its hardware profile (for a
    mixed pool: the one carrying most of its capacity), spread over its failure domains."""
    share: dict[str, float] = {}
    for h in pool.hosts:
        share[h.profile] = share.get(h.profile, 0.0) + pool.profiles[h.profile].capacity
    main = max(sorted(share), key=lambda name: share[name])
    base = next(h for h in pool.hosts if h.profile == main)
    domains = sorted({h.domains for h in pool.hosts}) or [()]
    hosts = tuple(
        Host(
            name=f"sim{i:04d}",
            address=f"sim{i:04d}",
            mac=f"02:00:{i >> 24 & 255:02x}:{i >> 16 & 255:02x}:{i >> 8 & 255:02x}:{i & 255:02x}",
            profile=base.profile,
            domains=domains[i % len(domains)],
            channels=base.channels,
        )
        for i in range(n)
    )
    return replace(pool, hosts=hosts, profiles={base.profile: pool.profiles[base.profile]})


def scale_trace(pool: Pool, trace: Trace, peak_hosts: float | None) -> Trace:
    """To the pool's load unit: peak = peak_hosts host-capacities, else unchanged."""
    if peak_hosts is None:
        return trace
    top = max(trace.load) or 1.0
    return trace.scaled(peak_hosts * pool.capacity_per_host / top)


def optimum_of(pool: Pool, trace: Trace) -> Optimum:
    """The offline optimum of `pool` on `trace` (in the pool's load unit)."""
    scale = 1.0 / pool.capacity_per_host
    return layered_optimum(pool, trace.t, [v * scale for v in trace.load], trace.t[-1] + trace.step)


def run_report(
    pool: Pool,
    trace: Trace,
    *,
    peak_hosts: float | None = None,
    anchors: bool = True,
    timeline: bool = False,
    progress: Callable[[str, float], None] | None = None,
) -> Report:
    """Simulate powerpool (and the anchors), compute the optimum; trace in load units."""
    wall = time.perf_counter()
    optimum = optimum_of(pool, trace)
    anchor_runs = baselines()
    runs: dict[str, object] = {"powerpool": plan}
    runs.update(anchor_runs if anchors else {"always_on": anchor_runs["always_on"]})
    results: dict[str, Result] = {}
    for name, planner in runs.items():
        tick = (lambda f, n=name: progress(n, f)) if progress else None
        results[name] = simulate(
            pool,
            trace,
            planner,  # type: ignore[arg-type]
            name=name,
            timeline=timeline and name == "powerpool",
            progress=tick,
        )
    return Report(pool, trace, peak_hosts, results, optimum, wall_s=time.perf_counter() - wall)


def sweep_peak_hold(
    report: Report, holds: list[float], progress: Callable[[str, float], None] | None = None
) -> None:
    """Run powerpool again at each peak_hold (the safety-vs-saving knob) on the report's
    trace, so an operator sees the trade on their own load before choosing. The policy's
    own value is the run the report already holds."""
    for hold in holds:
        if hold == report.pool.peak_hold_s and "powerpool" in report.results:
            report.sweep[hold] = report.results["powerpool"]
            continue
        label = f"hold {fmt_duration(hold)}"
        tick = (lambda f, n=label: progress(n, f)) if progress else None
        report.sweep[hold] = simulate(replace(report.pool, peak_hold_s=hold), report.trace, progress=tick)


def write_timeline(result: Result, path: Path) -> None:
    """CSV: one row per change; each row holds until the next. t_s from the trace start."""
    rows = result.timeline or []
    t0 = rows[0][0] if rows else 0.0
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(timeline_header())
        for row in rows:
            w.writerow([f"{row[0] - t0:g}", f"{row[1]:.6g}", *(int(x) for x in row[2:-1]), f"{row[-1]:.3f}"])


def timeline_energy_kwh(path: Path, end_s: float) -> float:
    """Recompute energy from a timeline CSV: sum of power_w x interval."""
    with path.open() as f:
        rows = list(csv.DictReader(f))
    total = 0.0
    for a, b in zip(rows, [*rows[1:], None], strict=True):
        t1 = float(b["t_s"]) if b else end_s
        total += float(a["power_w"]) * (t1 - float(a["t_s"]))
    return total / 3.6e6


def write_plot(report: Report, path: Path) -> None:
    """PNG: demand, warm capacity and pool power over time (powerpool's run)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:  # pragma: no cover - depends on the install
        raise RuntimeError("--plot needs matplotlib: pip install 'powerpool[plot]'") from e
    rows = report.results["powerpool"].timeline or []
    t0 = rows[0][0]
    hours = [(r[0] - t0) / 3600 for r in rows]
    demand = [r[1] for r in rows]
    i_a, i_f = 2 + COLUMNS.index(PowerState.ACTIVE.value), 2 + COLUMNS.index(PowerState.FREQ_SCALED.value)
    warm = [r[i_a] + r[i_f] for r in rows]
    power = [r[-1] / 1000 for r in rows]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 6), sharex=True)
    top.step(hours, warm, where="post", label="warm hosts", color="tab:orange")
    top.step(hours, demand, where="post", label="demand (host-capacities)", color="tab:blue")
    top.set_ylabel("hosts")
    top.legend(loc="upper right")
    top.set_title(f"{report.pool.name} on {report.trace.name}: {len(report.pool.hosts)} hosts")
    bottom.step(hours, power, where="post", color="tab:green", label="powerpool")
    on = report.results["always_on"].energy_kwh / (report.trace.duration / 3600)
    bottom.axhline(on, color="grey", linestyle="--", label="always-on (mean)")
    bottom.set_ylabel("pool power (kW)")
    bottom.set_xlabel("hours")
    bottom.legend(loc="upper right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
