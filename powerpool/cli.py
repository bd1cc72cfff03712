"""The `powerpool` command line: check files, explain plans.

Every command prints a table for people and `--json` for scripts. Bad input exits 2
with one line per problem (file, key, value, what was expected), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from powerpool.channels.command import host_cmd, outlet, pdu
from powerpool.cliutil import HARDWARE, JSON, friendly, load, out
from powerpool.lab.command import lab
from powerpool.model import Plan, Pool, fmt_duration
from powerpool.planner import plan as make_plan
from powerpool.planner.layout import always_on, settle, watts
from powerpool.service_cli import COMMANDS
from powerpool.sim.command import simulate
from powerpool.snapshot import check_hosts, read_snapshot


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="powerpool")
def main() -> None:
    """powerpool keeps a server pool just warm enough.

    It watches each pool's load and moves spare servers down a ladder of power states
    (active, freq_scaled, disk_standby, sleep, hibernate, off, unpowered) and back up
    before they are needed, always keeping N+1 warm capacity.

    \b
    Start here:
      powerpool check                      validate policies/ and hardware/
      powerpool plan --policy policies/web.toml --snapshot snap.json
                                           what would the planner do, and why
    """


@main.command()
@click.argument("files", nargs=-1, type=click.Path(path_type=Path))
@HARDWARE
@JSON
@friendly
def check(files: tuple[Path, ...], hardware: Path | None, as_json: bool) -> None:
    """Validate policy and hardware files (default: policies/ and hardware/).

    Checks each file's keys and values, and across files: unknown profiles, states a
    profile lacks, duplicate hosts/MACs/outlets, reserves no pool can satisfy, forced-off
    paths that rely on SSH alone, insecure SNMP and secrets written in clear. Exit 2 with
    one line per problem; on success, a summary per pool.
    """
    loaded = load(files, hardware)
    rows = [_summary(b.pool) for b in loaded.policies.values()]
    if as_json:
        out.print_json(json.dumps({"ok": True, "profiles": sorted(loaded.profiles), "pools": rows}))
        return
    out.print(f"[green]OK[/green]: {len(rows)} pool(s), {len(loaded.profiles)} hardware profile(s)")
    for r in rows:
        rest = ", ".join(f"{n} {s}" for s, n in r["parked_layout"].items())
        out.print(f"\n[bold]{r['pool']}[/bold]: {r['hosts']} hosts, capacity {r['capacity']:g}")
        out.print(f"  reserve   {r['reserve']}")
        out.print(f"  states    {', '.join(r['states'])}")
        out.print(f"  at rest   {rest} (at minimum load)")
        out.print(
            f"  power     {r['always_on_w']:.0f} W always-on -> {r['parked_w']:.0f} W parked "
            f"({r['saving_pct']:.0f}% less)"
        )


def _summary(pool: Pool) -> dict[str, Any]:
    layout = settle(pool)
    on, parked = always_on(pool), watts(pool, layout)
    reserve = f"min {pool.min_active} + warm {pool.warm}"
    reserve += "".join(f", {t.label}" for t in pool.tiers)
    return {
        "pool": pool.name,
        "hosts": len(pool.hosts),
        "capacity": round(sum(pool.profiles[h.profile].capacity for h in pool.hosts), 3),
        "reserve": reserve,
        "states": [s.value for s in sorted(pool.allowed, key=lambda s: s.depth)],
        "always_on_w": round(on, 1),
        "parked_w": round(parked, 1),
        "saving_pct": round(100 * (on - parked) / on, 1) if on else 0.0,
        "parked_layout": {
            s.value: n
            for s in sorted(pool.allowed, key=lambda s: s.depth)
            if (n := sum(1 for v in layout.values() if v is s))
        },
    }


@main.command()
@click.option(
    "--policy",
    "policy_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The pool's policy file.",
)
@click.option(
    "--snapshot",
    "snapshot_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="A recorded snapshot (JSON) of the pool's hosts and load.",
)
@HARDWARE
@JSON
@friendly
def plan(policy_path: Path, snapshot_path: Path, hardware: Path | None, as_json: bool) -> None:
    """Show what the planner would do now, with a reason for every action and veto.

    Nothing is sent to any host: this is a dry run of one planning step on a snapshot.

    \b
    Snapshot format (JSON):
      {"now": "2026-11-21T03:00:00Z",
       "load": {"value": 960, "observed_at": "2026-11-21T02:59:55Z"},
       "hosts": [{"name": "web01", "state": "active", "since": "...",
                  "health": "ok", "hold": null, "transition": null}]}
    Optional: "history": [[time, load], ...] and "recent": [{"host", "kind", "at"}].
    """
    loaded = load((policy_path,), hardware)
    (bundle,) = loaded.policies.values()
    snap = read_snapshot(snapshot_path)
    check_hosts(snap, {h.name for h in bundle.pool.hosts}, str(snapshot_path))
    result = make_plan(bundle.pool, snap)
    if as_json:
        out.print_json(json.dumps(plan_json(bundle.pool, result)))
    else:
        _print_plan(bundle.pool, result)


def plan_json(pool: Pool, p: Plan) -> dict[str, Any]:
    return {
        "pool": pool.name,
        "demand_hosts": round(p.demand, 4),
        "forecast_hosts": round(p.forecast, 4),
        "needed": p.needed,
        "tiers": [
            {
                "name": t.name,
                "within_s": t.within_s,
                "required": t.required,
                "available": t.available,
                "short": t.short,
            }
            for t in p.tiers
        ],
        "actions": [
            {"host": a.host, "from": a.src.value, "to": a.dst.value, "kind": a.kind.value, "reason": a.reason}
            for a in p.actions
        ],
        "vetoes": [
            {"host": v.host, "from": v.src.value, "to": v.dst.value, "rule": v.rule, "reason": v.reason}
            for v in p.vetoes
        ],
        "notes": list(p.notes),
    }


def _print_plan(pool: Pool, p: Plan) -> None:
    out.print(
        f"[bold]{pool.name}[/bold]: demand {p.demand:.2f} hosts "
        f"(forecast {p.forecast:.2f}), needed {p.needed}"
    )
    ladder = Table(title="reserve ladder (after this plan, wakes not yet verified)")
    for col in ("tier", "ready within", "required", "available", ""):
        ladder.add_column(col)
    for t in p.tiers:
        ok = "[red]SHORT[/red]" if t.short else "[green]ok[/green]"
        ladder.add_row(t.name, fmt_duration(t.within_s), f"{t.required:g}", f"{t.available:g}", ok)
    out.print(ladder)
    if p.actions:
        acts = Table(title=f"{len(p.actions)} action(s)")
        for col in ("host", "from", "to", "reason"):
            acts.add_column(col)
        for a in p.actions:
            acts.add_row(a.host, a.src.value, a.dst.value, a.reason)
        out.print(acts)
    else:
        out.print("no actions: the pool is where it should be")
    if p.vetoes:
        vt = Table(title=f"{len(p.vetoes)} veto(es): actions refused, and by which rule")
        for col in ("host", "wanted", "rule", "why"):
            vt.add_column(col)
        for v in p.vetoes:
            vt.add_row(v.host, f"{v.src.value} -> {v.dst.value}", v.rule, v.reason)
        out.print(vt)
    for n in p.notes:
        out.print(f"[yellow]note:[/yellow] {n}")


main.add_command(simulate)
for _command in COMMANDS:
    main.add_command(_command)
main.add_command(lab)

if __name__ == "__main__":  # pragma: no cover
    main()
main.add_command(pdu)
main.add_command(outlet)
main.add_command(host_cmd)
