"""The pool's vocabulary: power states, the transition table and frozen value types.

Nothing here touches the network, the disk or the clock, so the planner, the simulator
and the live controller can all share it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from enum import StrEnum
from typing import NamedTuple


class PowerState(StrEnum):
    """Canonical power states, shallowest first (used in files, CLI, metrics, journal)."""

    ACTIVE = "active"
    FREQ_SCALED = "freq_scaled"
    DISK_STANDBY = "disk_standby"
    SLEEP = "sleep"
    HIBERNATE = "hibernate"
    OFF = "off"
    UNPOWERED = "unpowered"

    @property
    def depth(self) -> int:
        return _DEPTH[self]

    @property
    def warm(self) -> bool:
        """Ready to serve now."""
        return self in WARM_STATES


LADDER: tuple[PowerState, ...] = tuple(PowerState)
_DEPTH = {s: i for i, s in enumerate(LADDER)}
WARM_STATES = frozenset({PowerState.ACTIVE, PowerState.FREQ_SCALED})
PARKED_STATES: tuple[PowerState, ...] = LADDER[2:]

# Direct transitions between resting states. A host that is up (warm or with its disks
# spun down) can go straight to any deeper state; a host that has saved its memory to
# disk or shut down may lose its outlet; every state can be woken to `active`. Anything
# else (e.g. sleep -> off) would need a wake in between, which costs a full transition.
_DOWN_FROM_UP = frozenset(LADDER[1:])
DIRECT_TRANSITIONS: Mapping[PowerState, frozenset[PowerState]] = {
    PowerState.ACTIVE: _DOWN_FROM_UP,
    PowerState.FREQ_SCALED: frozenset({PowerState.ACTIVE}) | _DOWN_FROM_UP - {PowerState.FREQ_SCALED},
    PowerState.DISK_STANDBY: frozenset({PowerState.ACTIVE, *LADDER[3:]}),
    PowerState.SLEEP: frozenset({PowerState.ACTIVE}),
    PowerState.HIBERNATE: frozenset({PowerState.ACTIVE, PowerState.UNPOWERED}),
    PowerState.OFF: frozenset({PowerState.ACTIVE, PowerState.UNPOWERED}),
    PowerState.UNPOWERED: frozenset({PowerState.ACTIVE}),
}


def can_transition(src: PowerState, dst: PowerState) -> bool:
    return dst in DIRECT_TRANSITIONS[src]


class Health(StrEnum):
    OK = "ok"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    UNKNOWN = "unknown"


class HoldKind(StrEnum):
    """What an operator pinned a host to; automation never touches a held host."""

    AWAKE = "awake"
    ASLEEP = "asleep"
    EXCLUDED = "excluded"


@dataclass(frozen=True, slots=True)
class Profile:
    """A server model: watts per state and seconds to enter and leave each state."""

    name: str
    description: str
    capacity: float
    active_idle: float
    active_peak: float
    power: Mapping[PowerState, float]  # resting watts; ACTIVE maps to active_idle
    ready_s: Mapping[PowerState, float]  # ACTIVE maps to 0
    enter_s: Mapping[PowerState, float]  # ACTIVE maps to 0
    transition_w: Mapping[PowerState, float] = field(default_factory=dict)
    source: str = ""

    def supports(self, state: PowerState) -> bool:
        return state in self.power

    def watts(self, state: PowerState, utilisation: float = 0.0) -> float:
        if state is PowerState.ACTIVE:
            return self.active_idle + (self.active_peak - self.active_idle) * utilisation
        return self.power[state]

    def moving_w(self, state: PowerState) -> float:
        """Watts while entering or leaving `state` (defaults to active idle)."""
        return self.transition_w.get(state, self.active_idle)

    def break_even_s(self, state: PowerState) -> float:
        """Idle gap beyond which resting in `state` beats idling active (ski rental).

        (E_enter + E_exit - P_state * (t_enter + t_exit)) / (P_idle - P_state), and never
        less than the round trip itself: a gap shorter than enter + exit cannot be slept.
        """
        if state.warm:
            return 0.0
        p = self.power[state]
        if p >= self.active_idle:
            return math.inf
        t_in, t_out = self.enter_s[state], self.ready_s[state]
        energy = self.moving_w(state) * (t_in + t_out)
        return max(t_in + t_out, (energy - p * (t_in + t_out)) / (self.active_idle - p))


@dataclass(frozen=True, slots=True)
class Outlet:
    pdu: str
    outlet: int


@dataclass(frozen=True, slots=True)
class Host:
    name: str
    address: str
    mac: str
    profile: str
    outlets: tuple[Outlet, ...] = ()
    domains: tuple[str, ...] = ()  # failure domains, e.g. ("rack:r1", "pdu:pdu-a")
    excluded: bool = False
    channels: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    disks: tuple[str, ...] = ()  # spun down for disk_standby (hdparm -y)
    ssh_port: int | None = None  # overrides the pool's [ssh] port (hosts behind NAT, the lab)


@dataclass(frozen=True, slots=True)
class Hold:
    kind: HoldKind
    until: datetime | None
    reason: str
    owner: str = ""


@dataclass(frozen=True, slots=True)
class Transition:
    to: PowerState
    started: datetime


@dataclass(frozen=True, slots=True)
class HostObservation:
    """What the controller knows of one host at a point in time."""

    name: str
    state: PowerState
    since: datetime
    health: Health = Health.OK
    hold: Hold | None = None
    transition: Transition | None = None
    wakes: int = 0  # wake-ups so far, to spread wear


@dataclass(frozen=True, slots=True)
class RecentAction:
    host: str
    kind: str  # "wake" or "sleep"
    at: datetime
    failed: bool = False


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The planner's whole input about the world, besides the policy."""

    now: datetime
    load: float | None
    load_observed_at: datetime | None
    hosts: tuple[HostObservation, ...]
    history: tuple[tuple[float, float], ...] = ()  # recent (unix seconds, load), oldest first
    recent: tuple[RecentAction, ...] = ()


