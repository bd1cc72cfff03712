"""Shared builders: pools and snapshots made in code, so planner tests read like tables."""

from __future__ import annotations

import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from powerpool.model import (
    Health,
    Hold,
    HoldKind,
    Host,
    HostObservation,
    Outlet,
    Pool,
    PowerState,
    Profile,
    Snapshot,
    Tier,
    Transition,
)

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 21, 3, 0, tzinfo=UTC)  # a Saturday, 03:00 UTC
S = PowerState


def profile(name: str = "p", capacity: float = 1.0, **over: Any) -> Profile:
    """A modern-2s-like profile; pass e.g. ready_s={...} to override a table."""
    base: dict[str, Any] = dict(
        name=name,
        description="test profile",
        capacity=capacity,
        active_idle=150.0,
        active_peak=500.0,
        power={
            S.ACTIVE: 150.0,
            S.FREQ_SCALED: 138.0,
            S.DISK_STANDBY: 140.0,
            S.SLEEP: 12.0,
            S.HIBERNATE: 9.0,
            S.OFF: 9.0,
            S.UNPOWERED: 0.0,
        },
        ready_s={
            S.ACTIVE: 0.0,
            S.FREQ_SCALED: 0.5,
            S.DISK_STANDBY: 12.0,
            S.SLEEP: 15.0,
            S.HIBERNATE: 120.0,
            S.OFF: 180.0,
            S.UNPOWERED: 240.0,
        },
        enter_s={
            S.ACTIVE: 0.0,
            S.FREQ_SCALED: 0.5,
            S.DISK_STANDBY: 3.0,
            S.SLEEP: 10.0,
            S.HIBERNATE: 45.0,
            S.OFF: 45.0,
            S.UNPOWERED: 50.0,
        },
    )
    base.update(over)
    return Profile(**base)


def make_pool(
    n: int = 10,
    *,
    allowed: tuple[PowerState, ...] = tuple(S),
    tiers: tuple[Tier, ...] = (),
    pdus: int = 0,
    racks: int = 0,
    prof: Profile | None = None,
    **over: Any,
) -> Pool:
    """n hosts named h00.., capacity 100 load units each, generous rate limits."""
    prof = prof or profile()
    hosts = []
    for i in range(n):
        outlets = (Outlet(f"pdu{i % pdus}", i // pdus + 1),) if pdus else ()
        rack = [f"rack:r{i % racks}"] if racks else []
        domains = tuple(rack + [f"pdu:{o.pdu}" for o in outlets])
        hosts.append(
            Host(f"h{i:02d}", f"127.0.0.{i + 1}", f"02:00:00:00:00:{i:02x}", prof.name, outlets, domains)
        )
    kw: dict[str, Any] = dict(
        name="test",
        hosts=tuple(hosts),
        profiles={prof.name: prof},
        capacity_per_host=100.0,
        target_utilisation=1.0,
        allowed=frozenset(allowed),
        tiers=tiers,
        idle_before_sleep_s=600.0,
        min_uptime_s=600.0,
        wakes_per_minute=100,
        sleeps_per_minute=100,
        max_ops_per_pdu=100,
        peak_hold_s=0.0,  # rules are tested in isolation; the forecast knob has its own tests
    )
    kw.update(over)
    return Pool(**kw)


def obs(
    name: str,
    state: PowerState = S.ACTIVE,
    ago: float = 7200.0,
    *,
    health: Health = Health.OK,
    hold: HoldKind | None = None,
    to: PowerState | None = None,
    started_ago: float = 1.0,
    wakes: int = 0,
) -> HostObservation:
    return HostObservation(
        name,
        state,
        NOW - timedelta(seconds=ago),
        health,
        Hold(hold, None, "test hold", "tester") if hold else None,
        Transition(to, NOW - timedelta(seconds=started_ago)) if to else None,
        wakes,
    )


def snapshot(
    pool: Pool,
    load: float | None,
    states: dict[str, Any] | None = None,
    *,
    age: float = 5.0,
    history: tuple[tuple[float, float], ...] = (),
    **kw: Any,
) -> Snapshot:
    """All hosts active for 2 h unless `states` says otherwise (a state or an obs)."""
    states = states or {}
    hosts = []
    for h in pool.hosts:
        v = states.get(h.name, S.ACTIVE)
        hosts.append(v if isinstance(v, HostObservation) else obs(h.name, v))
    return Snapshot(
        now=NOW,
        load=load,
        load_observed_at=NOW - timedelta(seconds=age),
        hosts=tuple(hosts),
        history=tuple((NOW.timestamp() - a, v) for a, v in history),
        **kw,
    )


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    """A scratch copy of policies/ and hardware/ to break on purpose."""
    for d in ("policies", "hardware"):
        shutil.copytree(REPO / d, tmp_path / d)
    return tmp_path
