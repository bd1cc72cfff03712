"""`powerpool qualify`: before a host is trusted to sleep, one supervised round trip per
parked state through the exact channels the controller will use, measured.

The host is held `excluded` while it runs, so the controller leaves it alone; each leg
is journaled like any transition (intent committed before the command, outcome after
verification), so the wake statistics learn the measured latencies. A leg that fails
leaves the host `failed`: it is not enrolled until an operator fixes it and releases it.
The measured figures are compared with the hardware profile, which the planner trusts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from typing import Any

from powerpool import manual
from powerpool.errors import ChannelError, FatalChannelError
from powerpool.model import Action, Health, Hold, HoldKind, PowerState
from powerpool.reconcile import deadline_s
from powerpool.service import PoolRuntime, Service

A = PowerState.ACTIVE


@dataclass
class Leg:
    """One round trip: into `state` and back to active (or only back, for a parked start)."""

    state: str
    profile_enter_s: float | None
    profile_ready_s: float
    enter_s: float | None = None
    ready_s: float | None = None
    ok: bool = False
    detail: str = ""


@dataclass
class Qualification:
    host: str
    pool: str
    legs: list[Leg]
    done: bool = False
    passed: bool = False
    error: str = ""

    def view(self) -> dict[str, Any]:
        return {
            "host": self.host, "pool": self.pool, "done": self.done, "passed": self.passed,
            "enrolled": self.done and self.passed, "error": self.error,
            "legs": [asdict(leg) for leg in self.legs],
        }  # fmt: skip


class _LegFailed(Exception):
    pass


async def prepare(svc: Service, host: str, states: list[PowerState], who: str) -> Qualification:
    """The guards (the same as a manual sleep), the legs to run, and the excluded hold."""
    rt = manual.runtime_of(svc, host)
    async with rt.lock:
        manual.check_free(rt, host, force=False)
        pool, h = rt.bundle.pool, rt.controller.hosts[host]
        prof = pool.profiles[h.profile]
        parked = sorted((s for s in pool.allowed if not s.warm and prof.supports(s)), key=lambda s: s.depth)
        for s in states:
            if s.warm or s not in parked:
                allowed = ", ".join(p.value for p in parked) or "none"
                raise manual.Refusal(
                    host, "allowed states", f"{s.value} is not a parked state here ({allowed})"
                )
        states = states or parked
        if not states:
            raise manual.Refusal(host, "allowed states", "the pool parks this host in no state")
        now = svc.now()
        start = rt.journal.state(host).state
        legs = [] if start.warm else [Leg(start.value, None, prof.ready_s[start])]
        legs += [Leg(s.value, prof.enter_s[s], prof.ready_s[s]) for s in states]
        if start.warm:
            manual.check_warm_floor(rt, host, states[-1])
        moves = ([] if start.warm else [(start, A)]) + [m for s in states for m in ((A, s), (s, A))]
        budget = sum(deadline_s(pool, h, Action(host, a, b, "")) for a, b in moves)
        hold = Hold(HoldKind.EXCLUDED, now + timedelta(seconds=budget), f"qualifying (by {who})", who)
        rt.journal.set_hold(host, hold, now)
    return Qualification(host, pool.name, legs)


async def run(
    svc: Service, q: Qualification, who: str, progress: Callable[[Qualification], None] | None = None
) -> Qualification:
    """Drive every leg in turn; stop at the first failure. Always ends the hold."""
    rt = manual.runtime_of(svc, q.host)
    try:
        for leg in q.legs:
            state = PowerState(leg.state)
            if rt.journal.state(q.host).state.warm:
                leg.enter_s = await _step(svc, rt, q.host, state, who)
            leg.ready_s = await _step(svc, rt, q.host, A, who)
            leg.ok, leg.detail = True, _compare(leg)
            rt.journal.qualified(q.host, svc.now(), state, leg.enter_s, leg.ready_s, True, leg.detail, who)
            if progress:
                progress(q)
        q.passed = True
    except _LegFailed as e:
        failed = next(leg for leg in q.legs if not leg.ok)
        failed.detail, q.error = str(e), str(e)
        rt.journal.qualified(
            q.host, svc.now(), PowerState(failed.state), failed.enter_s, None, False, str(e), who
        )
    finally:
        async with rt.lock:
            rt.journal.set_hold(q.host, None, svc.now())
        q.done = True
        if progress:
            progress(q)
    return q


async def _step(svc: Service, rt: PoolRuntime, host: str, dst: PowerState, who: str) -> float:
    """One journaled, verified transition through the host's channels; its seconds."""
    async with rt.lock:
        src = rt.journal.state(host).state
        action = Action(host, src, dst, f"qualify by {who}")
        it = rt.journal.intent(
            action, svc.now(), deadline_s(rt.bundle.pool, rt.controller.hosts[host], action), who
        )
    budget = (it.deadline - it.started).total_seconds()
    try:
        out = await svc.escalator.drive(rt.fleet.links[host], src, dst, budget)
    except (ChannelError, TimeoutError) as e:
        async with rt.lock:
            if host in rt.journal.open:
                rt.journal.outcome(host, None, svc.now(), f"qualify: {e}")
            if isinstance(e, FatalChannelError):
                rt.journal.set_health(host, Health.QUARANTINED, svc.now(), str(e))
        raise _LegFailed(f"{src.value}->{dst.value}: {e}") from None
    async with rt.lock:
        if host not in rt.journal.open:  # the tick failed it for its deadline meanwhile
            raise _LegFailed(f"{src.value}->{dst.value}: deadline passed")
        rt.journal.outcome(
            host, PowerState(out.reached), svc.now(), f"{out.channel}: verified in {out.seconds:.1f} s"
        )
    return out.seconds


def _compare(leg: Leg) -> str:
    """Measured against the profile: slower than the profile means the planner is too hopeful."""
    notes = []
    for what, got, want in (
        ("enter", leg.enter_s, leg.profile_enter_s),
        ("ready", leg.ready_s, leg.profile_ready_s),
    ):
        if got is None or want is None:
            continue
        verdict = "within the profile" if got <= want else "SLOWER than the profile: raise it"
        notes.append(f"{what} {got:.1f} s vs {want:g} s ({verdict})")
    return "; ".join(notes)


async def qualify(
    svc: Service, host: str, states: list[PowerState], who: str,
    progress: Callable[[Qualification], None] | None = None,
) -> Qualification:  # fmt: skip
    return await run(svc, await prepare(svc, host, states, who), who, progress)


def spawn(svc: Service, q: Qualification, who: str) -> asyncio.Task[Qualification]:
    """Run a prepared qualification in the service (the API returns at once)."""
    return asyncio.ensure_future(run(svc, q, who))
