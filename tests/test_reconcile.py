"""The reconcile tick's ordering guarantees, with a recording fake fleet."""

from __future__ import annotations

from datetime import datetime, timedelta

from powerpool.clock import FakeClock
from powerpool.journal import Intent, MemoryJournal
from powerpool.model import Action, Health, PowerState
from powerpool.reconcile import Controller, Reading, run_now, tick
from tests.conftest import NOW, S, make_pool


class Steady:
    def __init__(self, value: float) -> None:
        self.value = value

    async def read(self, now: datetime) -> Reading:
        return Reading(self.value, now)


class Recorder:
    """A fleet that records commands, checks the journal saw them first, never finishes."""

    def __init__(self, journal: MemoryJournal) -> None:
        self.journal = journal
        self.started: list[tuple[str, PowerState]] = []
        self.abandoned: list[str] = []
        self.done: list[tuple[str, PowerState | None]] = []

    async def start(self, action: Action, intent: Intent) -> None:
        assert self.journal.open[action.host] == intent  # intent written before the command
        self.started.append((action.host, action.dst))

    def finished(self, now: datetime) -> list[tuple[str, PowerState | None, str]]:
        out, self.done = self.done, []
        return [(host, reached, "recorder") for host, reached in out]

    def abandon(self, host: str, now: datetime) -> None:
        self.abandoned.append(host)


def controller(load: float, asleep: int = 4) -> tuple[Controller, FakeClock, Recorder]:
    pool = make_pool(6, min_active=1, wake_margin_s=30.0)
    clock = FakeClock(NOW)
    journal = MemoryJournal(pool, NOW - timedelta(hours=2))
    for i in range(6 - asleep, 6):  # put the last hosts to sleep, as if long ago
        name = f"h{i:02d}"
        journal.intent(Action(name, S.ACTIVE, S.SLEEP, "setup"), NOW - timedelta(hours=2), 60)
        journal.outcome(name, S.SLEEP, NOW - timedelta(hours=2))
    fleet = Recorder(journal)
    return Controller(pool, clock, Steady(load), fleet, journal), clock, fleet


def test_an_overdue_wake_fails_before_planning_and_another_spare_is_woken_at_once() -> None:
    c, clock, fleet = controller(load=150.0)  # needed 2 + warm 1 = 3 warm; 2 are
    assert run_now(tick(c)) == c.pool.tick_s
    first = [h for h, to in fleet.started if to is S.ACTIVE]
    assert len(first) == 1
    clock.advance(15.0 + 30.0 + 1.0)  # sleep's ready time + margin, and a second
    run_now(tick(c))
    assert fleet.abandoned == first
    assert c.journal.state(first[0]).health is Health.FAILED
    assert [i.host for i in c.failed] == first
    second = [h for h, to in fleet.started if to is S.ACTIVE and h not in first]
    assert len(second) == 1  # in the same tick


def test_one_transition_per_host_and_dry_run_sends_nothing() -> None:
    c, clock, fleet = controller(load=150.0)
    run_now(tick(c))
    clock.advance(10.0)
    run_now(tick(c))  # the wake is still in flight: counted, not repeated
    assert len([h for h, to in fleet.started if to is S.ACTIVE]) == 1
    dry, _, dry_fleet = controller(load=150.0)
    dry.dry_run = True
    run_now(tick(dry))
    assert dry.last_plan is not None and dry.last_plan.actions
    assert not dry_fleet.started and not dry.journal.open


def test_a_verified_outcome_closes_the_intent() -> None:
    c, clock, fleet = controller(load=150.0)
    run_now(tick(c))
    ((host, _),) = fleet.started
    fleet.done.append((host, S.ACTIVE))
    clock.advance(10.0)
    run_now(tick(c))
    o = c.journal.state(host)
    assert o.health is Health.OK and o.wakes == 1
    again = c.journal.open.get(host)
    assert again is None or again.src is S.ACTIVE  # verified active; may be slowed as a spare


def test_a_governor_switch_is_neither_rate_limited_nor_a_new_wake() -> None:
    """active <-> freq_scaled has no inrush: it must not use up the wakes or sleeps per
    minute that real power moves need, nor restart the host's minimum uptime."""
    pool = make_pool(4)
    journal = MemoryJournal(pool, NOW - timedelta(hours=2))
    since = journal.state("h00").since
    for src, dst in ((S.ACTIVE, S.FREQ_SCALED), (S.FREQ_SCALED, S.ACTIVE)):
        journal.intent(Action("h00", src, dst, "test"), NOW, 5)
        journal.outcome("h00", dst, NOW)
    snap = journal.snapshot(NOW)
    assert snap.recent == ()
    assert journal.state("h00").since == since and journal.wakes["h00"] == 0
    journal.intent(Action("h01", S.ACTIVE, S.SLEEP, "test"), NOW, 60)  # a real move still counts
    journal.outcome("h01", S.SLEEP, NOW)
    assert [r.kind for r in journal.snapshot(NOW).recent] == ["sleep"]
    assert journal.state("h01").since == NOW
