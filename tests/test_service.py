"""The controller service (`powerpool run`, a real process) against a lab rack on
loopback: SNMPv3 PDUs in snmpsim, SSH hosts, a WOL listener. The manual commands run as
real CLI processes too.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from powerpool.lab.rack import LabRack
from tests.conftest import REPO

SPEED = 240.0


class Load:
    """Keeps the lab's load file fresh (or lets it go stale) from a thread."""

    def __init__(self, rack: LabRack, value: float) -> None:
        self.rack, self.value, self.fresh = rack, value, True
        self._stop = threading.Event()
        rack.set_load(value)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            if self.fresh:
                self.rack.set_load(self.value)

    def stale(self, value: float) -> None:
        """Write a value the controller must not trust: observed a minute ago."""
        self.fresh = False
        time.sleep(0.3)
        self.rack.set_load(value)
        old = time.time() - 60
        os.utime(self.rack.load_file, (old, old))

    def close(self) -> None:
        self._stop.set()


def powerpool(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "powerpool", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO
    )


def start_run(rack: LabRack) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "powerpool", "run", *files(rack)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def files(rack: LabRack) -> list[str]:
    return [
        "--policies", str(rack.dir["policies"]),
        "--hardware", str(rack.root / "hardware"),
        "--state-dir", str(rack.dir["state"]),
    ]  # fmt: skip


def wait_for(what: str, check: Callable[[], Any], timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = check()
        if got:
            return got
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def status(rack: LabRack) -> dict[str, dict[str, Any]]:
    r = powerpool("status", *files(rack), "--json")
    assert r.returncode == 0, r.stderr
    return {h["host"]: h for h in json.loads(r.stdout)["pools"][0]["hosts"]}


def intents(rack: LabRack) -> list[tuple[str, str, str, str | None, str | None, float | None]]:
    db = sqlite3.connect(rack.dir["state"] / "journal.sqlite")
    try:
        return db.execute(
            "SELECT host, src, dst, reached, detail, closed FROM intents ORDER BY id"
        ).fetchall()
    except sqlite3.OperationalError:
        return []
    finally:
        db.close()


def stop(proc: subprocess.Popen[str]) -> str:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=90)
    return stderr


@pytest.fixture(scope="module")
def rack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRack]:
    with LabRack(tmp_path_factory.mktemp("lab"), REPO / "hardware", hosts=4, pdus=1, speed=SPEED) as r:
        yield r


@pytest.fixture(scope="module")
def service(rack: LabRack) -> Iterator[tuple[subprocess.Popen[str], Load]]:
    load = Load(rack, 300.0)  # 3 of 4 host-capacities: nothing to park yet
    proc = start_run(rack)
    wait_for("the API", lambda: (rack.dir["state"] / "api.json").exists() or proc.poll() is not None)
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    yield proc, load
    load.close()
    stop(proc)


def test_live_plan_without_a_service_reads_the_load_and_the_journal(rack: LabRack) -> None:
    rack.set_load(300.0)  # 3.75 host-capacities at 80 %: four hosts needed
    r = powerpool("plan", "lab", "--json", *files(rack))
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)
    assert p["pool"] == "lab" and p["needed"] == 4 and p["actions"] == []
    r = powerpool("plan", "nosuch", *files(rack))
    assert r.returncode == 2 and "no pool 'nosuch'; pools: lab" in r.stderr


def test_qualify_without_a_service_keeps_the_warm_floor_then_enrols(rack: LabRack) -> None:
    rack.set_load(300.0)  # every host needed: qualifying one would leave the pool short
    r = powerpool("qualify", "lab04", "--to", "sleep", *files(rack), timeout=120)
    assert r.returncode == 1 and "warm floor (needed + warm)" in r.stderr, r.stderr
    rack.set_load(0.0)
    r = powerpool("qualify", "lab04", "--to", "sleep", "--json", *files(rack), timeout=120)
    assert r.returncode == 0, r.stderr
    (leg,) = json.loads(r.stdout)["legs"]
    assert leg["ok"] and leg["enter_s"] > 0 and leg["ready_s"] > 0
    assert rack.emulated["lab04"].state == "active" and rack.emulated["lab04"].suspend_success == 1


