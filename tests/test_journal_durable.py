"""The durable journal: intents committed before commands, restart, leases and fencing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from powerpool.errors import LeadershipLost, PowerpoolError
from powerpool.journal.durable import DurableJournal
from powerpool.journal.store import StateDirBusy, Store
from powerpool.model import Action, Health, Hold, HoldKind, PowerState
from tests.conftest import make_pool

NOW = datetime(2026, 11, 2, 3, 0, tzinfo=UTC)
A, S = PowerState.ACTIVE, PowerState.SLEEP
OTHER = "run@another-machine:1"  # a holder this machine cannot check: alive until its lease expires


def journal(path: Path, holder: str = OTHER, now: datetime = NOW, ttl: float = 30.0) -> DurableJournal:
    return DurableJournal(make_pool(4), Store(path), now, holder, lease_ttl_s=ttl)


def test_intent_is_committed_before_it_returns(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    j = journal(db)
    j.intent(Action("h00", A, S, "idle"), NOW, 60.0)
    other = sqlite3.connect(db)  # another process's view: what survives a crash right now
    rows = other.execute("SELECT host, src, dst, epoch, closed FROM intents").fetchall()
    assert rows == [("h00", "active", "sleep", j.epoch, None)]


def test_restart_keeps_open_intents_holds_and_states(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    j = journal(db)
    j.observe("h01", S, NOW)
    j.set_hold("h02", Hold(HoldKind.AWAKE, NOW + timedelta(hours=1), "release", "ana"), NOW)
    j.intent(Action("h00", A, S, "idle"), NOW, 60.0)
    j.store.close()  # a crash: no outcome, no lease release

    later = NOW + timedelta(minutes=5)  # the old lease expired
    k = journal(db, "run@another-machine:2", later)
    assert k.epoch == j.epoch + 1
    assert set(k.open) == {"h00"} and k.state("h00").transition is not None  # not shown as warm
    assert k.state("h01").state is S and k.state("h02").hold is not None
    k.outcome("h00", S, later, "re-observed after restart")
    assert k.state("h00").state is S and not k.open


def test_a_second_live_controller_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    journal(db)
    with pytest.raises(StateDirBusy, match="holds the controller lease"):
        journal(db, "run@another-machine:2", NOW + timedelta(seconds=5))


def test_a_dead_local_holder_is_taken_over_at_once(tmp_path: Path) -> None:
    import socket

    db = tmp_path / "j.sqlite"
    journal(db, f"run@{socket.gethostname()}:999999")  # no such process here
    assert journal(db, "run@another-machine:2").epoch == 2


def test_a_controller_that_lost_its_lease_cannot_write_intents(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    old = journal(db)
    journal(db, "run@another-machine:2", NOW + timedelta(minutes=5))  # took over after expiry
    with pytest.raises(LeadershipLost, match="stops acting"):
        old.intent(Action("h00", A, S, "idle"), NOW + timedelta(minutes=5), 60.0)
    with pytest.raises(LeadershipLost):
        old.renew(NOW + timedelta(minutes=5))
    assert sqlite3.connect(db).execute("SELECT count(*) FROM intents").fetchone() == (0,)


def test_failed_outcome_marks_the_host_failed_and_audits(tmp_path: Path) -> None:
    j = journal(tmp_path / "j.sqlite")
    j.intent(Action("h00", S, A, "demand"), NOW, 60.0, who="ana")
    j.outcome("h00", None, NOW + timedelta(seconds=61), "wol: no answer; pdu: stuck")
    assert j.state("h00").health is Health.FAILED
    events = [(e.event, e.who) for e in j.store.audit(host="h00")]
    assert events == [("intent sleep->active", "ana"), ("outcome sleep->active", "ana")]
    stats = j.store.wake_stats("test")
    assert stats["h00"]["failures"] == 1.0 and stats["h00"]["wakes"] == 0.0


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    Store(db).close()
    sqlite3.connect(db).execute("PRAGMA user_version = 99").connection.commit()
    with pytest.raises(PowerpoolError, match="newer than this powerpool"):
        Store(db)


def test_proof_of_return_baselines_survive_a_restart(tmp_path: Path) -> None:
    db = tmp_path / "j.sqlite"
    j = journal(db, holder="run@here:1")
    j.save_baseline("h01", "boot-a", 7)
    j.save_baseline("h01", "boot-a", 8)  # a later suspend replaces it
    j.close()
    again = journal(db, holder="run@here:2")
    assert again.baselines == {"h01": ("boot-a", 8)}
