"""The planner: (pool, snapshot) -> Plan. Pure: no I/O, no clock, no randomness.

One pass has two phases over the same numbers:

1. Wake: count what will be ready within each point h (in-flight wakes count as warm
   until overdue) and, where the ladder is short, wake the spares that become ready
   soonest. Wakes are never frozen by stale load or the breaker.
2. Park: count pessimistically (in-flight wakes count only once verified, a host
   planned to sleep counts as ready only after entering *and* waking) and move spares
   down, each as deep as its idle time has earned (break-even, ski rental) and as deep
   as every tier still allows. Sleeps need fresh load and hysteresis for the idle
   window, obey rate and per-PDU limits, and keep failure domains replaceable.
"""

from __future__ import annotations

import math
import weakref
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import zip_longest
from operator import is_

from powerpool.forecast import forecast, peak_since, rises_within, swing_margin, window_floors
from powerpool.model import (
    WARM_STATES as WARM,
)
from powerpool.model import (
    Action,
    Health,
    HoldKind,
    Host,
    HostObservation,
    Plan,
    Pool,
    PowerState,
    Snapshot,
    TierStatus,
    Veto,
    fmt_duration,
)
from powerpool.planner.ladder import (
    EPS,
    PoolTable,
    ProfileTable,
    needed,
    requirements,
    table,
)

INF = math.inf
_new_veto = tuple.__new__  # a Veto from its fields without NamedTuple's keyword handling: hot
A, F = PowerState.ACTIVE, PowerState.FREQ_SCALED


@dataclass(slots=True)
class _View:
    """One host as the planner sees it during this pass (mutable scratch)."""

    host: Host
    obs: HostObservation
    state: PowerState
    tab: ProfileTable
    cap: float
    ready_now: float  # pessimistic: what it is worth right now
    ready_goal: float  # what it will be worth once in-flight transitions land
    pdus: tuple[str, ...]
    blocked: str = ""  # rule that keeps automation off it, "" when free
    why: str = ""


@dataclass(slots=True)
class _Budget:
    """Rate limits and per-PDU concurrency, shared by both phases."""

    wakes: int
    sleeps: int
    pdu_free: dict[str, int]

    def refuse(self, v: _View, waking: bool) -> tuple[str, str] | None:
        left = self.wakes if waking else self.sleeps
        if left <= 0:
            kind = "wakes" if waking else "sleeps"
            return "rate-limit", f"{kind} per minute already used up"
        for pdu in v.pdus:
            if self.pdu_free.get(pdu, 1) <= 0:
                return "pdu-concurrency", f"PDU {pdu} already has its maximum operations"
        return None

    def take(self, v: _View, waking: bool) -> None:
        if waking:
            self.wakes -= 1
        else:
            self.sleeps -= 1
        for pdu in v.pdus:
            if pdu in self.pdu_free:
                self.pdu_free[pdu] -= 1


@dataclass(slots=True)
class _Pass:
    pool: Pool
    snap: Snapshot
    tab: PoolTable
    views: list[_View]
    budget: _Budget
    have_goal: list[float] = field(default_factory=list)  # ready within each point, wakes landed
    have_now: list[float] = field(default_factory=list)  # the same, counted pessimistically
    active: float = 0.0  # capacity serving at full speed (or about to)
    warm: list[_View] = field(default_factory=list)  # resting warm, in serving order
    parked: list[_View] = field(default_factory=list)  # resting parked, with a deeper state
    actions: list[Action] = field(default_factory=list)
    refused_spans: dict[tuple[int, int], tuple[float, int]] = field(default_factory=dict)
    vetoes: list[Veto] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def veto(self, v: _View, dst: PowerState, rule: str, reason: str) -> None:
        self.vetoes.append(_new_veto(Veto, (v.host.name, v.state, dst, rule, reason)))


_REST: weakref.WeakKeyDictionary[Pool, dict[str, _View]] = weakref.WeakKeyDictionary()


def _at_rest(pool: Pool) -> dict[str, _View]:
    """Views of the pool's free hosts at rest, kept from one plan to the next.

    A journal hands out the same observation object until something about the host
    changes, so a view built from it stays right apart from its scratch readiness, which
    each plan resets. Most ticks therefore build no view at all; the plan still depends
    on nothing but its arguments.
    """
    rest = _REST.get(pool)
    if rest is None:
        rest = _REST[pool] = {}
    return rest


