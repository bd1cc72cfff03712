"""`powerpool plan`: what the planner would do and why, on a recorded snapshot (offline)
or on the pools as they are now (live, from the running service or the journal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click
from rich.table import Table

from powerpool.api import ApiClient, plan_view
from powerpool.cliutil import JSON, friendly, load, out
from powerpool.model import fmt_duration
from powerpool.planner import plan as make_plan
from powerpool.planner.explain import plan_json
from powerpool.service import Service
from powerpool.service_cli import FILES, _act
from powerpool.snapshot import check_hosts, read_snapshot


@click.command()
@click.argument("pool", required=False)
@click.option("--policy", "policy_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Offline: the pool's policy file (with --snapshot).")  # fmt: skip
@click.option("--snapshot", "snapshot_path", type=click.Path(path_type=Path, dir_okay=False),
              help="Offline: a recorded snapshot (JSON) of the pool's hosts and load.")  # fmt: skip
@FILES
@JSON
@friendly
def plan(
    pool: str | None, policy_path: Path | None, snapshot_path: Path | None, policies: Path,
    hardware: Path | None, state_dir: Path, as_json: bool,
) -> None:  # fmt: skip
    """Show what the planner would do, with a reason for every action and veto.

    Live (no --snapshot): the plan of the running service's last tick, or, when no
    service runs, one planning step on the journal's record and a fresh load reading.
    Offline (--policy and --snapshot): one planning step on a recorded snapshot. Nothing
    is sent to any host either way.

    \b
    Examples:
      powerpool plan web                   the live plan of pool web
      powerpool plan --policy policies/web.toml --snapshot snap.json

    \b
    Snapshot format (JSON):
      {"now": "2026-11-21T03:00:00Z",
       "load": {"value": 960, "observed_at": "2026-11-21T02:59:55Z"},
       "hosts": [{"name": "web01", "state": "active", "since": "...",
                  "health": "ok", "hold": null, "transition": null}]}
    Optional: "history": [[time, load], ...] and "recent": [{"host", "kind", "at"}].
    """
    if snapshot_path is not None or policy_path is not None:
        if snapshot_path is None or policy_path is None:
            raise click.UsageError("an offline plan needs both --policy and --snapshot")
        views = [_offline(policy_path, snapshot_path, hardware)]
    else:
        views = _live(pool, policies, hardware, state_dir)
    if as_json:
        out.print_json(json.dumps(views[0] if pool or snapshot_path else {"pools": views}))
        return
    for v in views:
        print_plan(v)


def _offline(policy_path: Path, snapshot_path: Path, hardware: Path | None) -> dict[str, Any]:
    loaded = load((policy_path,), hardware)
    (bundle,) = loaded.policies.values()
    snap = read_snapshot(snapshot_path)
    check_hosts(snap, {h.name for h in bundle.pool.hosts}, str(snapshot_path))
    return plan_json(bundle.pool.name, make_plan(bundle.pool, snap))


def _live(pool: str | None, policies: Path, hardware: Path | None, state_dir: Path) -> list[dict[str, Any]]:
    def remote(c: ApiClient) -> Any:
        return c.call("GET", "/v1/plan")

    async def direct(svc: Service) -> Any:
        return plan_view(svc)  # _act planned each pool on a fresh load reading

    views: dict[str, Any] = _act(state_dir, policies, hardware, remote, direct)
    if pool is not None and pool not in views:
        raise click.UsageError(f"no pool {pool!r}; pools: {', '.join(sorted(views)) or 'none'}")
    return [v for name, v in views.items() if v is not None and pool in (None, name)]


def print_plan(p: dict[str, Any]) -> None:
    out.print(
        f"[bold]{p['pool']}[/bold]: demand {p['demand_hosts']:.2f} hosts "
        f"(forecast {p['forecast_hosts']:.2f}), needed {p['needed']}"
    )
    ladder = Table(title="reserve ladder (after this plan, wakes not yet verified)")
    for col in ("tier", "ready within", "required", "available", ""):
        ladder.add_column(col)
    for t in p["tiers"]:
        ok = "[red]SHORT[/red]" if t["short"] else "[green]ok[/green]"
        need, have = f"{t['required']:g}", f"{t['available']:g}"
        ladder.add_row(t["name"], fmt_duration(t["within_s"]), need, have, ok)
    out.print(ladder)
    if p["actions"]:
        acts = Table(title=f"{len(p['actions'])} action(s)")
        for col in ("host", "from", "to", "reason"):
            acts.add_column(col)
        for a in p["actions"]:
            acts.add_row(a["host"], a["from"], a["to"], a["reason"])
        out.print(acts)
    else:
        out.print("no actions: the pool is where it should be")
    if p["vetoes"]:
        vt = Table(title=f"{len(p['vetoes'])} veto(es): actions refused, and by which rule")
        for col in ("host", "wanted", "rule", "why"):
            vt.add_column(col)
        for v in p["vetoes"]:
            vt.add_row(v["host"], f"{v['from']} -> {v['to']}", v["rule"], v["reason"])
        out.print(vt)
    for n in p["notes"]:
        out.print(f"[yellow]note:[/yellow] {n}")
