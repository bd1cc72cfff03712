"""In-memory journal: the record the reconcile tick reads and writes."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from powerpool.model import (
    Action,
    Health,
    Hold,
    HostObservation,
    Pool,
    PowerState,
    RecentAction,
    Snapshot,
    Transition,
)
from powerpool.planner.ladder import table


@dataclass(frozen=True, slots=True)
class Intent:
    """Written before a command is sent; closed by an outcome once verified or failed."""

    host: str
    src: PowerState
    dst: PowerState
    started: datetime
    deadline: datetime
    epoch: int
    reason: str
    who: str = "controller"


class MemoryJournal:
    """Per-host record plus open intents, holds, recent actions and load history."""

    def __init__(
        self,
        pool: Pool,
        start: datetime,
        state: PowerState = PowerState.ACTIVE,
        history_s: float = 0.0,
    ) -> None:
        self.pool = pool
        self.epoch = 1
        self._obs: dict[str, HostObservation] = {
            h.name: HostObservation(h.name, state, start) for h in pool.hosts
        }
        self.open: dict[str, Intent] = {}
        self.recent: deque[RecentAction] = deque()
        self.history: deque[tuple[float, float]] = deque()
        self.load: float | None = None
        self.load_at: datetime | None = None
        self.wakes: dict[str, int] = dict.fromkeys(self._obs, 0)
        tab = table(pool)
        # keep enough load history for every window the planner looks back over
        self._keep_s = (
            max(pool.idle_before_sleep_s, pool.trend_window_s, tab.horizon, history_s) + pool.tick_s
        )

    # -- what the controller observed ---------------------------------------------------

    def record_load(self, value: float | None, observed_at: datetime | None) -> None:
        self.load, self.load_at = value, observed_at
        if value is None or observed_at is None:
            return
        t = observed_at.timestamp()
        if self.history and t <= self.history[-1][0]:
            return
        if len(self.history) > 1 and self.history[-1][1] == value == self.history[-2][1]:
            # A run of equal readings keeps its first and its latest sample: every window
            # still sees the value while it lasted, and its step up when it began.
            self.history[-1] = (t, value)
        else:
            self.history.append((t, value))
        cutoff = t - self._keep_s
        while self.history and self.history[0][0] < cutoff:
            self.history.popleft()

    def set_health(self, host: str, health: Health, now: datetime, detail: str = "") -> None:
        o = self._obs[host]
        if o.health is not health:
            self._obs[host] = replace(o, health=health)

    def set_hold(self, host: str, hold: Hold | None, now: datetime | None = None) -> None:
        self._obs[host] = replace(self._obs[host], hold=hold)

    def observe(self, host: str, state: PowerState, now: datetime, health: Health = Health.OK) -> None:
        """What a probe found a host to be (at start, or re-observing an open intent)."""
        o = self._obs[host]
        if (o.state, o.health) != (state, health):
            self._obs[host] = replace(o, state=state, since=now, health=health)

    def state(self, host: str) -> HostObservation:
        return self._obs[host]

    def observations(self) -> dict[str, HostObservation]:
        """Every host of the pool as last recorded (a copy: the journal stays the writer)."""
        return dict(self._obs)

    def __contains__(self, host: object) -> bool:
        return host in self._obs

    # -- intents and outcomes -----------------------------------------------------------

    def intent(self, action: Action, now: datetime, deadline_s: float, who: str = "controller") -> Intent:
        """Record the intent (before anything is sent) and mark the host in transition."""
        if action.host in self.open:
            raise RuntimeError(f"{action.host} already has an open intent")
        it = Intent(
            action.host,
            action.src,
            action.dst,
            now,
            now + timedelta(seconds=deadline_s),
            self.epoch,
            action.reason,
            who,
        )
        self._opened(it)
        return it

    def _opened(self, it: Intent) -> None:
        """Mark the host in transition (also for intents read back after a restart)."""
        self.open[it.host] = it
        self._obs[it.host] = replace(self._obs[it.host], transition=Transition(it.dst, it.started))
        if it.src.warm and it.dst.warm:
            return  # active <-> freq_scaled: no inrush, so neither rate limited nor a wake
        kind = "wake" if it.dst.depth < it.src.depth else "sleep"
        self.recent.append(RecentAction(it.host, kind, it.started))
        if kind == "wake":
            self.wakes[it.host] += 1

    def outcome(self, host: str, reached: PowerState | None, now: datetime, detail: str = "") -> Intent:
        """Close the host's open intent: `reached` is the verified state, None = failed."""
        it = self.open.pop(host)
        o = self._obs[host]
        if reached is None:
            kind = "wake" if it.dst.depth < it.src.depth else "sleep"
            self.recent.append(RecentAction(host, kind, now, failed=True))
            self._obs[host] = replace(o, transition=None, health=Health.FAILED, since=now)
        else:
            self._obs[host] = self.reached(o, it, reached, now)
        return it

    def reached(self, o: HostObservation, it: Intent, state: PowerState, now: datetime) -> HostObservation:
        """The host at rest in `state`. Between active and freq_scaled it keeps its
        `since`: it stayed warm, and minimum uptime counts from the wake, not the un-scale."""
        since = o.since if it.src.warm and state.warm else now
        return HostObservation(o.name, state, since, o.health, o.hold, None, self.wakes[o.name])

    # -- the planner's input ------------------------------------------------------------

    def snapshot(self, now: datetime) -> Snapshot:
        cutoff = now - timedelta(seconds=max(self.pool.breaker_window_s, 60.0))
        while self.recent and self.recent[0].at < cutoff:
            self.recent.popleft()
        return Snapshot(
            now=now,
            load=self.load,
            load_observed_at=self.load_at,
            hosts=tuple(self._obs.values()),
            history=tuple(self.history),
            recent=tuple(self.recent),
        )