def _light(src: PowerState, dst: PowerState) -> bool:
    """active <-> freq_scaled: instant, no inrush, not rate limited."""
    return src in WARM and dst in WARM


def _age(now: datetime, then: datetime) -> float:
    return (now - then).total_seconds()


def _view(
    pool: Pool, host: Host, pt: ProfileTable, pdus: tuple[str, ...], obs: HostObservation, now: datetime
) -> _View:
    v = _View(host, obs, obs.state, pt, pt.profile.capacity, INF, INF, pdus)
    hold = obs.hold
    if hold is not None and hold.until is not None and hold.until <= now:
        hold = None  # expired holds are simply gone
    if host.excluded or (hold is not None and hold.kind is HoldKind.EXCLUDED):
        v.blocked, v.why = "excluded", "excluded from automation"
        return v  # counts for nothing
    if obs.health is not Health.OK:
        v.blocked, v.why = "health", f"health is {obs.health.value}"
        return v
    ready = pt.ready.get(obs.state)
    if ready is None:  # a state this pool does not use (e.g. set by hand): count it honestly
        ready = pt.profile.ready_s.get(obs.state, INF) if obs.state not in WARM else 0.0
    tr = obs.transition
    if tr is not None:
        v.blocked, v.why = "in-transition", f"already moving to {tr.to.value}"
        elapsed = _age(now, tr.started)
        if tr.to in WARM and obs.state in WARM:  # active <-> freq_scaled: warm throughout
            v.ready_now = v.ready_goal = 0.0
        elif tr.to in WARM:
            deadline = ready + pool.wake_margin_s
            if elapsed > deadline:
                v.why = f"wake overdue ({elapsed:.0f}s > {deadline:.0f}s): counts for nothing"
                return v
            v.ready_goal = 0.0
            v.ready_now = max(EPS * 10, ready - elapsed)  # never warm until verified
        else:
            left = max(0.0, pt.profile.enter_s.get(tr.to, 0.0) - elapsed)
            v.ready_now = v.ready_goal = left + pt.profile.ready_s.get(tr.to, INF)
    else:
        v.ready_now = v.ready_goal = ready
    if hold is not None:
        v.blocked, v.why = "hold", f"held {hold.kind.value}: {hold.reason}"
        if hold.kind is HoldKind.ASLEEP:  # automation may not wake it: worth nothing
            v.ready_now = v.ready_goal = INF
    return v


def _running(diff: list[float]) -> list[float]:
    """Prefix sums of a diff array, without its overflow slot."""
    out, run = [], 0.0
    for d in diff[:-1]:
        run += d
        out.append(run)
    return out


def _demand(pool: Pool, snap: Snapshot) -> tuple[bool, float, list[tuple[float, float]]]:
    """(stale, demand now, history as (seconds relative to now, demand))."""
    scale = 1.0 / pool.capacity_per_host
    now = snap.now.timestamp()
    since = now - table(pool).lookback
    hist: list[tuple[float, float]] = []
    for t, v in reversed(snap.history):  # only the window the planner looks back over
        if t < since:
            break
        if t <= now:
            hist.append((t - now, v * scale))
    hist.reverse()
    stale = (
        snap.load is None
        or snap.load_observed_at is None
        or _age(snap.now, snap.load_observed_at) > pool.load_max_age_s
    )
    last = hist[-1][1] if hist else 0.0
    current = snap.load * scale if snap.load is not None else last
    if stale:  # fail safe for wakes: assume the worst we have recently seen
        current = max([current, *(d for _, d in hist)])
    return stale, current, hist


def _failed_recently(pool: Pool, snap: Snapshot) -> int:
    """Failed transitions inside the breaker window (unreachable hosts are added to it)."""
    if not snap.recent:
        return 0
    since = snap.now - timedelta(seconds=pool.breaker_window_s)
    return sum(1 for r in snap.recent if r.failed and r.at >= since)


@dataclass(slots=True)
class _Gathered:
    """What one pass over the hosts tells both phases (read-only once built)."""

    views: list[_View]  # in serving order
    have_goal: list[float]  # capacity ready within each point, wakes landed
    have_now: list[float]  # the same, counted pessimistically
    active: float  # capacity serving at full speed (or about to)
    warm: list[_View]  # resting warm, in serving order
    parked: list[_View]  # resting parked, with a deeper state
    pdu_busy: dict[str, int]
    unreachable: int
    missing: list[str]


