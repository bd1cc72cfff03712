"""Manual actions: the operator's wake, sleep, hold and release, behind the same guards
and the same per-pool lock as the controller.

The guards: a host has one transition at a time; held, excluded, failed and quarantined
hosts are refused unless `force` (journaled with who and why); a sleep that would leave
the warm floor (needed + warm) short is refused with the rule named, force or not. A
manual wake or sleep also holds the host for `hold_s`, so the controller does not undo
it the next tick.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from typing import Any

from powerpool.errors import PowerpoolError
from powerpool.model import (
    Action,
    Health,
    Hold,
    HoldKind,
    PowerState,
    Transition,
    can_transition,
)
from powerpool.planner import plan
from powerpool.reconcile import deadline_s
from powerpool.service import PoolRuntime, Service

DEFAULT_HOLD_S = 3600.0


class Refusal(PowerpoolError):
    """A guard said no; `rule` names it."""

    def __init__(self, host: str, rule: str, detail: str) -> None:
        self.host, self.rule, self.detail = host, rule, detail
        super().__init__(f"{host}: refused by {rule}: {detail}")


def runtime_of(svc: Service, host: str) -> PoolRuntime:
    try:
        return svc.runtime(host)
    except KeyError:
        known = sorted(h.name for rt in svc.pools.values() for h in rt.bundle.pool.hosts)
        raise Refusal(host, "unknown host", f"not in any pool ({', '.join(known[:8])}...)") from None


def check_free(rt: PoolRuntime, host: str, force: bool) -> None:
    o = rt.journal.state(host)
    if host in rt.journal.open:
        it = rt.journal.open[host]
        raise Refusal(host, "one transition at a time", f"already moving {it.src}->{it.dst} ({it.who})")
    if rt.controller.hosts[host].excluded and not force:
        raise Refusal(host, "excluded", "the policy excludes it from automation; use --force")
    if o.hold is not None and not force:
        raise Refusal(
            host, "held", f"{o.hold.kind.value} hold by {o.hold.owner}: {o.hold.reason}; use --force"
        )
    if o.health in (Health.FAILED, Health.QUARANTINED) and not force:
        raise Refusal(host, o.health.value, "release it after fixing, or use --force")


def check_warm_floor(rt: PoolRuntime, host: str, dst: PowerState) -> None:
    """Refuse a move that leaves the warm tier short, counting the host as already gone."""
    now = rt.controller.clock.now()
    snap = rt.journal.snapshot(now)
    hosts = tuple(replace(o, transition=Transition(dst, now)) if o.name == host else o for o in snap.hosts)
    after = plan(rt.bundle.pool, replace(snap, hosts=hosts)).tiers[0]
    if after.short:
        raise Refusal(
            host,
            "warm floor (needed + warm)",
            f"the pool would have {after.available:g} warm host-capacities, it needs {after.required:g}",
        )


async def move(
    svc: Service,
    host: str,
    dst: PowerState,
    who: str,
    reason: str = "",
    force: bool = False,
    hold_s: float = DEFAULT_HOLD_S,
) -> dict[str, Any]:
    """Start a manual transition (verified later, like the controller's own)."""
    rt = runtime_of(svc, host)
    async with rt.lock:
        check_free(rt, host, force)
        o = rt.journal.state(host)
        src = o.state
        pool = rt.bundle.pool
        if src is dst:
            return {"host": host, "state": dst.value, "noop": True}
        prof = pool.profiles[rt.controller.hosts[host].profile]
        if not dst.warm and (dst not in pool.allowed or not prof.supports(dst)):
            raise Refusal(host, "allowed states", f"{dst.value} is not allowed for this host's pool/profile")
        if not can_transition(src, dst):
            raise Refusal(host, "transition table", f"no direct move {src.value}->{dst.value}; wake it first")
        if not dst.warm or (src.warm and dst is PowerState.FREQ_SCALED):
            check_warm_floor(rt, host, dst)
        now = svc.now()
        why = f"manual by {who}" + (f": {reason}" if reason else "") + (" (FORCED)" if force else "")
        if force:
            rt.journal.audit(now, host, "force", why, who)
        action = Action(host, src, dst, why)
        if hold_s > 0:
            kind = HoldKind.AWAKE if dst.warm else HoldKind.ASLEEP
            rt.journal.set_hold(host, Hold(kind, now + timedelta(seconds=hold_s), why, who), now)
        it = rt.journal.intent(action, now, deadline_s(pool, rt.controller.hosts[host], action), who)
        await rt.fleet.start(action, it)
        return {"host": host, "from": src.value, "to": dst.value, "deadline": it.deadline.isoformat()}


async def wake_n(svc: Service, pool: str, n: int, who: str, reason: str = "") -> list[dict[str, Any]]:
    """Wake the n parked hosts that come back fastest (shallowest state first)."""
    rt = svc.pools.get(pool)
    if rt is None:
        raise Refusal(pool, "unknown pool", f"pools: {', '.join(svc.pools)}")
    parked = sorted(
        (o for o in rt.journal.snapshot(svc.now()).hosts if not o.state.warm and o.transition is None),
        key=lambda o: (o.state.depth, o.wakes),
    )
    ok = [o.name for o in parked if o.hold is None and o.health is Health.OK][:n]
    return [await move(svc, h, PowerState.ACTIVE, who, reason) for h in ok]


async def hold(svc: Service, host: str, kind: HoldKind, hold_s: float | None, reason: str, who: str) -> None:
    rt = runtime_of(svc, host)
    async with rt.lock:
        now = svc.now()
        until = now + timedelta(seconds=hold_s) if hold_s else None
        rt.journal.set_hold(host, Hold(kind, until, reason, who), now)


async def release(svc: Service, host: str, who: str) -> None:
    """Drop the hold and clear failed/quarantined health (the operator fixed the host)."""
    rt = runtime_of(svc, host)
    async with rt.lock:
        now = svc.now()
        rt.journal.set_hold(host, None, now)
        if rt.journal.state(host).health is not Health.OK:
            rt.journal.set_health(host, Health.OK, now, f"released by {who}")
