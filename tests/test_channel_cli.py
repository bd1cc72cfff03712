"""`powerpool pdu probe`, `outlet` and `host` as an operator runs them, against snmpsim
and emulated SSH hosts on loopback."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from powerpool.cli import main
from powerpool.lab.host import HostBehaviour
from powerpool.lab.snmp_agent import SnmpAgent, V3User
from tests.rack import ROOT, Rack

CAPTURE = ROOT / "tests" / "fixtures" / "snmprec" / "apc-8932.snmprec"  # BSD-2-Clause, see NOTICE.md
V3 = V3User("operator", "auth-key-1234", "priv-key-5678")


@pytest.fixture(scope="module")
def unseen_pdu() -> Iterator[SnmpAgent]:
    """An unmodified real capture, served as recorded."""
    with SnmpAgent({"ap8932": CAPTURE.read_text()}, v3=V3) as agent:
        yield agent


def invoke(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return r.exit_code, r.stdout, r.stderr


def test_pdu_probe_json_on_a_capture_it_has_never_seen(unseen_pdu: SnmpAgent) -> None:
    host, port = unseen_pdu.address
    code, out, _ = invoke("pdu", "probe", "--address", f"{host}:{port}", "--community", "ap8932", "--json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["family"], doc["sys_object_id"]) == ("apc-rpdu", "1.3.6.1.4.1.318.1.3.4.6")
    assert [o["number"] for o in doc["outlets"]] == list(range(1, 25))
    assert {o["number"] for o in doc["outlets"] if o["state"] == "on"} == {1, 13}
    assert (
        set(doc["outlets"][0]) == {"number", "name", "state", "watts"} and doc["outlets"][0]["watts"] is None
    )


def test_pdu_probe_lists_the_unit_of_a_daisy_chain_it_is_asked_for() -> None:
    from powerpool.lab.snmp_agent import render_snmprec
    from tests.rack import PROFILES
    from tests.test_channel_pdu import daisy_chain

    with SnmpAgent({"chain": render_snmprec(daisy_chain(PROFILES["sentry4"]))}) as agent:
        host, port = agent.address
        base = ("pdu", "probe", "--address", f"{host}:{port}", "--community", "chain", "--json")
        for unit, state in (("1", "on"), ("2", "off")):
            code, out, err = invoke(*base, "--unit", unit)
            assert code == 0, err
            doc = json.loads(out)
            assert doc["family"] == "sentry4"
            assert [(o["number"], o["state"]) for o in doc["outlets"]] == [(n, state) for n in (1, 2, 3)]


def test_pdu_probe_over_snmpv3_with_key_references(
    unseen_pdu: SnmpAgent, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PP_AUTH", V3.auth_key)
    monkeypatch.setenv("PP_PRIV", V3.priv_key)
    host, port = unseen_pdu.address
    code, out, _ = invoke(
        "pdu",
        "probe",
        "--address",
        f"{host}:{port}",
        "--v3-user",
        V3.user,
        "--v3-auth-key",
        "env:PP_AUTH",
        "--v3-priv-key",
        "env:PP_PRIV",
        "--v3-auth-proto",
        "sha256",
        "--context",
        "ap8932",
    )
    assert code == 0 and "apc-rpdu" in out and "13" in out


def test_pdu_probe_wrong_community_is_a_clear_error_not_a_traceback(unseen_pdu: SnmpAgent) -> None:
    host, port = unseen_pdu.address
    code, _, err = invoke(
        "pdu", "probe", "--address", f"{host}:{port}", "--community", "wrong", "--timeout", "0.3"
    )
    assert code == 2 and "no answer" in err and "community is wrong" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Rack, Path]]:
    behaviours = {"web01": HostBehaviour(), "web02": HostBehaviour(sudo=("hdparm -C",))}
    with Rack(behaviours, {"web01": (1,), "web02": (2,)}) as rack:
        d = tmp_path_factory.mktemp("policy")
        (d / "hardware").symlink_to(ROOT / "hardware")
        host, port = rack.agent.address
        hosts = "".join(
            f'[[hosts]]\nname = "{n}"\naddress = "127.0.0.1"\nmac = "{h.mac}"\nprofile = "modern-2s"\n'
            f'outlets = ["pdu-a:{i + 1}"]\ndisks = ["/dev/sdb"]\n\n'
            for i, (n, h) in enumerate(rack.hosts.items())
        )
        (d / "lab.toml").write_text(f"""
