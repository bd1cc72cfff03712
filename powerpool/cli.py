"""The `powerpool` command line: check files, explain plans.

Every command prints a table for people and `--json` for scripts. Bad input exits 2
with one line per problem (file, key, value, what was expected), never a traceback.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from powerpool.channels.command import host_cmd, outlet, pdu
from powerpool.cliutil import HARDWARE, JSON, friendly, load, out
from powerpool.lab.command import lab
from powerpool.model import Pool
from powerpool.plan_cli import plan
from powerpool.planner.layout import always_on, settle, watts
from powerpool.service_cli import COMMANDS
from powerpool.sim.command import simulate


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


main.add_command(simulate)
main.add_command(plan)
for _command in COMMANDS:
    main.add_command(_command)
main.add_command(lab)
main.add_command(pdu)
main.add_command(outlet)
main.add_command(host_cmd)

if __name__ == "__main__":  # pragma: no cover
    main()