_GATHERED: weakref.WeakKeyDictionary[Pool, tuple[tuple[HostObservation, ...], _Gathered]] = (
    weakref.WeakKeyDictionary()
)


def _gather(pool: Pool, tab: PoolTable, snap: Snapshot) -> _Gathered:
    """One pass gathers what both phases need: availability, serving capacity, and the
    warm and parked hosts in serving order.

    When every host is at rest and the journal hands out the very same observations as
    for the last plan, and that plan moved nothing, the pass would find the same again:
    it is kept (the views' scratch is only written by moves)."""
    observed = snap.hosts
    kept = _GATHERED.get(pool)
    if kept is not None and len(kept[0]) == len(observed) and all(map(is_, kept[0], observed)):
        return kept[1]
    now = snap.now
    by_name: dict[str, HostObservation] | None = None  # only when the snapshot's order is not the pool's
    rest = _at_rest(pool)
    views: list[_View] = []
    missing: list[str] = []
    pdu_busy: dict[str, int] = defaultdict(int)
    unreachable = 0
    ok = Health.OK
    n_points = len(tab.points)
    goal_diff = [0.0] * (n_points + 1)
    now_diff = [0.0] * (n_points + 1)
    index, index_of = tab.index, tab.index_of
    active = 0.0
    warm: list[_View] = []
    parked: list[_View] = []
    at_rest = True
    n_observed = len(observed)
    for h, pt, pdus, k in tab.hosts:
        o = observed[k] if k < n_observed else None
        if o is None or o.name != h.name:
            if by_name is None:
                by_name = {x.name: x for x in observed}
            o = by_name.get(h.name)
            if o is None:
                missing.append(h.name)
                continue
        state = o.state
        ready = pt.ready.get(state)
        cap = pt.cap
        if (
            ready is not None
            and o.transition is None
            and o.hold is None
            and o.health is ok
            and not h.excluded
        ):  # the common case: a free host at rest, usually unchanged since the last plan
            v = rest.get(h.name)
            if v is None or v.obs is not o:
                v = rest[h.name] = _View(h, o, state, pt, cap, ready, ready, pdus)
            else:
                v.ready_now = v.ready_goal = ready
        else:
            at_rest = False
            v = _view(pool, h, pt, pdus, o, now)
            tr = o.transition
            if tr is not None and not _light(state, tr.to):
                for pdu in pdus:
                    pdu_busy[pdu] += 1
            if o.health is Health.UNKNOWN:
                unreachable += 1
        views.append(v)
        g, r = v.ready_goal, v.ready_now
        if g != INF:
            i = index.get(g)
            goal_diff[index_of(g) if i is None else i] += cap
            if g == 0.0 and (state is A or (o.transition is not None and o.transition.to is A)):
                active += cap
        if r != INF:
            i = index.get(r)
            now_diff[index_of(r) if i is None else i] += cap
            if r == 0.0:
                warm.append(v)
            elif o.transition is None and state not in WARM and pt.deeper[state]:
                parked.append(v)

    out = _Gathered(
        views,
        _running(goal_diff),
        _running(now_diff),
        active,
        warm,
        parked,
        pdu_busy,
        unreachable,
        missing,
    )
    if at_rest and not missing:  # every host free and at rest: nothing here depends on the time
        _GATHERED[pool] = (observed, out)
    else:
        _GATHERED.pop(pool, None)
    return out


