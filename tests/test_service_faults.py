"""Faults injected into the lab rack under a running `powerpool run`: a magic packet that
never arrives is recovered by the PDU power cycle, and a host that never comes back is
marked failed while another spare is woken in the same tick.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest

from powerpool.lab.rack import LabRack
from tests.conftest import REPO
from tests.test_service import SPEED, Load, files, powerpool, start_run, status, stop, wait_for


@pytest.fixture(scope="module")
def rack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LabRack]:
    with LabRack(tmp_path_factory.mktemp("faults"), REPO / "hardware", hosts=6, pdus=1, speed=SPEED) as r:
        yield r


@pytest.fixture(scope="module")
def service(rack: LabRack) -> Iterator[tuple[subprocess.Popen[str], Load]]:
    load = Load(rack, 40.0)  # one host needed + one warm: four spares get parked
    proc = start_run(rack)
    yield proc, load
    load.close()
    stop(proc)


def parked(rack: LabRack, n: int) -> dict[str, str]:
    """Parked hosts and their state, once the pool has settled (n parked, none moving)."""

    def settled() -> dict[str, str] | None:
        st = status(rack)
        down = {h: r["state"] for h, r in st.items() if r["state"] != "active" and r["health"] == "ok"}
        moving = [h for h, r in st.items() if r["moving_to"]]
        return down if len(down) >= n and not moving else None

    return wait_for(f"{n} spares parked", settled, timeout=60)  # type: ignore[no-any-return]


def wakes(rack: LabRack, after: int) -> list[dict[str, Any]]:
    return [r for r in rows(rack)[after:] if r["dst"] == "active"]


def test_a_lost_magic_packet_is_recovered_by_the_pdu_cycle(service: Any, rack: LabRack) -> None:
    _, load = service
    down = parked(rack, 4)
    for host in down:
        rack.emulated[host].behaviour.ignore_wol = True  # every packet to a spare is lost
    before = len(rows(rack))
    load.value = 100.0  # two hosts needed + one warm: a spare must come back

    def woken() -> list[dict[str, Any]]:  # from a powered state: WOL was tried first
        return [r for r in wakes(rack, before) if r["closed"] and r["src"] != "unpowered"]

    done = wait_for("a wake from sleep or off verified", woken, timeout=60)
    host, reached, detail = (done[0][k] for k in ("host", "reached", "detail"))
    assert reached == "active" and detail.startswith("pdu:"), detail
    mac = rack.emulated[host].mac
    assert (mac, False) in rack.wol.received  # the packets arrived and were dropped
    pdu, n = rack.outlet_of[host]
    sets = (rack.dir["outlets"] / "sets.log").read_text().splitlines()
    mine = [line.split()[-1] for line in sets if line.startswith(f"{pdu} {n} ")]
    assert mine[-2:] == ["off", "on"], mine  # the cycle: off, then on
    assert status(rack)[host]["state"] == "active"
    for h in rack.emulated.values():
        h.behaviour.ignore_wol = False


def test_a_host_that_never_comes_back_is_failed_and_a_spare_is_woken_by_that_tick(
    service: Any, rack: LabRack
) -> None:
    _, load = service
    load.value = 40.0
    down = parked(rack, 4)
    for host in down:
        rack.emulated[host].behaviour.never_boots = True
    before = len(rows(rack))
    load.value = 100.0
    first = wait_for("a wake started", lambda: wakes(rack, before), timeout=60)[0]["host"]
    for host in down:
        if host != first:  # the other spare is healthy
            rack.emulated[host].behaviour.never_boots = False

    failed = wait_for(
        "the dead host's wake failed",
        lambda: [r for r in wakes(rack, before) if r["host"] == first and r["closed"]],
        timeout=60,
    )
    dead = failed[0]
    assert dead["reached"] is None, str(dead)
    assert "every channel failed" in dead["detail"] or dead["detail"] == "deadline passed", str(dead)
    # The spare that replaces it: another host's wake, started no later than the tick that
    # failed the dead one. The planner stops counting a wake once it is overdue, so it may
    # hedge before the deadline, or it may have woken two at once; it never waits past it.
    other = [
        r for r in rows(rack)
        if r["dst"] == "active" and r["host"] != first and dead["started"] <= r["started"] <= dead["closed"]
    ]  # fmt: skip
    assert other, rows(rack)
    spare_id = other[0]["id"]

    def verified() -> bool:
        return any(r["id"] == spare_id and r["reached"] == "active" for r in rows(rack))

    wait_for("the other spare's wake verified", verified, timeout=60)
    st = status(rack)
    assert st[first]["health"] == "failed"
    assert sum(r["state"] == "active" and r["health"] == "ok" for r in st.values()) >= 3


def rows(rack: LabRack) -> list[dict[str, Any]]:
    """The journal's intents table, as dicts."""
    db = sqlite3.connect(rack.dir["state"] / "journal.sqlite")
    db.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in db.execute("SELECT * FROM intents ORDER BY id")]
    finally:
        db.close()


def qualify_parked(
    rack: LabRack, state: str | None, *args: str, dead: bool = False
) -> tuple[str, subprocess.CompletedProcess[str], int]:
    """Qualify a parked host (in `state`, if given), with the journal's row count just
    before the qualify began (the park that settled it is not the qualify's). The controller
    may start moving the chosen one (e.g. deeper) just before, which is refused: then
    choose again."""
    for _ in range(20):
        down = parked(rack, 3)
        host = next(h for h, s in down.items() if state in (None, s))
        rack.emulated[host].behaviour.never_boots = dead
        before = len(rows(rack))
        r = powerpool("qualify", host, *args, *files(rack), timeout=120)
        if "one transition at a time" not in r.stderr:
            return host, r, before
        rack.emulated[host].behaviour.never_boots = False
        time.sleep(0.5)
    raise AssertionError("every parked host was moving whenever qualify was asked")


def test_qualify_enrols_a_parked_host_with_measured_latencies(service: Any, rack: LabRack) -> None:
    _, load = service
    load.value = 40.0
    host, r, before = qualify_parked(rack, "sleep", "--to", "sleep", "--json")
    assert r.returncode == 0, r.stderr
    view = json.loads(r.stdout)
    assert view["passed"] and view["enrolled"]
    first, trip = view["legs"]
    assert first["state"] == "sleep" and first["enter_s"] is None and first["ready_s"] > 0  # woken first
    assert trip["state"] == "sleep" and trip["enter_s"] > 0 and trip["ready_s"] > 0 and trip["ok"]
    mine = [r for r in rows(rack)[before:] if r["host"] == host]
    assert [(r["src"], r["dst"], r["reached"]) for r in mine[:3]] == [
        ("sleep", "active", "active"), ("active", "sleep", "sleep"), ("sleep", "active", "active")
    ]  # fmt: skip
    assert all(r["reason"].startswith("qualify by") for r in mine[:3])  # the controller kept away
    db = sqlite3.connect(rack.dir["state"] / "journal.sqlite")
    saved = db.execute("SELECT state, ok FROM qualifications WHERE host = ?", (host,)).fetchall()
    db.close()
    assert saved == [("sleep", 1), ("sleep", 1)]
    assert status(rack)[host]["hold"] is None  # the qualification's hold ended with it


def test_a_host_that_fails_qualification_is_not_enrolled(service: Any, rack: LabRack) -> None:
    host, r, _ = qualify_parked(rack, None, dead=True)
    assert r.returncode == 1
    assert f"{host} is NOT enrolled" in r.stderr and "Traceback" not in r.stderr
    row = status(rack)[host]
    assert row["health"] == "failed" and row["hold"] is None