name = "lab"
capacity_per_host = 100.0
target_utilisation = 0.8
[load]
source = "file"
unit = "percent"
path = "/tmp/load"
[reserve]
min_active = 1
warm = 0
[states]
allowed = ["active", "freq_scaled", "disk_standby", "sleep", "off", "unpowered"]
[channels]
off = ["ssh", "pdu"]
[ssh]
user = "powerpool"
key = "file:{rack.key}"
known_hosts = "{rack.known_hosts}"
port = {rack.hosts["web01"].port}
[pdus.pdu-a]
address = "{host}"
port = {port}
snmp_version = "2c"
insecure_snmp = true
write_community = "env:LAB_PDU_COMMUNITY"
settle = "0.1s"

{hosts}""")
        os.environ["LAB_PDU_COMMUNITY"] = "pdu"
        yield rack, d / "lab.toml"


def test_outlet_status_off_needs_yes_then_switches_and_verifies(lab: tuple[Rack, Path]) -> None:
    rack, policy = lab
    code, out, _ = invoke("outlet", "--policy", str(policy), "pdu-a", "1", "status", "--json")
    assert code == 0 and json.loads(out)["state"] == "on" and json.loads(out)["hosts"] == ["web01"]
    code, _, err = invoke("outlet", "--policy", str(policy), "pdu-a", "1", "off")
    assert code == 2 and "powers web01" in err and "--yes" in err
    code, out, _ = invoke("outlet", "--policy", str(policy), "pdu-a", "1", "off", "--yes", "--json")
    assert code == 0 and json.loads(out)["state"] == "off" and json.loads(out)["noop"] is False
    time.sleep(0.3)
    assert rack.hosts["web01"].state == "unpowered"  # the emulated host really lost power
    code, out, _ = invoke("outlet", "--policy", str(policy), "pdu-a", "1", "on", "--json")
    assert code == 0 and json.loads(out)["state"] == "on"
    time.sleep(1.0)
    assert rack.hosts["web01"].state == "active"


def test_outlet_unknown_pdu_names_the_choices(lab: tuple[Rack, Path]) -> None:
    _, policy = lab
    code, _, err = invoke("outlet", "--policy", str(policy), "pdu-z", "1", "status")
    assert code == 2 and "pdus = 'pdu-z'" in err and "pdu-a" in err


def test_host_probe_and_wol_check(lab: tuple[Rack, Path]) -> None:
    rack, policy = lab
    code, out, _ = invoke("host", "--policy", str(policy), "web01", "probe", "--json")
    doc = json.loads(out)
    assert code == 0 and doc["ok"] and rack.hosts["web01"].boot_id in json.dumps(doc)
    code, out, _ = invoke("host", "--policy", str(policy), "web01", "wol-check")
    assert code == 0 and "Wake-on: g" in out


def test_host_ssh_check_says_which_sudo_rule_is_missing(lab: tuple[Rack, Path]) -> None:
    rack, policy = lab
    # web02 listens on its own port: point the policy's port at it through a copy
    text = policy.read_text().replace(
        f"port = {rack.hosts['web01'].port}", f"port = {rack.hosts['web02'].port}"
    )
    other = policy.with_name("lab2.toml")
    other.write_text(text)
    code, out, _ = invoke("host", "--policy", str(other), "web02", "ssh-check", "--json")
    doc = json.loads(out)
    assert code == 1 and not doc["ok"]
    failed = {c["check"]: c["detail"] for c in doc["checks"] if not c["ok"]}
    assert (
        "sudo sleep" in failed and "add `systemd-run --on-active=2 systemctl suspend`" in failed["sudo sleep"]
    )
    code, out, _ = invoke("host", "--policy", str(policy), "web01", "ssh-check", "--json")
    assert code == 0 and json.loads(out)["ok"]