def plan(pool: Pool, snap: Snapshot) -> Plan:
    """Decide which hosts to wake and which to move down, with reasons and vetoes."""
    tab = table(pool)
    now = snap.now
    g = _gather(pool, tab, snap)
    views, pdu_busy, missing = g.views, g.pdu_busy, g.missing

    minute_ago = now - timedelta(seconds=60)
    recent = [r for r in snap.recent if r.at > minute_ago]
    all_pdus = tab.pdus
    budget = _Budget(
        wakes=pool.wakes_per_minute - sum(1 for r in recent if r.kind == "wake"),
        sleeps=pool.sleeps_per_minute - sum(1 for r in recent if r.kind == "sleep"),
        pdu_free={p: pool.max_ops_per_pdu - pdu_busy.get(p, 0) for p in all_pdus},
    )
    p = _Pass(pool, snap, tab, views, budget)
    p.have_goal, p.have_now = list(g.have_goal), list(g.have_now)
    p.active, p.warm, p.parked = g.active, g.warm, g.parked
    if missing:
        p.notes.append(f"no observation for {len(missing)} host(s): {', '.join(missing[:5])}")

    stale, current, hist = _demand(pool, snap)
    # Wakes and sleeps share one margin, so a host woken for it never looks idle the
    # moment it is met.
    margin = swing_margin(hist, -pool.peak_hold_s) if pool.peak_hold_s > 0 else 0.0
    fc = forecast(hist, 0.0, current, tab.points, pool.trend_window_s, margin)
    failures = _failed_recently(pool, snap) + g.unreachable
    tripped = failures >= pool.breaker_failures
    floors = window_floors(pool, now, tab.points)
    req_wake = requirements(pool, tab, fc, floors, safe=tripped)
    req_park = _ParkRequirements(pool, tab, hist, current, fc, margin, floors, tripped)
    if stale:
        p.notes.append("load is stale or missing: every sleep is frozen, wakes still allowed")
    if tripped:
        p.notes.append(
            f"breaker: {failures} failure(s) within {fmt_duration(pool.breaker_window_s)}: "
            "sleeps stopped, waking to the whole ladder"
        )

    # Hosts the demand needs now serve at full speed; those kept warm for the forecast
    # margin idle frequency-scaled (still warm: they take a burst at once).
    serving = needed(pool, current)
    _wake(p, req_wake, serving)
    frozen = ("stale-load", "load data is stale") if stale else None
    if tripped:
        frozen = ("breaker", f"{failures} failures within the breaker window")
    # What parking leaves is the pessimistic picture: sleeps counted, wakes not yet.
    have = _park(p, req_park, serving, hist, frozen, margin)
    tiers = [TierStatus("warm", 0.0, req_wake[0], have[0])]
    for t, label in zip(pool.tiers, tab.labels, strict=True):
        i = tab.index_of(t.within_s)
        tiers.append(TierStatus(label, t.within_s, req_wake[i], have[i]))
    for ts in tiers:
        if ts.short:
            p.notes.append(f"reserve short: {ts.name} has {ts.available:g} of {ts.required:g}")
    if p.actions:  # moves wrote into the views' scratch: the next plan gathers afresh
        _GATHERED.pop(pool, None)
    return Plan(
        actions=tuple(p.actions),
        vetoes=tuple(p.vetoes),
        demand=current,
        forecast=fc[-1],
        needed=serving,
        tiers=tuple(tiers),
        notes=tuple(p.notes),
    )


# -- wake ---------------------------------------------------------------------------


def _wake(p: _Pass, req: list[int], serving: int) -> None:
    tab, views = p.tab, p.views
    have = p.have_goal
    active = p.active  # serving hosts should run at full speed: un-scale the cheapest spares
    if active < serving - EPS:
        for v in views:  # views are in serving order: the most efficient come first
            if active >= serving - EPS:
                break
            if v.state is F and not v.blocked:
                p.actions.append(Action(v.host.name, F, A, f"needed to serve: {active:g} of {serving}"))
                active += v.cap

    if all(h >= r - EPS for h, r in zip(have, req, strict=True)):
        return  # the usual tick: nothing is short, so nothing to choose from
    candidates = sorted(
        (v for v in views if not v.blocked and v.state not in WARM and v.ready_goal < INF),
        key=lambda v: (v.ready_goal, v.tab.efficiency, v.obs.wakes, v.host.name),
    )
    blocked = [v for v in views if v.blocked and v.state not in WARM]
    k = 0
    for i, h in enumerate(tab.points):
        while have[i] < req[i] - EPS:
            while k < len(candidates) and candidates[k].ready_goal <= h + EPS:
                k += 1  # already counted at h: waking it cannot help here
            if k == len(candidates):
                for v in blocked:
                    p.veto(v, A, v.blocked, f"would be woken ({_short(req[i], have[i], h)}): {v.why}")
                blocked = []
                break
            v = candidates[k]
            k += 1
            refused = p.budget.refuse(v, waking=True)
            if refused:
                p.veto(v, A, *refused)
                continue
            p.budget.take(v, waking=True)
            reason = _short(req[i], have[i], h) + f"; ready in {fmt_duration(v.ready_goal)}"
            p.actions.append(Action(v.host.name, v.state, A, reason))
            for j in range(i, tab.index_of(v.ready_goal)):
                have[j] += v.cap
            v.ready_goal = 0.0


