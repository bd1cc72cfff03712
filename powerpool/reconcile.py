"""One level-triggered reconcile tick for one pool.

observe -> verify -> plan -> guard -> journal intent -> act, then return the delay until
the next tick. The live service and the simulator run this same function; only the
clock, the load source and the fleet (the channels) differ.

Verification is level-triggered too: a command's outcome is whatever the fleet reports
as verified by a later tick. An intent still open past its deadline is failed here,
*before* planning, so the planner wakes another spare in the same tick.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from powerpool.clock import Clock
from powerpool.journal import Intent, MemoryJournal
from powerpool.model import Action, Health, Host, Plan, Pool, PowerState, Snapshot
from powerpool.planner import plan as default_planner


@dataclass(frozen=True, slots=True)
class Reading:
    """A load value and when it was measured (None when the source had nothing)."""

    value: float | None
    observed_at: datetime | None


class LoadSource(Protocol):
    async def read(self, now: datetime) -> Reading: ...


class Fleet(Protocol):
    """The pool's hosts as reached through their channels."""

    async def start(self, action: Action, intent: Intent) -> None:
        """Send the first command of the action's channel order; never waits for it."""

    def finished(self, now: datetime) -> list[tuple[str, PowerState | None, str]]:
        """Transitions verified (state reached) or given up (None) since the last call,
        each with what was done (channels tried, the error that ended it)."""

    def abandon(self, host: str, now: datetime) -> None:
        """Stop working on a host whose intent passed its deadline."""


Planner = Callable[[Pool, Snapshot], Plan]


def deadline_s(pool: Pool, host: Host, action: Action) -> float:
    """How long a transition may take before it has failed: the profile's figure plus the
    pool's margin, once per channel in its escalation order."""
    prof = pool.profiles[host.profile]
    key = "wake" if action.dst.warm and not action.src.warm else action.dst.value
    channels = len(host.channels.get(key, ())) or 1
    if action.dst.warm and not action.src.warm:
        per_channel = prof.ready_s[action.src]
    elif action.dst.warm:
        per_channel = max(prof.ready_s.get(action.dst, 0.0), prof.enter_s.get(action.dst, 0.0))
    else:
        per_channel = prof.enter_s[action.dst]
    return (per_channel + pool.wake_margin_s) * channels


def sweep_s(pool: Pool) -> float:
    """How often resting hosts are re-probed."""
    return max(60.0, 6 * pool.tick_s)


def meter_s(pool: Pool) -> float:
    """How often the PDU meters are read (one walk of each PDU's watts column): energy
    accounting needs minutes, not ticks, and a PDU's agent is slow."""
    return max(15.0, 3 * pool.tick_s)


@dataclass
class Controller:
    """Everything one pool's tick needs; the service builds one per pool."""

    pool: Pool
    clock: Clock
    load: LoadSource
    fleet: Fleet
    journal: MemoryJournal
    planner: Planner = default_planner
    dry_run: bool = False
    last_plan: Plan | None = None
    failed: list[Intent] = field(default_factory=list)  # for alerts: failed this tick
    hosts: dict[str, Host] = field(init=False)

    def __post_init__(self) -> None:
        self.hosts = {h.name: h for h in self.pool.hosts}


def close_finished(c: Controller, now: datetime) -> list[Intent]:
    """Journal the outcome of every transition the fleet finished; returns the failed."""
    failed = []
    for host, reached, detail in c.fleet.finished(now):
        if host in c.journal.open:
            it = c.journal.outcome(host, reached, now, detail)
            if reached is None:
                failed.append(it)
        elif reached is None:  # lost while resting: out of automation until released
            c.journal.set_health(host, Health.FAILED, now, detail)
    return failed


def close_overdue(c: Controller, now: datetime) -> list[Intent]:
    """Fail every intent past its deadline (the planner then wakes another spare)."""
    failed = []
    for host, it in list(c.journal.open.items()):
        if now > it.deadline:
            c.fleet.abandon(host, now)
            failed.append(c.journal.outcome(host, None, now, "deadline passed"))
    return failed


async def tick(c: Controller) -> float:
    """Run one reconcile step; returns seconds until the next one."""
    now = c.clock.now()
    reading = await c.load.read(now)
    c.journal.record_load(reading.value, reading.observed_at)

    c.failed = close_finished(c, now) + close_overdue(c, now)

    result = c.planner(c.pool, c.journal.snapshot(now))
    c.last_plan = result
    if not c.dry_run:
        for action in result.actions:
            if action.host in c.journal.open:
                continue  # guard: one transition per host at a time
            it = c.journal.intent(action, now, deadline_s(c.pool, c.hosts[action.host], action))
            await c.fleet.start(action, it)
    return c.pool.tick_s


def run_now(coro: Coroutine[Any, Any, float]) -> float:
    """Drive a coroutine that never truly suspends (fake channels) without an event loop.

    The simulator runs millions of ticks; an event loop per tick would dominate its cost.
    A coroutine that does suspend is a bug in a fake channel, and raises here.
    """
    try:
        coro.send(None)
    except StopIteration as done:
        return float(done.value)
    coro.close()
    raise RuntimeError("a simulated channel suspended: fakes must complete immediately")