class ActionKind(StrEnum):
    WAKE = "wake"
    SLEEP = "sleep"


class Action(NamedTuple):
    """One move the planner wants now (a NamedTuple: plans are built in hot loops)."""

    host: str
    src: PowerState
    dst: PowerState
    reason: str

    @property
    def kind(self) -> ActionKind:
        return ActionKind.WAKE if self.dst.depth < self.src.depth else ActionKind.SLEEP


class Veto(NamedTuple):
    """An action the planner refused, and the rule that refused it."""

    host: str
    src: PowerState
    dst: PowerState
    rule: str
    reason: str


@dataclass(frozen=True, slots=True)
class TierStatus:
    """One rung of the reserve ladder: hosts ready within `within_s` vs required."""

    name: str
    within_s: float
    required: float
    available: float

    @property
    def short(self) -> bool:
        return self.available + 1e-9 < self.required


@dataclass(frozen=True, slots=True)
class Plan:
    actions: tuple[Action, ...]
    vetoes: tuple[Veto, ...]
    demand: float  # host-capacities now
    forecast: float  # host-capacities over the wake horizon
    needed: int  # hosts the current demand needs at target utilisation
    tiers: tuple[TierStatus, ...]
    notes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Tier:
    """A rung of the reserve ladder: `hosts` + `percent` of needed, ready within `within_s`."""

    within_s: float
    hosts: int = 0
    percent: float = 0.0

    def extra(self, needed: int) -> int:
        return self.hosts + math.ceil(self.percent / 100.0 * needed - 1e-9)

    @property
    def label(self) -> str:
        parts = [
            f"{self.hosts}" if self.hosts else "",
            f"{self.percent:g}%" if self.percent else "",
        ]
        return "+" + "+".join(p for p in parts if p) + f" within {_fmt_s(self.within_s)}"


@dataclass(frozen=True, slots=True)
class Window:
    """A time-of-day floor: at least `min_warm` warm hosts on `days` between start and end."""

    name: str
    days: frozenset[int]  # 0 = Monday
    start_min: int  # minutes after local midnight
    end_min: int  # may be <= start_min for a window that crosses midnight
    min_warm: int


@dataclass(frozen=True, eq=False)  # identity: pools are cached by the planner
class Pool:
    """A validated policy: everything the planner needs to know about one pool."""

    name: str
    hosts: tuple[Host, ...]
    profiles: Mapping[str, Profile]
    capacity_per_host: float
    target_utilisation: float
    allowed: frozenset[PowerState]
    min_active: int = 1
    warm: int = 1
    tiers: tuple[Tier, ...] = ()
    windows: tuple[Window, ...] = ()
    tz: tzinfo = UTC  # for schedule windows; loaded once by config
    tick_s: float = 10.0
    idle_before_sleep_s: float = 600.0
    min_uptime_s: float = 900.0
    min_dwell_s: Mapping[PowerState, float] = field(default_factory=dict)
    wakes_per_minute: int = 10
    sleeps_per_minute: int = 5
    max_ops_per_pdu: int = 2
    load_max_age_s: float = 60.0
    breaker_failures: int = 3
    breaker_window_s: float = 600.0
    wake_margin_s: float = 30.0
    trend_window_s: float = 600.0
    peak_hold_s: float = 600.0
    spread_domains: bool = True


def _fmt_s(seconds: float) -> str:
    """Human duration, the inverse of the policy files' "90s" / "10m" / "2h"."""
    if math.isinf(seconds):
        return "never"
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


fmt_duration = _fmt_s
