"""`powerpool plan` on the shipped snapshots: the behaviour an operator checks first."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from powerpool.cli import main
from tests.conftest import REPO

POLICY = REPO / "policies/web.toml"
EXAMPLES = REPO / "docs/examples"


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, list(args))
    return result.exit_code, result.output


def plan_json(snapshot: str) -> dict[str, Any]:
    code, output = run("plan", "--policy", str(POLICY), "--snapshot", str(EXAMPLES / snapshot), "--json")
    assert code == 0, output
    data: dict[str, Any] = json.loads(output)
    return data


def test_quiet_night_parks_spares_and_keeps_needed_plus_one_warm() -> None:
    data = plan_json("web-night.json")
    sleeps = [a for a in data["actions"] if a["kind"] == "sleep" and a["to"] not in ("active", "freq_scaled")]
    assert sleeps, data
    warm_tier = data["tiers"][0]
    assert warm_tier["name"] == "warm" and not warm_tier["short"]
    assert warm_tier["available"] >= data["needed"] + 1
    assert all(a["reason"] for a in data["actions"])


def test_held_host_is_untouched() -> None:
    data = plan_json("web-held.json")
    assert "web12" not in {a["host"] for a in data["actions"]}
    assert any(v["host"] == "web12" and v["rule"] == "hold" for v in data["vetoes"])


def test_stale_load_gives_no_sleep() -> None:
    data = plan_json("web-stale.json")
    assert not data["actions"]
    assert {v["rule"] for v in data["vetoes"]} >= {"stale-load"}
    assert any("stale" in n for n in data["notes"])


def test_load_jump_wakes_fastest_ready_spares_first() -> None:
    data = plan_json("web-surge.json")
    wakes = [a["host"] for a in data["actions"] if a["to"] == "active"]
    assert wakes[:2] == ["web04", "web05"]  # disk standby (12 s), then sleep (15 s)
    order = {"web04": 0, "web05": 1, "web06": 1, "web07": 2, "web08": 2}
    ranks = [order.get(h, 3) for h in wakes]
    assert ranks == sorted(ranks)
    assert data["tiers"][0]["short"]  # honest: the wakes are not verified yet


def test_human_output_is_a_table_with_reasons() -> None:
    code, output = run("plan", "--policy", str(POLICY), "--snapshot", str(EXAMPLES / "web-surge.json"))
    assert code == 0
    assert "reserve ladder" in output and "SHORT" in output and "ready in 12s" in output


def test_bad_snapshot_exits_2_naming_the_key(tmp_path: Path) -> None:
    data = json.loads((EXAMPLES / "web-night.json").read_text())
    data["hosts"][3]["state"] = "napping"
    data["load"]["observed_at"] = "yesterday"
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    code, output = run("plan", "--policy", str(POLICY), "--snapshot", str(bad))
    assert code == 2
    assert "hosts[3].state = 'napping'" in output and "unknown power state" in output
    assert "load.observed_at = 'yesterday'" in output
    assert "Traceback" not in output


def test_snapshot_with_foreign_hosts_or_broken_json_exits_2(tmp_path: Path) -> None:
    data = json.loads((EXAMPLES / "web-night.json").read_text())
    data["hosts"][0]["name"] = "db01"
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    code, output = run("plan", "--policy", str(POLICY), "--snapshot", str(other))
    assert code == 2 and "db01" in output and "not in the policy" in output
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    code, output = run("plan", "--policy", str(POLICY), "--snapshot", str(broken))
    assert code == 2 and "not valid JSON" in output


def test_naive_times_are_rejected(tmp_path: Path) -> None:
    data = json.loads((EXAMPLES / "web-night.json").read_text())
    data["now"] = "2026-11-21T03:00:00"
    naive = tmp_path / "naive.json"
    naive.write_text(json.dumps(data))
    code, output = run("plan", "--policy", str(POLICY), "--snapshot", str(naive))
    assert code == 2 and "now" in output and "timezone" in output.lower()


def test_help_teaches() -> None:
    code, output = run("--help")
    assert code == 0 and "powerpool check" in output and "N+1" in output
    code, output = run("plan", "--help")
    assert code == 0 and "Snapshot format" in output
