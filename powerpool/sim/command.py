"""`powerpool simulate`: replay recorded load through the planner, against the optimum
and the anchor systems' policies, before letting it touch a server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from powerpool.cliutil import HARDWARE, err, friendly, load, out
from powerpool.config.load import parse_override
from powerpool.config.types import parse_duration
from powerpool.errors import NO_VALUE, ConfigError, Problem
from powerpool.model import fmt_duration
from powerpool.sim.report import (
    ORDER,
    Report,
    run_report,
    scale_trace,
    sweep_peak_hold,
    with_hosts,
    write_plot,
    write_timeline,
)
from powerpool.sim.trace import read_trace

FILE = click.Path(path_type=Path, dir_okay=False)


class Durations(click.ParamType):  # type: ignore[type-arg]
    """A comma-separated list of durations: "0,2m,5m,10m"."""

    name = "DURATIONS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> list[float]:
        if isinstance(value, list):
            return value
        out = []
        for part in str(value).split(","):
            text = part.strip()
            try:
                out.append(parse_duration(float(text) if text.replace(".", "", 1).isdigit() else text))
            except ValueError:
                self.fail(f"{text!r} is not a duration like 90s, 10m or 2h", param, ctx)
        return sorted(set(out))


class Override(click.ParamType):  # type: ignore[type-arg]
    """KEY=VALUE: a policy key, dotted as in the file, and its value."""

    name = "KEY=VALUE"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[str, Any]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_override(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


@click.command()
@click.option("--policy", "policy_path", required=True, type=FILE, help="The pool's policy file.")
@click.option("--trace", "trace_path", required=True, type=FILE, help="Load trace: CSV or Prometheus JSON.")
@click.option(
    "--hosts", type=click.IntRange(1, 100_000), help="Replace the policy's hosts with N of its profile."
)
@click.option(
    "--peak-hosts",
    type=click.FloatRange(min=0, min_open=True),
    help="Scale the load so its peak is X host-capacities.",
)
@click.option("--column", help="Value column of a CSV with a timestamp column.")
@click.option("--json", "json_out", type=FILE, help="Write the full report as JSON to this file.")
@click.option("--timeline", "timeline_out", type=FILE, help="Write powerpool's timeline CSV to this file.")
@click.option("--plot", "plot_out", type=FILE, help="Write a PNG of demand, warm capacity and power.")
@click.option("--no-anchors", is_flag=True, help="Skip the anchor systems (faster).")
@click.option(
    "--sweep-peak-hold",
    "sweep",
    type=Durations(),
    help="Also run powerpool at each of these peak_hold values (e.g. 0,2m,5m,10m,20m) and "
    "print the safety-vs-saving trade on this load.",
)
@click.option(
    "--set",
    "overrides",
    type=Override(),
    multiple=True,
    help="Run with a policy key changed, checked as if it were in the file (repeatable): "
    "--set target_utilisation=0.9 --set forecast.peak_hold=0s",
)
@HARDWARE
@friendly
def simulate(
    policy_path: Path,
    trace_path: Path,
    hosts: int | None,
    peak_hosts: float | None,
    column: str | None,
    json_out: Path | None,
    timeline_out: Path | None,
    plot_out: Path | None,
    no_anchors: bool,
    sweep: list[float] | None,
    overrides: tuple[tuple[str, Any], ...],
    hardware: Path | None,
) -> None:
    """Replay a load trace through the planner and compare it with the optimum and the
    anchors (Slurm, VMware DPM, oVirt, OpenStack Watcher, always-on).

    The same planner and reconcile tick as the live service run against a simulated
    fleet that takes exactly its hardware profile's time for every transition.

    \b
    Traces: the canonical CSV (t_s,load), a CSV with an ISO `timestamp` column (pick the
    value with --column), or a Prometheus range-query JSON export.
    \b
    peak_hold is the policy's safety-vs-saving knob: --sweep-peak-hold walks it on this
    load and shows, per value, energy, unserved demand, reserve shortfall and which
    anchors it beats on both energy and unserved demand.
    \b
    Example:
      powerpool simulate --policy policies/web.toml --trace nasa.csv \\
          --hosts 40 --peak-hosts 30 --json report.json --plot report.png
      powerpool simulate --policy policies/web.toml --trace my-load.csv \\
          --peak-hosts 10 --sweep-peak-hold 0,2m,5m,10m,20m
      powerpool simulate --policy policies/batch.toml --trace my-load.csv \\
          --peak-hosts 10 --set forecast.peak_hold=0s --set target_utilisation=0.9
    """
    loaded = load((policy_path,), hardware, dict(overrides))
    (bundle,) = loaded.policies.values()
    pool = with_hosts(bundle.pool, hosts) if hosts else bundle.pool
    trace = scale_trace(pool, read_trace(trace_path, column), peak_hosts)
    if peak_hosts is None and max(trace.load) / pool.capacity_per_host > len(pool.hosts):
        err.print(
            f"[yellow]note:[/yellow] the trace's peak needs {max(trace.load) / pool.capacity_per_host:.0f} "
            f"host-capacities but the pool has {len(pool.hosts)} hosts; use --peak-hosts to scale it"
        )
    for note in trace.notes:
        err.print(f"[yellow]note:[/yellow] {trace_path.name}: {note}")
    with Progress(
        TextColumn("{task.description:>10}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as bar:
        tasks: dict[str, object] = {}

        def progress(name: str, done: float) -> None:
            if name not in tasks:
                tasks[name] = bar.add_task(name, total=1.0)
            bar.update(tasks[name], completed=done)  # type: ignore[arg-type]

        report = run_report(
            pool,
            trace,
            peak_hosts=peak_hosts,
            anchors=not no_anchors,
            timeline=bool(timeline_out or plot_out),
            progress=progress,
        )
        if sweep:
            sweep_peak_hold(report, sweep, progress)
    report.profile_file = pool.profiles[pool.hosts[0].profile].source
    _table(report)
    if report.sweep:
        _sweep_table(report)
    if json_out:
        json_out.write_text(json.dumps(report.as_json(), indent=2) + "\n")
    if timeline_out:
        write_timeline(report.results["powerpool"], timeline_out)
    if plot_out:
        try:
            write_plot(report, plot_out)
        except RuntimeError as e:
            raise ConfigError([Problem(str(plot_out), "", NO_VALUE, str(e))]) from None


def _table(report: Report) -> None:
    data = report.as_json()["results"]
    on = data["always_on"]["energy_kwh"]
    days = report.trace.duration / 86400
    t = Table(
        title=f"{report.pool.name}: {len(report.pool.hosts)} hosts, {report.trace.name}, {days:.1f} days",
        box=box.SIMPLE_HEAD,
    )
    t.add_column("policy", no_wrap=True)
    for col in ("kWh", "saved", "of opt.", "unserved", "uns. s", "short s", "moves"):
        t.add_column(col, justify="right", no_wrap=True)
    for name in ORDER:
        if name not in data:
            continue
        r = data[name]
        t.add_row(
            name,
            f"{r['energy_kwh']:.1f}",
            f"{(on - r['energy_kwh']) / on:.1%}" if on else "-",
            f"{report.share(name):.1%}" if name in report.results else "100%",
            f"{r['unserved_fraction']:.4%}",
            f"{r['unserved_s']:.0f}",
            f"{r['reserve_short_s']:.0f}",
            f"{r['moves_per_host_day']:.1f}",
        )
    out.print(t)
    out.print(
        "saved: vs always-on; of opt.: share of the optimum's saving; unserved: share of "
        "demand, and seconds with any; short: seconds the warm reserve (needed + warm tier) "
        f"was short; moves: sleeps and wakes per host per day. Wall time {report.wall_s:.1f} s."
    )


def _sweep_table(report: Report) -> None:
    t = Table(title="the safety-vs-saving knob on this load", box=box.SIMPLE_HEAD)
    t.add_column("peak_hold", no_wrap=True)
    for col in ("kWh", "of opt.", "unserved", "short", "moves"):
        t.add_column(col, justify="right", no_wrap=True)
    t.add_column("beats")
    for hold, r in report.sweep.items():
        mark = " (policy)" if hold == report.pool.peak_hold_s else ""
        t.add_row(
            fmt_duration(hold) + mark,
            f"{r.energy_kwh:.1f}",
            f"{report.share_of(r):.1%}",
            f"{r.unserved_fraction:.4%}",
            f"{r.reserve_short_s / report.trace.duration:.2%}",
            f"{r.moves_per_host_day:.1f}",
            ", ".join(report.beaten(r)) or "-",
        )
    out.print(t)
    out.print(
        "Longer peak_hold: fewer shortfalls and less unserved demand, more energy. short: "
        "share of the time the warm reserve was short; beats: anchors this setting beats on "
        "energy at no more unserved demand."
    )
