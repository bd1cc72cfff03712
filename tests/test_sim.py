"""The simulator: accounting identities, trace formats, injected faults, the command."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from powerpool.cli import main
from powerpool.errors import ConfigError
from powerpool.planner.ladder import needed
from powerpool.sim.baselines import DPM, OVirt, Slurm, Watcher, always_on
from powerpool.sim.fleet import COLUMNS, Faults
from powerpool.sim.oracle import layered_optimum
from powerpool.sim.report import timeline_energy_kwh, write_timeline
from powerpool.sim.runner import Result, simulate
from powerpool.sim.trace import Trace, read_trace
from tests.conftest import REPO, S, make_pool


def wave(days: float = 1.0, step: float = 60.0, peak: float = 8.0, seed: int = 3) -> Trace:
    rnd = random.Random(seed)
    t = [i * step for i in range(int(days * 86400 / step))]
    load = [
        100.0 * max(0.3, peak * (0.55 - 0.45 * math.cos(2 * math.pi * x / 86400)) * rnd.uniform(0.9, 1.1))
        for x in t
    ]
    return Trace("wave", t, load, step)


POOL = dict(min_active=1, peak_hold_s=300.0, idle_before_sleep_s=120.0, min_uptime_s=300.0)


def test_timeline_counts_add_up_and_energy_is_the_integral_of_power(tmp_path: Path) -> None:
    pool = make_pool(12, **POOL)
    trace = wave()
    r = simulate(pool, trace, timeline=True)
    assert r.timeline
    for row in r.timeline:
        counts = row[2:-1]
        assert sum(counts) == 12
    sample_times = {trace.t[0] + x for x in trace.t}
    row_times = {row[0] - r.timeline[0][0] for row in r.timeline}
    assert sample_times <= row_times  # a row at every trace sample ...
    assert len(row_times) > len(sample_times)  # ... and at every change of the counts
    path = tmp_path / "t.csv"
    write_timeline(r, path)
    assert timeline_energy_kwh(path, r.duration_s) == pytest.approx(r.energy_kwh, rel=1e-6)
    prof = pool.profiles["p"]
    for row in r.timeline:  # power follows from the counts, the demand and the profile
        c = dict(zip(COLUMNS, row[2:-1], strict=True))
        rest = sum(c[s.value] * prof.power[s] for s in S)
        moving = (c["waking"] + c["entering"]) * prof.active_idle
        cap_a, cap_f = c["active"], c["freq_scaled"]
        dyn = (prof.active_peak - prof.active_idle) * (
            min(row[1], cap_a) + min(max(row[1] - cap_a, 0), cap_f)
        )
        assert row[-1] == pytest.approx(rest + moving + dyn, rel=1e-9)


def test_powerpool_saves_and_keeps_the_reserve_on_a_daily_cycle() -> None:
    pool = make_pool(12, **POOL)
    trace = wave()
    ours = simulate(pool, trace)
    on = simulate(pool, trace, always_on)
    opt = layered_optimum(pool, trace.t, [v / 100.0 for v in trace.load], trace.t[-1] + trace.step)
    share = (on.energy_kwh - ours.energy_kwh) / (on.energy_kwh - opt.energy_kwh)
    assert share > 0.7, share
    assert ours.unserved_fraction < 1e-4
    assert ours.reserve_short_s < 0.02 * ours.duration_s


@pytest.mark.parametrize(
    "planner", [Slurm(), DPM(), OVirt(), Watcher()], ids=["slurm", "dpm", "ovirt", "watcher"]
)
def test_every_anchor_runs_through_the_same_fleet_and_saves_something(planner: object) -> None:
    pool = make_pool(12, **POOL)
    trace = wave()
    r = simulate(pool, trace, planner)  # type: ignore[arg-type]
    on = simulate(pool, trace, always_on)
    assert 0 < r.energy_kwh < on.energy_kwh
    assert sum(r.transitions.values()) > 0


def test_a_wake_that_never_completes_fails_and_another_spare_is_woken() -> None:
    # no trend term: the step alone sets what is woken, so parked spares remain to replace
    pool = make_pool(10, **POOL, trend_window_s=0.0)
    low, high = [100.0] * 120, [450.0] * 60  # 2 hours quiet, then a jump to 6 warm of 10
    trace = Trace("step", [60.0 * i for i in range(180)], low + high, 60.0)

    def wakes(r: Result) -> int:  # wake commands from a parked state (not governor switches)
        return sum(v for k, v in r.transitions.items() if k.endswith("->active") and not k.startswith("freq"))

    clean = simulate(pool, trace)
    assert 0 < wakes(clean) < 8  # some spares stay parked
    broken = simulate(pool, trace, faults=Faults(never_wake=frozenset({"h05", "h04"})))
    assert broken.unserved_s >= clean.unserved_s
    assert wakes(broken) > wakes(clean)  # a failed wake is replaced by another spare's


def test_a_host_that_dies_is_replaced() -> None:
    pool = make_pool(6, **POOL)
    trace = Trace("flat", [60.0 * i for i in range(240)], [250.0] * 240, 60.0)
    r = simulate(pool, trace, faults=Faults(die_at={"h00": 3600.0, "h01": 3600.0}))
    assert r.reserve_short_s < 600  # the ladder is refilled within minutes


def test_canonical_iso_and_prometheus_traces(tmp_path: Path) -> None:
    canon = tmp_path / "c.csv"
    canon.write_text("t_s,load\n0,1.5\n60,\n120,2.5\n180,nan\n240,3\n")
    tr = read_trace(canon)
    assert tr.t == [0, 120, 240] and tr.load == [1.5, 2.5, 3.0] and tr.step == 120
    assert any("2 sample(s)" in n for n in tr.notes)
    iso = tmp_path / "i.csv"
    iso.write_text(
        "timestamp,cpu,mem\n2026-01-01T00:00:00Z,10,1\n2026-01-01T00:05:00Z,20,2\n"
        "2026-01-01T00:10:00Z,30,3\n2026-01-01T02:00:00Z,40,4\n"
    )
    tr = read_trace(iso, column="mem")
    assert tr.load == [1, 2, 3, 4] and tr.t[-1] == 7200 and tr.step == 300
    assert any("gap" in n for n in tr.notes)
    prom = tmp_path / "p.json"
    prom.write_text(
        json.dumps(
            {
                "status": "success",
                "data": {
                    "resultType": "matrix",
                    "result": [
                        {"metric": {"i": "a"}, "values": [[1000, "1"], [1015, "2"], [1030, "NaN"]]},
                        {"metric": {"i": "b"}, "values": [[1000, "3"], [1015, "4"]]},
                    ],
                },
            }
        )
    )
    tr = read_trace(prom)
    assert tr.t == [0, 15] and tr.load == [4, 6]
    assert any("2 series were summed" in n for n in tr.notes)


def test_bad_traces_say_what_is_wrong(tmp_path: Path) -> None:
    bad = tmp_path / "b.csv"
    bad.write_text("when,load\n1,2\n")
    with pytest.raises(ConfigError, match="t_s or a timestamp"):
        read_trace(bad)
    bad.write_text("timestamp,load\nyesterday,2\n")
    with pytest.raises(ConfigError, match="line 2"):
        read_trace(bad)
    with pytest.raises(ConfigError, match="column"):
        read_trace(bad, column="watts")
    with pytest.raises(ConfigError, match="not found"):
        read_trace(tmp_path / "nope.csv")


def test_stale_gap_in_a_trace_freezes_sleeps() -> None:
    pool = make_pool(8, **POOL)
    t = [60.0 * i for i in range(60)] + [60.0 * i for i in range(200, 260)]
    trace = Trace("gappy", t, [500.0] * 30 + [100.0] * 30 + [100.0] * 60, 60.0)
    r = simulate(pool, trace)
    assert r.unserved_s == 0


def test_simulate_command_writes_json_timeline_and_plot(tmp_path: Path) -> None:
    trace = tmp_path / "w.csv"
    w = wave(days=0.5)
    trace.write_text(
        "t_s,load\n" + "".join(f"{t:g},{v / 100:.4f}\n" for t, v in zip(w.t, w.load, strict=True))
    )
    out = tmp_path / "r.json"
    tl = tmp_path / "t.csv"
    png = tmp_path / "p.png"
    args = [
        "simulate",
        "--policy",
        str(REPO / "policies/web.toml"),
        "--trace",
        str(trace),
        "--hosts",
        "16",
        "--peak-hosts",
        "10",
        "--json",
        str(out),
        "--timeline",
        str(tl),
        "--plot",
        str(png),
    ]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert set(data["results"]) == {"powerpool", "always_on", "optimum", "slurm", "dpm", "ovirt", "watcher"}
    days, n = data["pool"]["duration_s"] / 86400, data["pool"]["hosts"]
    for r in data["results"].values():
        assert {"energy_kwh", "unserved_s", "unserved_fraction", "reserve_short_s", "transitions"} <= set(r)
        # moves: sleeps and wakes per host-day, the governor switches left out
        heavy = sum(
            c for k, c in r["transitions"].items() if "active->freq_scaled" != k != "freq_scaled->active"
        )
        assert r["moves_per_host_day"] == pytest.approx(heavy / n / days, abs=1e-3)
    ours = data["results"]["powerpool"]
    assert ours["transitions"].get("active->freq_scaled", 0) > 0  # so the two counts differ here
    assert ours["moves_per_host_day"] < ours["transitions_per_host_day"]
    assert data["pool"]["hosts"] == 16 and data["pool"]["peak_hosts"] == 10
    assert 0 < data["share_of_optimal_saving"] <= 1
    assert data["results"]["optimum"]["energy_kwh"] <= data["results"]["powerpool"]["energy_kwh"]
    assert data["results"]["optimum"]["gap_kwh"] == 0.0  # exact on a shipped profile
    assert timeline_energy_kwh(tl, data["pool"]["duration_s"]) == pytest.approx(
        data["results"]["powerpool"]["energy_kwh"], rel=5e-3
    )
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "powerpool" in result.output and "optimum" in result.output and "watcher" in result.output


def test_simulate_sweep_walks_the_safety_knob_on_the_operators_load(tmp_path: Path) -> None:
    """Each swept peak_hold is a real run of the planner at that value: the policy's own
    value reproduces the main result, another value gives another trade."""
    trace = tmp_path / "w.csv"
    w = wave(days=0.5)
    trace.write_text(
        "t_s,load\n" + "".join(f"{t:g},{v / 100:.4f}\n" for t, v in zip(w.t, w.load, strict=True))
    )
    out = tmp_path / "r.json"
    base = ["simulate", "--policy", str(REPO / "policies/web.toml"), "--trace", str(trace)]
    base += ["--hosts", "16", "--peak-hosts", "10", "--no-anchors"]
    result = CliRunner().invoke(main, [*base, "--sweep-peak-hold", "15m,0", "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert "safety-vs-saving" in result.output and "15m (policy)" in result.output
    data = json.loads(out.read_text())
    sweep = {row["peak_hold_s"]: row for row in data["peak_hold_sweep"]}
    assert list(sweep) == [0.0, 900.0]  # sorted, whatever order they were given in
    assert sweep[900.0]["energy_kwh"] == data["results"]["powerpool"]["energy_kwh"]
    assert sweep[0.0]["energy_kwh"] < sweep[900.0]["energy_kwh"]  # room for the swing costs energy
    assert {"unserved_fraction", "reserve_short_s", "share_of_optimal_saving", "beats"} <= set(sweep[0.0])
    bad = CliRunner().invoke(main, [*base, "--sweep-peak-hold", "0,5x"])
    assert bad.exit_code == 2 and "'5x' is not a duration" in bad.output and "Traceback" not in bad.output


def test_simulate_command_rejects_a_bad_trace(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("nothing useful\n")
    result = CliRunner().invoke(
        main, ["simulate", "--policy", str(REPO / "policies/web.toml"), "--trace", str(bad)]
    )
    assert result.exit_code == 2 and "bad.csv" in result.output and "Traceback" not in result.output


def test_needed_in_accounting_matches_the_planner() -> None:
    pool = make_pool(4, target_utilisation=0.8)
    assert needed(pool, 1.6) == 2 and needed(pool, 1.61) == 3


def test_the_timeline_has_a_row_at_every_sample_even_when_the_load_repeats() -> None:
    pool = make_pool(6, **POOL)
    trace = Trace("flat", [60.0 * i for i in range(120)], [250.0] * 120, 60.0)
    r = simulate(pool, trace, timeline=True)
    assert r.timeline
    t0 = r.timeline[0][0]
    assert {60.0 * i for i in range(120)} <= {row[0] - t0 for row in r.timeline}


def test_views_kept_between_plans_never_change_a_plan() -> None:
    """The planner reuses its view of a host at rest, and its whole pass over the hosts,
    while the journal hands out the same observations. Over a day of ticks (wakes, sleeps,
    scaling) every plan must equal one made from nothing, and a snapshot listing hosts in
    another order must plan the same."""
    from dataclasses import replace
    from operator import is_

    from powerpool.planner import core, plan

    pool = make_pool(12, racks=2, **POOL)
    plans: list[object] = []
    fresh: list[object] = []
    reused = 0

    def both(p: object, snap: Any) -> object:
        nonlocal reused
        kept_pass = core._GATHERED.get(pool)
        reused += kept_pass is not None and all(map(is_, kept_pass[0], snap.hosts))
        kept = plan(pool, snap)
        rest, gathered = core._REST.pop(pool, None), core._GATHERED.pop(pool, None)
        made = plan(pool, snap)
        assert plan(pool, replace(snap, hosts=tuple(reversed(snap.hosts)))) == made
        core._REST.pop(pool, None)
        core._GATHERED.pop(pool, None)
        if rest is not None:  # put back what the kept plan left, for the next tick
            core._REST[pool] = rest
        if gathered is not None:
            core._GATHERED[pool] = gathered
        plans.append(kept)
        fresh.append(made)
        return kept

    result = simulate(pool, wave(days=1.0), both)  # type: ignore[arg-type]
    assert sum(result.transitions.values()) > 20  # the day moved hosts both ways
    assert reused > len(plans) / 2  # most ticks reused the pass
    assert plans == fresh


def test_simulate_set_runs_a_changed_policy_and_refuses_a_bad_override(tmp_path: Path) -> None:
    """--set changes a key as if it were in the file, checked by the same rules."""
    trace = tmp_path / "t.csv"
    trace.write_text("t_s,load\n" + "".join(f"{i * 60},{100 + 80 * (i % 7)}\n" for i in range(120)))
    base = ["simulate", "--policy", str(REPO / "policies/batch.toml"), "--trace", str(trace)]
    base += ["--hosts", "8", "--peak-hosts", "6", "--no-anchors"]
    runs = {}
    for extra in ([], ["--set", "target_utilisation=0.95", "--set", "forecast.peak_hold=0s"]):
        out = tmp_path / f"r{len(extra)}.json"
        result = CliRunner().invoke(main, [*base, *extra, "--json", str(out)])
        assert result.exit_code == 0, result.output
        runs[len(extra)] = json.loads(out.read_text())
    assert runs[0]["pool"]["target_utilisation"] == 0.87 and runs[4]["pool"]["target_utilisation"] == 0.95
    assert runs[4]["results"]["powerpool"]["energy_kwh"] < runs[0]["results"]["powerpool"]["energy_kwh"]
    for bad, says in (
        ("target_utilisation=1.7", "batch.toml (with --set): target_utilisation = 1.7: expected less than"),
        ("forecast.peak_hold=soon", "forecast.peak_hold = 'soon': expected a duration"),
        ("forecast.nope=1", "forecast.nope = 1: unknown key"),
        ("name.x=1", "name.x = 1: a key inside a table, but name is not a table"),
        ("nokey", "'nokey' is not KEY=VALUE"),
    ):
        result = CliRunner().invoke(main, [*base, "--set", bad])
        assert result.exit_code == 2, (bad, result.output)
        assert says in " ".join(result.output.split()), (bad, result.output)
        assert "Traceback" not in result.output
