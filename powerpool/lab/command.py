"""`powerpool lab`: the real controller (the code `powerpool run` runs) against an
emulated rack on loopback, replaying a load trace on a faster clock.

It ends with a summary: energy against always-on, transitions, the reserve kept, and the
lab's own records (SSH commands the hosts executed, magic packets they received, SNMP
SETs the PDUs accepted) checked against the journal. Exit 1 when they disagree.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from powerpool.cliutil import JSON, err, friendly, load, out
from powerpool.lab.rack import LabRack
from powerpool.planner.layout import always_on
from powerpool.service import JOURNAL_FILE, Service
from powerpool.service_cli import serve, setup_logging
from powerpool.sim.trace import Trace, read_trace

REPO = Path(__file__).resolve().parent.parent.parent
DEFAULT_TRACE = REPO / "docs" / "examples" / "lab-trace.csv"


@click.command()
@click.option("--hosts", type=click.IntRange(2, 500), default=8, show_default=True, help="Emulated hosts.")
@click.option("--pdus", type=click.IntRange(1, 50), default=2, show_default=True, help="Emulated PDUs.")
@click.option(
    "--trace",
    "trace_path",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    default=DEFAULT_TRACE,
    show_default="docs/examples/lab-trace.csv",
    help="Load trace to replay.",
)
@click.option(
    "--speed",
    type=click.FloatRange(1, 3600),
    default=240.0,
    show_default=True,
    help="Lab seconds per real second: latencies and policy durations are divided by it.",
)
@click.option(
    "--duration",
    type=click.FloatRange(5, 86400),
    default=60.0,
    show_default=True,
    help="Real seconds to run.",
)
@click.option(
    "--dir",
    "lab_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Keep the lab's files (policy, keys, journal) here (default: a temporary folder).",
)
@JSON
@friendly
def lab(hosts: int, pdus: int, trace_path: Path, speed: float, duration: float, lab_dir: Path | None,
        as_json: bool) -> None:  # fmt: skip
    """Run the controller against an emulated rack on loopback.

    Starts an SNMP agent for the PDUs (snmpsim, SNMPv3), an SSH server per host (pinned
    host keys, sudo-restricted power commands) and a Wake-on-LAN listener; writes a lab
    policy; runs the real controller; shows a live table; prints a summary.

    \b
    Example:
      powerpool lab --hosts 8 --pdus 2 --speed 240 --duration 60
    """
    setup_logging("text", 30)
    trace = read_trace(trace_path)
    with tempfile.TemporaryDirectory(prefix="powerpool-lab-") as tmp:
        root = lab_dir or Path(tmp)
        with LabRack(root, REPO / "hardware", hosts, pdus, speed) as rack:
            summary = _run(rack, trace, speed, duration, as_json)
    if as_json:
        out.print_json(json.dumps(summary))
    else:
        _print(summary)
    if not summary["agree"]:
        err.print("[red]the lab's records and the journal disagree[/red]")
        sys.exit(1)


def _run(rack: LabRack, trace: Trace, speed: float, duration: float, quiet: bool) -> dict[str, Any]:
    loaded = load((rack.dir["policies"],), rack.root / "hardware")
    pool = loaded.policies["lab"].pool
    peak = max(trace.load) or 1.0
    factor = 0.7 * len(pool.hosts) * pool.capacity_per_host / peak  # the trace's peak: 70 % of the rack
    svc = Service(loaded, rack.dir["state"], REPO / "hardware" / "pdus", poll_s=0.1)
    samples: list[tuple[float, float, float, float, int]] = []  # (t, load, W, always-on W, floor short)

    def load_at(t: float) -> float:
        t = trace.t[0] + t % trace.duration
        i = max(0, bisect.bisect_right(trace.t, t) - 1)
        return trace.load[i] * factor

    start = time.monotonic()
    rack.set_load(load_at(0.0))

    async def replay(live: Live | None) -> None:
        shown = 0.0
        while True:
            now = time.monotonic() - start
            value = load_at(now * speed)
            rack.set_load(value)
            rt = svc.pools.get("lab")
            if rt is not None and rt.controller.last_plan is not None:
                gauge = svc.metrics.pool_watts("lab")
                short = int(rt.controller.last_plan.tiers[0].short)  # the warm floor (needed + warm)
                samples.append((now, value, gauge, always_on(pool, value), short))
                if live is not None and now - shown > 0.5:
                    live.update(_table(svc, now, duration))
                    shown = now
            await asyncio.sleep(0.05)

    async def main() -> None:
        live = None if quiet or not err.is_terminal else Live(console=err, auto_refresh=False)
        task = asyncio.ensure_future(replay(live))
        try:
            if live is not None:
                live.start()
            await serve(svc, until=lambda: time.monotonic() - start > duration)
        finally:
            task.cancel()
            if live is not None:
                live.stop()

    asyncio.run(main())
    return _summary(rack, samples, speed)


def _table(svc: Service, now: float, duration: float) -> Table:
    rt = svc.pools["lab"]
    t = Table(title=f"powerpool lab  {now:4.0f}/{duration:.0f} s  load {rt.journal.load or 0:.0f}",
              title_justify="left")  # fmt: skip
    t.add_column("host")
    t.add_column("state")
    t.add_column("health")
    for name, o in rt.journal.observations().items():
        moving = f" -> {o.transition.to}" if o.transition else ""
        t.add_row(name, o.state.value + moving, o.health.value)
    return t


def _summary(
    rack: LabRack, samples: list[tuple[float, float, float, float, int]], speed: float
) -> dict[str, Any]:
    from powerpool.journal.store import Store

    store = Store(rack.dir["state"] / JOURNAL_FILE)
    rows = store.db.execute("SELECT src, dst, reached, detail FROM intents WHERE pool = 'lab'").fetchall()
    store.close()
    used, base = 0.0, 0.0
    for (t0, _, w, a, _), (t1, *_) in itertools.pairwise(samples):
        used += w * (t1 - t0)
        base += a * (t1 - t0)
    parked = ("sleep", "off", "unpowered")
    ok = [(s, d, r, detail or "") for s, d, r, detail in rows if r is not None]
    j = {
        "sleep_intents": sum(1 for _, d, _, _ in rows if d == "sleep"),
        "off_intents": sum(1 for _, d, _, _ in rows if d in ("off", "unpowered")),
        "woken_by_wol": sum(1 for s, d, _, x in ok if s in parked and x.startswith("wol:")),
        "woken_by_pdu": sum(1 for s, d, _, x in ok if s in parked and x.startswith("pdu:")),
        "cut_by_pdu": sum(1 for _, d, r, _ in ok if r == "unpowered"),
        "failed": sum(1 for r in rows if r[2] is None),
    }
    lab = rack.records()
    checks = {
        "ssh suspends = sleep intents": (lab["ssh_suspend"], j["sleep_intents"]),
        "ssh poweroffs = off/unpowered intents": (lab["ssh_poweroff"], j["off_intents"]),
        "hosts woken by a packet = wakes verified via wol": (lab["hosts_woken_by_packet"], j["woken_by_wol"]),
        "outlets switched on = wakes verified via pdu": (lab["snmp_set_on"], j["woken_by_pdu"]),
        "outlets switched off >= hosts cut": (lab["snmp_set_off"], j["cut_by_pdu"]),
    }
    agree = all(a >= b if ">=" in k else a == b for k, (a, b) in checks.items())
    seconds = samples[-1][0] - samples[0][0] if len(samples) > 1 else 0.0
    short = sum(
        t1 - t0 for (t0, *_, was_short), (t1, *_) in itertools.pairwise(samples) if was_short
    )  # fmt: skip
    return {
        "lab_seconds": seconds * speed,
        "real_seconds": seconds,
        "energy_kwh": used * speed / 3.6e6,
        "always_on_kwh": base * speed / 3.6e6,
        "saving": (1 - used / base) if base else 0.0,
        "journal": j,
        "lab": lab,
        "checks": {k: {"lab": a, "journal": b} for k, (a, b) in checks.items()},
        "warm_floor_short_s": short,
        "agree": agree,
    }


def _print(s: dict[str, Any]) -> None:
    real = s["real_seconds"]
    out.print(f"[bold]lab summary[/bold]: {s['lab_seconds'] / 3600:.1f} h of trace in {real:.0f} s")
    out.print(f"  energy {s['energy_kwh']:.2f} kWh vs always-on {s['always_on_kwh']:.2f} kWh: "
              f"{s['saving']:.0%} saved")  # fmt: skip
    j = s["journal"]
    out.print(f"  transitions: {j['sleep_intents']} to sleep, {j['off_intents']} to off/unpowered, "
              f"{j['woken_by_wol']} woken by WOL, {j['woken_by_pdu']} by PDU power, "
              f"{j['failed']} failed")  # fmt: skip
    out.print(f"  warm reserve (needed + warm) kept for {real - s['warm_floor_short_s']:.1f} of {real:.1f} s")
    t = Table("evidence", "lab's record", "journal", "agree")
    for k, v in s["checks"].items():
        agree = v["lab"] >= v["journal"] if ">=" in k else v["lab"] == v["journal"]
        t.add_row(k, str(v["lab"]), str(v["journal"]), "yes" if agree else "[red]NO[/red]")
    out.print(t)
    lab = s["lab"]
    sets = lab["snmp_set_on"] + lab["snmp_set_off"] + lab["snmp_set_cycle"]
    out.print(f"  SSH commands executed: {lab['ssh_commands']}, magic packets received: "
              f"{lab['magic_packets']}, SNMP SETs accepted: {sets}")  # fmt: skip
