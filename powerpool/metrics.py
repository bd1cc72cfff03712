"""Prometheus metrics and alerts for the service (one registry per service).

Pool power is estimated from the hardware profiles (hosts in transition at their
transition watts); the energy saved counter integrates always-on minus that estimate
between ticks. Alerts (failed transitions, quarantines, the breaker) are logged, counted
and, when the policy names a webhook, POSTed to it as JSON.
"""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime
from typing import TYPE_CHECKING, Any

import aiohttp
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from powerpool.journal import Intent
from powerpool.model import LADDER, PowerState
from powerpool.planner.layout import always_on, watts
from powerpool.reconcile import meter_s

if TYPE_CHECKING:
    from powerpool.service import PoolRuntime

log = logging.getLogger("powerpool.alerts")
WAKE_BUCKETS = (1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600)


class Metrics:
    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        pool = ["pool"]
        self.hosts = Gauge("powerpool_hosts", "Hosts per pool and power state", [*pool, "state"], registry=r)
        self.moving = Gauge("powerpool_hosts_in_transition", "Hosts with an open intent", pool, registry=r)
        self.power = Gauge(
            "powerpool_pool_power_watts",
            "Pool draw: the PDU meters when every host is metered, else the profile estimate",
            pool,
            registry=r,
        )
        self.measured = Gauge(
            "powerpool_pool_power_measured", "1 when the pool draw comes from PDU meters", pool, registry=r
        )
        self.host_watts = Gauge(
            "powerpool_host_watts", "A host's draw from its outlets' meters", [*pool, "host"], registry=r
        )
        self.saved = Counter("powerpool_energy_saved_joules", "Saved against always-on", pool, registry=r)
        self.transitions = Counter(
            "powerpool_transitions", "Transitions by result", [*pool, "src", "dst", "result"], registry=r
        )
        self.wake_latency = Histogram(
            "powerpool_wake_latency_seconds", "Wake intent to verified ready", pool,
            buckets=WAKE_BUCKETS, registry=r,
        )  # fmt: skip
        self.reserve = Gauge(
            "powerpool_reserve_hosts", "Warm vs needed per reserve tier", [*pool, "tier", "kind"], registry=r
        )
        self.load = Gauge("powerpool_load", "Last load reading (policy units)", pool, registry=r)
        self.load_age = Gauge("powerpool_load_age_seconds", "Age of the last load reading", pool, registry=r)
        self.tick_s = Gauge("powerpool_tick_seconds", "Duration of the last tick", pool, registry=r)
        self.leader = Gauge("powerpool_leader", "1 while this controller holds the lease", pool, registry=r)
        self.alerts = Counter("powerpool_alerts", "Alerts raised", [*pool, "kind"], registry=r)
        self._last: dict[str, tuple[datetime, float, float]] = {}  # pool -> (at, watts, always-on)
        self.webhooks: dict[str, str] = {}  # pool -> URL
        self._tasks: set[asyncio.Task[None]] = set()
        self._tripped: set[str] = set()  # pools whose breaker is open (alert once per trip)

    def pool_watts(self, pool: str) -> float:
        """The pool's draw at its last tick, metered or estimated (0 before the first)."""
        last = self._last.get(pool)
        return last[1] if last else 0.0

    def render(self) -> bytes:
        return generate_latest(self.registry)

    def outcome(self, pool: str, it: Intent, reached: PowerState | None, now: datetime) -> None:
        self.transitions.labels(pool, it.src.value, it.dst.value, "ok" if reached else "failed").inc()
        if reached is not None and reached.warm and not it.src.warm:
            self.wake_latency.labels(pool).observe((now - it.started).total_seconds())

    def tick(self, rt: PoolRuntime, now: datetime) -> None:
        name, pool, j = rt.name, rt.bundle.pool, rt.journal
        states = {h: o.state for h, o in j.observations().items()}
        for s in LADDER:
            self.hosts.labels(name, s.value).set(sum(1 for v in states.values() if v is s))
        self.moving.labels(name).set(len(j.open))
        load = j.load or 0.0
        draw = watts(pool, states, load)
        for host, it in j.open.items():  # moving hosts draw their transition watts
            prof = pool.profiles[rt.controller.hosts[host].profile]
            draw += prof.moving_w(it.dst if not it.dst.warm else it.src) - prof.watts(states[host])
        base = always_on(pool, load)
        fresh = measured(rt, now)
        for host, w in fresh.items():
            self.host_watts.labels(name, host).set(w)
        metered = whole(rt, fresh)
        if metered:
            draw = sum(fresh.values())
        self.measured.labels(name).set(1.0 if metered else 0.0)
        self.power.labels(name).set(draw)
        last = self._last.get(name)
        if last is not None:
            dt = (now - last[0]).total_seconds()
            self.saved.labels(name).inc(max(0.0, (last[2] - last[1]) * dt))
        self._last[name] = (now, draw, base)
        plan = rt.controller.last_plan
        if plan is not None:
            for t in plan.tiers:
                self.reserve.labels(name, t.name, "required").set(t.required)
                self.reserve.labels(name, t.name, "available").set(t.available)
            breaker = [n for n in plan.notes if n.startswith("breaker")]
            if breaker and name not in self._tripped:
                self.alert(name, None, "breaker", breaker[0])
            self._tripped.discard(name) if not breaker else self._tripped.add(name)
        if j.load is not None:
            self.load.labels(name).set(j.load)
        if j.load_at is not None:
            self.load_age.labels(name).set((now - j.load_at).total_seconds())
        self.tick_s.labels(name).set(rt.tick_s)
        self.leader.labels(name).set(1.0 if rt.acting else 0.0)

    def alert(self, pool: str, host: str | None, kind: str, detail: str) -> None:
        self.alerts.labels(pool, kind).inc()
        event: dict[str, Any] = {"pool": pool, "host": host, "kind": kind, "detail": detail}
        log.warning("alert %s", json.dumps(event))
        url = self.webhooks.get(pool)
        if url:
            task = asyncio.ensure_future(_post(url, event))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


def measured(rt: PoolRuntime, now: datetime) -> dict[str, float]:
    """The hosts' metered watts that are recent enough to trust (three meter reads)."""
    limit = 3 * meter_s(rt.bundle.pool)
    return {h: w for h, (w, at) in rt.meters.items() if (now - at).total_seconds() <= limit}


def whole(rt: PoolRuntime, fresh: dict[str, float]) -> bool:
    """Every host of the pool metered: the pool's draw can be the meters' sum."""
    return len(fresh) == len(rt.bundle.pool.hosts) > 0


async def _post(url: str, event: dict[str, Any]) -> None:
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as s:
            await s.post(url, json=event)
    except (aiohttp.ClientError, TimeoutError) as e:
        log.warning("webhook %s: %s", url, e)