def test_live_plan_comes_from_the_running_service(service: Any, rack: LabRack) -> None:
    r = powerpool("plan", "--json", *files(rack))
    assert r.returncode == 0, r.stderr
    (p,) = json.loads(r.stdout)["pools"]
    assert p["pool"] == "lab" and p["tiers"] and p["demand_hosts"] > 0
    r = powerpool("plan", "lab", *files(rack))
    assert r.returncode == 0 and "reserve ladder" in r.stdout


def test_a_second_run_on_the_same_state_dir_refuses_to_act(service: Any, rack: LabRack) -> None:
    r = subprocess.run(
        [sys.executable, "-m", "powerpool", "run", *files(rack)], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 1 and "refusing to act" in r.stderr and "holds the controller lease" in r.stderr


def test_stale_load_freezes_sleeps(service: Any, rack: LabRack) -> None:
    _, load = service
    before = len(intents(rack))
    load.stale(0.0)  # no demand at all, but the reading is a minute old
    time.sleep(3.0)  # several ticks (0.5 s each)
    assert [i for i in intents(rack)[before:] if i[2] != "active"] == []
    r = powerpool("status", *files(rack), "--json")
    assert any("stale" in n for n in json.loads(r.stdout)["pools"][0]["notes"])


def test_low_load_parks_spares_but_never_a_held_host(service: Any, rack: LabRack) -> None:
    _, load = service
    r = powerpool("hold", "lab02", "--awake", "--for", "1h", "--reason", "kernel test", *files(rack))
    assert r.returncode == 0, r.stderr
    load.value, load.fresh = 40.0, True  # 0.4 host-capacities: one needed + one warm
    wait_for(
        "two hosts parked",
        lambda: sum(not h["state"].startswith("active") for h in status(rack).values()) >= 2,
    )
    st = status(rack)
    assert st["lab02"]["state"] == "active" and st["lab02"]["hold"]["who"]
    parked = {h for h, row in st.items() if not row["state"].startswith("active")}

    def baselines() -> set[str]:  # the proof of their next wake, journaled for a restart
        db = sqlite3.connect(rack.dir["state"] / "journal.sqlite")
        try:
            return {r[0] for r in db.execute("SELECT host FROM baselines WHERE boot_id != ''")}
        finally:
            db.close()

    wait_for("the parked hosts' baselines journaled", lambda: parked <= baselines())
    assert all(i[0] != "lab02" for i in intents(rack))
    journal = json.loads(powerpool("journal", "--host", "lab02", "--json", *files(rack)).stdout)
    assert [e["event"] for e in journal if e["event"].startswith(("hold", "intent"))] == ["hold awake"]


def test_sleep_that_would_break_the_warm_floor_is_refused_with_the_rule(service: Any, rack: LabRack) -> None:
    def settled() -> dict[str, dict[str, Any]] | None:
        st = status(rack)
        warm = [h for h in st.values() if h["state"] == "active" and not h["moving_to"]]
        return st if len(warm) == 2 else None  # needed (1) + warm (1)

    st = wait_for("the pool settled at its floor", settled)
    (warm,) = [h for h, row in st.items() if row["state"] == "active" and h != "lab02"]
    r = powerpool("sleep", warm, "--to", "sleep", "--force", *files(rack))
    assert r.returncode == 1
    assert "warm floor (needed + warm)" in r.stderr and "Traceback" not in r.stderr


def test_metrics_are_exposed_for_prometheus(service: Any, rack: LabRack) -> None:
    url = json.loads((rack.dir["state"] / "api.json").read_text())["url"]
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    names = {f.name for f in text_string_to_metric_families(text)}
    for name in (
        "powerpool_hosts", "powerpool_pool_power_watts", "powerpool_energy_saved_joules",
        "powerpool_transitions", "powerpool_wake_latency_seconds", "powerpool_reserve_hosts",
        "powerpool_load", "powerpool_load_age_seconds", "powerpool_tick_seconds", "powerpool_leader",
    ):  # fmt: skip
        assert name in names, name
    assert "powerpool_transitions_total{" in text  # parked hosts were counted
    with pytest.raises(urllib.error.HTTPError, match="401"):
        urllib.request.urlopen(url + "/v1/status", timeout=10)  # the API needs the token


def test_pool_power_comes_from_the_pdu_meters(service: Any, rack: LabRack) -> None:
    def metered() -> dict[str, Any] | None:
        r = powerpool("status", *files(rack), "--json")
        p = json.loads(r.stdout)["pools"][0]
        return p if p["power_source"] == "pdu" else None

    p = wait_for("a metered pool", metered)
    assert all(h["watts_source"] == "pdu" for h in p["hosts"])
    watts = [h["watts"] for h in p["hosts"]]
    # the emulated hosts draw their profile's watts: active 150-500 by how busy, sleep 12,
    # off 9, nothing once the outlet is cut
    assert all(w in (0, 9, 12) or 150 <= w <= 500 for w in watts) and max(watts) >= 150, watts
    url = json.loads((rack.dir["state"] / "api.json").read_text())["url"]
    text = urllib.request.urlopen(url + "/metrics", timeout=10).read().decode()
    assert 'powerpool_pool_power_measured{pool="lab"} 1.0' in text
    assert 'powerpool_host_watts{host="lab01",pool="lab"}' in text


@pytest.mark.skipif(shutil.which("prometheus") is None, reason="no prometheus binary (.ci/run installs it)")
def test_a_real_prometheus_server_scrapes_the_metrics(service: Any, rack: LabRack, tmp_path: Path) -> None:
    target = json.loads((rack.dir["state"] / "api.json").read_text())["url"].removeprefix("http://")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
        f"scrape_configs: [{{job_name: powerpool, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    prom = subprocess.Popen(
        ["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip

    def query(q: str) -> list[dict[str, Any]]:
        url = f"http://127.0.0.1:{port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        try:
            body = json.loads(urllib.request.urlopen(url, timeout=5).read())
        except OSError:
            return []
        return body["data"]["result"]  # type: ignore[no-any-return]

    try:
        up = wait_for("prometheus scraping powerpool", lambda: query('up{job="powerpool"} == 1'), 60)
        assert up[0]["metric"]["instance"] == target
        hosts = wait_for("powerpool_hosts stored", lambda: query('sum(powerpool_hosts{pool="lab"})'), 30)
        assert float(hosts[0]["value"][1]) == 4  # every host is in exactly one state
        assert query("powerpool_leader") and query("powerpool_tick_seconds") and query("powerpool_load")
    finally:
        prom.terminate()
        prom.wait(30)


def test_manual_wake_is_verified_and_held(service: Any, rack: LabRack) -> None:
    parked = [
        h for h, row in status(rack).items() if not row["state"].startswith("active") and not row["moving_to"]
    ]
    host = parked[0]
    r = powerpool("wake", host, "--reason", "test", "--json", *files(rack), timeout=90)
    assert r.returncode == 0, r.stderr
    row = json.loads(r.stdout)[host]
    assert row["state"] == "active" and row["hold"]["kind"] == "awake"


def test_sigkill_between_intent_and_outcome_is_re_observed_without_resending(tmp_path: Path) -> None:
    with LabRack(tmp_path, REPO / "hardware", hosts=4, pdus=1, speed=SPEED) as rack:
        policy = rack.dir["policies"] / "lab.toml"  # no sleep: every spare is shut down
        text = policy.read_text().replace('allowed = ["active", "sleep", ', 'allowed = ["active", ')
        assert "sleep" not in text.split("allowed = ")[1].split("\n")[0]
        policy.write_text(text)
        load = Load(rack, 0.0)  # nothing to serve: spares go down at once
        proc = start_run(rack)
        try:

            def sent_off() -> Any:
                """A host that received its poweroff while the intent is still open."""
                open_ = {i[0] for i in intents(rack) if i[2] in ("off", "unpowered") and i[5] is None}
                return [h for h in open_ if any("poweroff" in c for c in rack.emulated[h].commands)]

            (host,) = wait_for("a poweroff sent, not yet verified", sent_off, timeout=60)[:1]
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            proc = start_run(rack)
            try:
                closed = wait_for(
                    "the intent re-observed",
                    lambda: [i for i in intents(rack) if i[0] == host and i[4] and "re-observed" in i[4]],
                )
            except AssertionError:
                raise AssertionError(f"{intents(rack)}\n{stop(proc)}") from None
            time.sleep(3.0)  # ticks of the new controller
            stop(proc)
        finally:
            load.close()
            if proc.poll() is None:
                proc.kill()
        poweroffs = [c for c in rack.emulated[host].commands if "systemctl poweroff" in c]
        assert len(poweroffs) == 1, rack.emulated[host].commands
        assert closed[0][3] in ("off", "unpowered") and "nothing re-sent" in closed[0][4]