def _short(required: float, have: float, h: float) -> str:
    where = "warm" if h == 0 else f"ready within {fmt_duration(h)}"
    return f"{where}: {have:g} of {required:g} required"


# -- park ---------------------------------------------------------------------------


class _ParkRequirements:
    """R(h) for parking, computed on first use: most ticks move no host below warm.

    Parking keeps what waking provisions for, and the peak of the idle window (so a
    spare is not parked the moment it stops being needed). It also leaves every rung
    slower than warm room for the largest rise recent history shows within that rung's
    horizon: there a burst is cheap to cover (a host stays in a lighter sleep) and dear
    to miss (a boot). Nothing is woken for it, and the warm floor (which reads point 1)
    stays the forecast's.
    """

    __slots__ = ("args", "base", "park_fc", "req")

    def __init__(
        self,
        pool: Pool,
        tab: PoolTable,
        hist: list[tuple[float, float]],
        current: float,
        fc: list[float],
        margin: float,
        floors: list[int],
        safe: bool,
    ) -> None:
        self.args = (pool, tab, hist, current, fc, margin, floors, safe)
        self.base: list[int] | None = None
        self.park_fc: list[float] = []
        self.req: list[int] | None = None

    def _base(self) -> list[int]:
        """R(h) without the rises: a lower bound everywhere, and exact at the warm floor
        (which reads point 1, where no rise applies) unless the breaker lifts it."""
        if self.base is None:
            pool, tab, hist, _, fc, margin, floors, safe = self.args
            idle_peak = peak_since(hist, -pool.idle_before_sleep_s) + margin
            self.park_fc = [max(f, idle_peak) for f in fc]
            self.base = requirements(pool, tab, self.park_fc, floors, safe)
        return self.base

    def _full(self) -> list[int]:
        if self.req is None:
            pool, tab, hist, current, _, _, floors, safe = self.args
            self._base()  # sets park_fc: the lifted forecast both share, before the rises
            park_fc = list(self.park_fc)
            if len(park_fc) > 2 and hist:
                rises = rises_within(hist, -pool.peak_hold_s, tab.points[2:])
                for j, rise in enumerate(rises, start=2):
                    park_fc[j] = max(park_fc[j], current + rise)
            self.req = requirements(pool, tab, park_fc, floors, safe)
        return self.req

    def first_short(self, have: list[float], cap: float, lo: int, hi: int) -> int | None:
        """The first point in [lo, hi) that moving `cap` away would leave short, or None.

        Most refusals are at the warm floor or the next point: the lower bound finds
        them without the rises (the dearest part), whose answer cannot come earlier."""
        *_, safe = self.args
        base = self._base()
        first = next((i for i in range(lo, hi) if have[i] - cap < base[i] - EPS), None)
        if first is not None and (first == lo or (first == 1 and not safe)):
            return first  # every point before it is exact in `base`, and met
        req = self._full()
        return next((i for i in range(lo, hi) if have[i] - cap < req[i] - EPS), None)


