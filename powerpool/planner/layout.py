"""Where the planner settles a pool at a steady load: the "fully parked" picture.

Used by `powerpool check` to estimate watts always-on vs parked, and by tests. Runs the
real planner repeatedly, applying each plan at once, as if a long quiet time passed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from powerpool.model import HostObservation, Pool, PowerState, Snapshot
from powerpool.planner.core import plan

_EPOCH = datetime(2000, 1, 3, 3, 0, tzinfo=UTC)  # a Monday night: outside usual windows


def settle(pool: Pool, load: float = 0.0, now: datetime = _EPOCH) -> dict[str, PowerState]:
    """Host -> state once the planner has nothing left to do at this steady load."""
    long_ago = now - timedelta(days=30)
    states = {h.name: PowerState.ACTIVE for h in pool.hosts}
    for _ in range(4 * len(pool.hosts) + 8):
        obs = tuple(HostObservation(n, s, long_ago) for n, s in states.items())
        snap = Snapshot(now, load, now, obs, history=((now.timestamp() - 86400.0, load),))
        actions = plan(pool, snap).actions
        if not actions:
            break
        for a in actions:
            states[a.host] = a.dst
    return states


def watts(pool: Pool, states: dict[str, PowerState], load: float = 0.0) -> float:
    """Pool draw for a layout: resting watts, with the load spread over active hosts."""
    active = [h for h in pool.hosts if states[h.name] is PowerState.ACTIVE]
    cap = sum(pool.profiles[h.profile].capacity for h in active) or 1.0
    util = min(1.0, load / pool.capacity_per_host / cap)
    return sum(pool.profiles[h.profile].watts(states[h.name], util) for h in pool.hosts)


def always_on(pool: Pool, load: float = 0.0) -> float:
    return watts(pool, {h.name: PowerState.ACTIVE for h in pool.hosts}, load)
