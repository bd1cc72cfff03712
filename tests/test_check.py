"""`powerpool check`: shipped files pass; each kind of mistake exits 2 naming its key."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from powerpool.cli import main
from tests.conftest import REPO


def run_check(*paths: Path, as_json: bool = False) -> tuple[int, str]:
    args = ["check", *map(str, paths)] + (["--json"] if as_json else [])
    result = CliRunner().invoke(main, args)
    assert not isinstance(result.exception, Exception) or isinstance(result.exception, SystemExit), (
        result.exception
    )
    return result.exit_code, result.output


def edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path}"
    path.write_text(text.replace(old, new, count))


def test_shipped_files_pass_with_a_summary() -> None:
    code, output = run_check(REPO / "policies", REPO / "hardware", as_json=True)
    assert code == 0, output
    data = json.loads(output)
    pools = {p["pool"]: p for p in data["pools"]}
    assert set(pools) == {"web", "batch"}
    for p in pools.values():
        assert p["parked_w"] < p["always_on_w"]
    assert {"modern-2s", "legacy-2s", "storage-12hdd", "gpu-4x"} <= set(data["profiles"])


def test_human_summary_names_each_pool() -> None:
    code, output = run_check(REPO / "policies", REPO / "hardware")
    assert code == 0
    assert "web: 12 hosts" in output and "W always-on" in output


CASES = [
    # (file, old, new, key expected in the message, words expected)
    (
        "policies/web.toml",
        "target_utilisation = 0.8",
        "target_utilisation = 1.7",
        "target_utilisation",
        "1.7",
    ),
    ("policies/web.toml", '"disk_standby", "sleep"', '"disk_standby", "snooze"', "states.allowed", "snooze"),
    (
        "policies/web.toml",
        'profile = "modern-2s"',
        'profile = "no-such-model"',
        "hosts[0].profile",
        "unknown hardware profile",
    ),
    ("policies/web.toml", '"02:00:00:00:01:02"', '"02:00:00:00:01:01"', "hosts[1].mac", "already claimed"),
    (
        "policies/web.toml",
        'outlets = ["pdu-a:2"]',
        'outlets = ["pdu-a:1"]',
        "hosts[1].outlets",
        "already claimed",
    ),
    ("policies/web.toml", "hosts = 2\n", "hosts = 40\n", "reserve", "pool has 12"),
    (
        "policies/web.toml",
        'auth_key = "env:PDU_A_AUTH_KEY"',
        'auth_key = "s3cret-authkey"',
        "pdus.pdu-a.auth_key",
        "clear text",
    ),
    (
        "policies/web.toml",
        'off = ["ssh", "pdu"]',
        'off = ["ssh"]',
        "channels.off",
        "ssh may only be a graceful first step",
    ),
    (
        "policies/web.toml",
        'idle_before_sleep = "1m"',
        'idle_before_sleep = "ten minutes"',
        "hysteresis.idle_before_sleep",
        "duration",
    ),
    ("policies/web.toml", 'timezone = "Europe/Berlin"', 'timezone = "Mars/Olympus"', "timezone", "time zone"),
    (
        "policies/web.toml",
        'family = "auto"',
        'family = "apc-rpdu9"',
        "pdus.pdu-a.family",
        "a known PDU family (auto, apc-rpdu",
    ),
    ("policies/web.toml", "min_warm = 6", "min_warm = 60", "schedule[0].min_warm", "more than the pool"),
    ("policies/web.toml", 'days = "mon-fri"', 'days = "someday"', "schedule[0].days", "expected days"),
    (
        "policies/web.toml",
        "[rates]\n",
        "[rates]\nwakes_per_mnute = 3\n",
        "rates.wakes_per_mnute",
        "wakes_per_minute",
    ),
    (
        "policies/web.toml",
        'profile = "modern-2s"',
        'profile = "gpu-4x"',
        "states.allowed",
        "gpu-4x, which has no power.sleep",
    ),
    (
        "policies/inventory/batch-hosts.toml",
        'name = "batch02"',
        'name = "web01"',
        "hosts[0].name",
        "already claimed by host web01",
    ),
    (
        "hardware/servers/modern-2s.toml",
        "active_peak = 500.0",
        "active_peak = 100.0",
        "power",
        "active_peak must be >= active_idle",
    ),
    (
        "hardware/servers/modern-2s.toml",
        "sleep = 15.0 ",
        "# sleep = 15.0 ",
        "ready_s.sleep",
        "required, because power.sleep is given",
    ),
    (
        "hardware/servers/modern-2s.toml",
        "[power]\n",
        "[power]\nstandby = 3.0\n",
        "power.standby",
        "unknown key",
    ),
]


@pytest.mark.parametrize(
    ("file", "old", "new", "key", "words"), CASES, ids=[c[3] + ":" + c[4] for c in CASES]
)
def test_each_mistake_exits_2_naming_file_and_key(
    repo_copy: Path, file: str, old: str, new: str, key: str, words: str
) -> None:
    edit(repo_copy / file, old, new)
    code, output = run_check(repo_copy / "policies", repo_copy / "hardware")
    assert code == 2, output
    assert "Traceback" not in output
    lines = [ln for ln in output.splitlines() if ln.startswith("error:")]
    hit = [ln for ln in lines if f": {key}" in ln and words in ln]
    assert hit, f"no line names {key!r} with {words!r}:\n{output}"
    assert Path(file).name in hit[0]
    assert "nothing was applied" in output


def test_insecure_snmp_needs_opt_in_and_a_referenced_community(repo_copy: Path) -> None:
    web = repo_copy / "policies/web.toml"
    edit(
        web,
        'user = "powerpool"\nauth_key = "env:PDU_A_AUTH_KEY"',
        'snmp_version = "2c"\nuser = "powerpool"\nauth_key = "env:PDU_A_AUTH_KEY"',
    )
    code, output = run_check(repo_copy / "policies", repo_copy / "hardware")
    assert code == 2 and "insecure_snmp = true" in output
    edit(web, 'snmp_version = "2c"', 'snmp_version = "2c"\ninsecure_snmp = true\nwrite_community = "private"')
    code, output = run_check(repo_copy / "policies", repo_copy / "hardware")
    assert code == 2 and re.search(r"pdus\.pdu-a\.write_community = 'private': a secret in clear", output)
    edit(web, 'write_community = "private"', 'write_community = "env:PDU_A_WRITE"')
    code, output = run_check(repo_copy / "policies", repo_copy / "hardware")
    assert code == 0, output


def test_every_problem_is_reported_at_once(repo_copy: Path) -> None:
    web = repo_copy / "policies/web.toml"
    edit(web, "target_utilisation = 0.8", "target_utilisation = 1.7")
    edit(repo_copy / "policies/batch.toml", "target_utilisation = 0.87", "target_utilisation = 0")
    code, output = run_check(repo_copy / "policies", repo_copy / "hardware")
    assert code == 2
    assert "web.toml: target_utilisation = 1.7" in output
    assert "batch.toml: target_utilisation = 0" in output


def test_broken_toml_and_missing_file(repo_copy: Path) -> None:
    (repo_copy / "policies/web.toml").write_text("name = [unclosed\n")
    code, output = run_check(repo_copy / "policies", repo_copy / "hardware")
    assert code == 2 and "web.toml: not valid TOML" in output
    code, output = run_check(repo_copy / "nope.toml", repo_copy / "hardware")
    assert code == 2 and "file not found" in output


def test_hardware_profiles_follow_the_design_schema_exactly() -> None:
    """Every shipped profile uses only DESIGN.md's keys, and every figure is commented."""
    import tomllib

    allowed_top = {"name", "description", "capacity", "power", "ready_s", "enter_s", "transition_w"}
    states = {"freq_scaled", "disk_standby", "sleep", "hibernate", "off", "unpowered"}
    files = sorted((REPO / "hardware/servers").glob("*.toml"))
    assert len(files) >= 3
    for f in files:
        data = tomllib.loads(f.read_text())
        assert set(data) <= allowed_top, f
        assert set(data["power"]) <= states | {"active_idle", "active_peak"}, f
        assert set(data["ready_s"]) == set(data["enter_s"]) == set(data["power"]) & states, f
        for line in f.read_text().splitlines():
            if re.match(r"^\s*(active_idle|active_peak)\s*=", line):
                assert "#" in line, f"{f.name}: figure without a source or 'estimate': {line}"
    ratios = {}
    for f in files:
        data = tomllib.loads(f.read_text())
        ratios[data["name"]] = data["power"]["active_idle"] / data["power"]["active_peak"]
    assert any(0.2 <= r <= 0.4 for r in ratios.values()), ratios  # a recent server
    assert any(0.5 <= r <= 0.7 for r in ratios.values()), ratios  # an older one