def _park(
    p: _Pass,
    req: _ParkRequirements,
    serving: int,
    hist: list[tuple[float, float]],
    frozen: tuple[str, str] | None,
    margin: float,
) -> list[float]:
    """Move spares down; return what is ready within each point afterwards."""
    pool, now = p.pool, p.snap.now
    have = p.have_now
    woken = {a.host for a in p.actions}
    domains = _DomainGuard(p, serving)

    # Warm hosts in the order they keep serving: most efficient first (views are in
    # serving order already); hosts un-scaled this tick serve first.
    warm = p.warm
    if woken:
        warm = [v for v in warm if v.host.name in woken] + [v for v in warm if v.host.name not in woken]
    elif len(warm) > serving and pool.min_uptime_s > 0:
        warm = _young_serve_first(warm, now, pool.min_uptime_s)
    kept = 0.0
    spares: list[_View] = []
    for v in warm:
        if kept < serving - EPS:
            kept += v.cap
        else:
            spares.append(v)
    spares = _interleave_domains(list(reversed(spares)))

    parked = sorted(p.parked, key=lambda v: (-v.state.depth, v.host.name))
    idle_for: _IdleLookup | None = None  # built on first use: many ticks have no spare

    for v in parked:
        deeper = v.tab.deeper[v.state]
        if not deeper or v.blocked or v.host.name in woken:
            continue
        age = _age(now, v.obs.since)
        dwell = pool.min_dwell_s.get(v.state, 0.0)
        be = v.tab.break_even
        evidence = age + be.get(v.state, 0.0)
        targets = [s for s in deeper if be[s] <= evidence]
        if not targets:
            continue
        if age < dwell:
            p.veto(v, targets[0], "min-dwell", f"in {v.state.value} {_d(age)} of {_d(dwell)}")
            continue
        _try(p, v, targets, have, req, domains, frozen, ("idle", evidence))

    for rank, v in enumerate(spares, start=1):
        if v.host.name in woken:
            continue
        if hist and idle_for is None:
            idle_for = _idle_by_rank(pool, hist, len(warm), margin)
        up = _age(now, v.obs.since)  # warm since its last wake (un-scaling does not reset it)
        idle = idle_for(rank) if idle_for else up  # no history: assume steady since it got here
        targets = [s for s in v.tab.park_targets if v.tab.break_even[s] <= idle]
        if v.blocked:
            if targets:
                p.veto(v, targets[0], v.blocked, v.why)
            continue
        if targets and idle < pool.idle_before_sleep_s:
            why = f"spare for {_d(idle)} of {_d(pool.idle_before_sleep_s)}"
            p.veto(v, targets[0], "idle-before-sleep", why)
            targets = []
        elif targets and up < pool.min_uptime_s:
            p.veto(v, targets[0], "min-uptime", f"up {_d(up)} of {_d(pool.min_uptime_s)}")
            targets = []
        if v.state is A and F in v.tab.ready:
            targets.append(F)  # a spare that may not sleep yet can still slow down
        _try(p, v, targets, have, req, domains, frozen, ("spare for", idle))
    return have


def _young_serve_first(warm: list[_View], now: datetime, min_uptime_s: float) -> list[_View]:
    """Serving order with hosts still inside their minimum uptime ahead of equally
    efficient ones that are not: identical hosts serve alike, so the ones left spare
    should be those a sleep may take."""
    done = [_age(now, v.obs.since) >= min_uptime_s for v in warm]
    if all(done) or not any(done):
        return warm
    order = sorted(range(len(warm)), key=lambda i: (warm[i].tab.efficiency, done[i]))
    return [warm[i] for i in order]


def _try(
    p: _Pass,
    v: _View,
    targets: list[PowerState],
    have: list[float],
    req_park: _ParkRequirements,
    domains: _DomainGuard,
    frozen: tuple[str, str] | None,
    why: tuple[str, float],
) -> None:
    """Move `v` to the deepest target every rule allows; veto the deepest refused one."""
    if not targets or targets[0] == v.state:
        return
    if frozen is not None:
        p.veto(v, targets[0], *frozen)
        return
    first_refusal: tuple[PowerState, str, str] | None = None
    lo = p.tab.index.get(v.ready_now)
    if lo is None:
        lo = p.tab.index_of(v.ready_now)
    spans = p.refused_spans
    src_warm = v.state in WARM
    over_budget = p.budget.refuse(v, waking=False)  # the same for every heavy target
    if over_budget and not (src_warm and F in targets and v.state is not F):
        p.veto(v, targets[0], *over_budget)  # nothing light to fall back to
        return
    for dst in targets:
        if dst == v.state:
            break
        light = _light(v.state, dst)
        if over_budget and not light:
            first_refusal = first_refusal or (dst, *over_budget)
            continue  # only light moves (active <-> freq_scaled) remain possible
        hi = p.tab.index[v.tab.parked_ready[dst]]
        # Availability only falls while parking: a span refused for some capacity stays
        # refused for any host at least that large.
        seen = spans.get((lo, hi))
        short: int | None = None
        if hi <= lo:
            pass  # as ready as now (a governor switch): nothing to keep
        elif seen is not None and v.cap >= seen[0]:
            short = seen[1]
        else:
            short = req_park.first_short(have, v.cap, lo, hi)
            if short is not None:
                spans[(lo, hi)] = (v.cap, short)
        if short is not None:
            first_refusal = first_refusal or (dst, "reserve", p.tab.short_why[short])
            continue
        if dst.depth > v.state.depth and not domains.allows(v, dst):
            first_refusal = first_refusal or (dst, "failure-domain", domains.why)
            continue
        if not light:
            p.budget.take(v, waking=False)
        for i in range(lo, hi):
            have[i] -= v.cap
        domains.moved(v, dst)
        reason = f"{why[0]} {_d(why[1])}; {v.tab.worth[dst]}"
        p.actions.append(Action(v.host.name, v.state, dst, reason))
        v.ready_now = v.tab.parked_ready[dst]
        break
    if first_refusal is not None:
        p.veto(v, *first_refusal)


def _d(seconds: float) -> str:
    if seconds == INF:
        return "ever"
    if seconds >= 120:
        return fmt_duration(round(seconds / 60) * 60)
    return f"{seconds:.0f}s"


def _idle_by_rank(pool: Pool, hist: list[tuple[float, float]], warm_now: int, margin: float) -> _IdleLookup:
    """How long the k-th spare has been unnecessary, from the demand history.

    Spare k stays spare while needed(d + margin) + warm tier <= warm_now - k (the margin
    the wakes provision for, so both sides agree). Walking the history
    from newest to oldest, the running maximum of that level tells, for every k at once,
    the last time it was needed.
    """
    last_needed: dict[int, float] = {}
    level = -1
    inv, floor, warm = 1.0 / pool.target_utilisation, pool.min_active, pool.warm
    for t, d in reversed(hist):
        if level >= warm_now:
            break  # every level a spare can have is known
        lvl = max(floor, math.ceil((d + margin) * inv - EPS)) + warm  # needed(d+margin) + warm
        if lvl > level:
            for x in range(max(level, 0), lvl):
                last_needed.setdefault(x, -t)  # spare at level x was needed -t seconds ago
            level = lvl
    span = max(0.0, -hist[0][0]) if hist else INF
    return _IdleLookup(last_needed, warm_now, span)


@dataclass(slots=True)
class _IdleLookup:
    last_needed: dict[int, float]
    warm_now: int
    span: float

    def __call__(self, rank: int) -> float:
        level = self.warm_now - rank  # spare `rank` is surplus while the pool needs <= level
        return self.last_needed.get(level, self.span)


def _interleave_domains(spares: list[_View]) -> list[_View]:
    """Park round-robin across failure domains so the warm hosts that stay are spread."""
    if len(spares) < 2:
        return spares
    groups: dict[str, list[_View]] = defaultdict(list)
    for v in spares:
        groups[v.host.domains[0] if v.host.domains else ""].append(v)
    if len(groups) <= 1:
        return spares
    order = sorted(groups.values(), key=lambda g: (-len(g), g[0].host.name))
    return [v for row in zip_longest(*order) for v in row if v is not None]


class _DomainGuard:
    """No failure domain may hold more than the rest of the ladder can replace.

    If domain D is lost, the hosts outside D that are ready within the ladder's longest
    deadline must still carry the demand being served now. A move may not break that for
    any domain where it holds; where it cannot hold anyway (a domain carries more than
    the rest of the pool could), the guard does not block parking, it only keeps the
    parking order spreading the warm hosts.
    """

    def __init__(self, p: _Pass, serving: int) -> None:
        self.enabled = p.pool.spread_domains and p.tab.multi_domain
        self.serving = serving
        self.horizon = max((t.within_s for t in p.pool.tiers), default=0.0)
        self.total = 0.0
        self.by_domain: dict[str, float] = defaultdict(float)
        self.why = ""
        self._views: list[_View] | None = p.views if self.enabled else None

    def _count(self) -> None:
        """Totals per domain, computed on first use: most ticks park nothing deep."""
        views, self._views = self._views or [], None
        for v in views:
            if v.ready_now <= self.horizon + EPS:
                self.total += v.cap
                for d in v.host.domains:
                    self.by_domain[d] += v.cap
        if len(self.by_domain) < 2:
            self.enabled = False

    def _drops(self, v: _View, dst: PowerState) -> bool:
        return v.ready_now <= self.horizon + EPS < v.tab.parked_ready[dst]

    def allows(self, v: _View, dst: PowerState) -> bool:
        if not self.enabled or not self._drops(v, dst):
            return True
        if self._views is not None:
            self._count()
        for d, cap in self.by_domain.items():
            outside = self.total - v.cap - (cap - v.cap if d in v.host.domains else cap)
            if outside < self.serving - EPS <= self.total - cap:
                self.why = f"losing {d} would leave {outside:g} ready of {self.serving} serving"
                return False
        return True

    def moved(self, v: _View, dst: PowerState) -> None:
        if self.enabled and self._drops(v, dst):
            if self._views is not None:
                self._count()
            self.total -= v.cap
            for d in v.host.domains:
                self.by_domain[d] -= v.cap
