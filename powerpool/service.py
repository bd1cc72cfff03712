"""The controller service: per pool, the reconcile tick as an APScheduler job. Wiring only.

Each pool gets a DurableJournal (holding the pool's lease), a LiveFleet over the shared
channels and its load source. On start every host the journal does not know is probed,
and every intent a crash left open is watched until its deadline, never re-sent. A
pool's tick, its observation sweep and manual actions take turns on one lock, so the
guards see one consistent record.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger

from powerpool.channels.escalation import Escalator
from powerpool.channels.fleet import LiveFleet
from powerpool.channels.pdu_profile import PduProfile, load_pdu_profiles
from powerpool.channels.snmp_pdu import PduChannel, Snmp
from powerpool.channels.ssh import Readiness, SshChannel
from powerpool.channels.wiring import host_links, pdu_target, ssh_target
from powerpool.channels.wol import WolChannel
from powerpool.clock import Clock, SystemClock
from powerpool.config import Loaded
from powerpool.config.load import PolicyBundle
from powerpool.errors import ChannelError, LeadershipLost
from powerpool.journal.durable import DurableJournal
from powerpool.journal.store import Store, holder_id
from powerpool.metrics import Metrics
from powerpool.model import Health, PowerState
from powerpool.reconcile import Controller, LoadSource, close_finished, meter_s, sweep_s, tick
from powerpool.sources import SshLoadSource, build

log = logging.getLogger("powerpool.service")
JOURNAL_FILE = "journal.sqlite"


@dataclass
class PoolRuntime:
    bundle: PolicyBundle
    journal: DurableJournal
    fleet: LiveFleet
    controller: Controller
    source: LoadSource
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    acting: bool = True  # False once the lease was lost: observe, never act
    meters: dict[str, tuple[float, datetime]] = field(default_factory=dict)  # host -> PDU watts, when
    tick_s: float = 0.0  # how long the last tick took

    @property
    def name(self) -> str:
        return self.bundle.pool.name


class Service:
    def __init__(
        self,
        loaded: Loaded,
        state_dir: Path,
        pdu_profiles: Path,
        *,
        dry_run: bool = False,
        clock: Clock | None = None,
        role: str = "run",
        poll_s: float = 1.0,
    ) -> None:
        self.loaded, self.state_dir, self.dry_run = loaded, state_dir, dry_run
        self.clock: Clock = clock or SystemClock()
        self.pdu_profiles_dir, self.poll_s = pdu_profiles, poll_s
        self.holder = holder_id(role)
        self.store = Store(state_dir / JOURNAL_FILE)
        self.metrics = Metrics()
        self.pools: dict[str, PoolRuntime] = {}
        self.scheduler: AsyncIOScheduler | None = None
        self._running: set[asyncio.Task[Any]] = set()  # scheduled jobs in progress
        self._walking: dict[tuple[str, int, str, str], asyncio.Task[dict[int, float]]] = {}
        self._walked: dict[tuple[str, int, str, str], tuple[float, dict[int, float]]] = {}
        self.started = time.monotonic()

    # -- start and stop -----------------------------------------------------------------

    async def open(self, pools: list[str] | None = None, look: bool = True) -> None:
        """Channels, journals (taking each pool's lease) and, with `look`, the first
        observation of hosts the journal does not know and of intents left open."""
        self.snmp = Snmp()
        self.ssh = SshChannel(poll_s=self.poll_s)
        self.escalator = Escalator(self.ssh, WolChannel())
        profiles: dict[str, PduProfile] = load_pdu_profiles(self.pdu_profiles_dir)
        try:
            for name, bundle in self.loaded.policies.items():
                if pools is None or name in pools:
                    self.pools[name] = await self._pool(bundle, profiles)
        except BaseException:
            await self.close()
            raise
        for rt in self.pools.values():
            if look:
                await self._first_look(rt)

    async def _pool(self, bundle: PolicyBundle, profiles: dict[str, PduProfile]) -> PoolRuntime:
        pdus: dict[str, PduChannel] = {}
        for name, spec in bundle.spec.pdus.items():
            ch = PduChannel(self.snmp, pdu_target(bundle, name), profiles.get(spec.family), self.poll_s / 4)
            if ch.profile is None:
                try:
                    await ch.detect(profiles)
                except ChannelError as e:
                    log.warning("pdu %s: %s; its outlets are not used until a restart", name, e)
                    continue
            pdus[name] = ch
        links = {h.name: host_links(bundle, h, pdus) for h in bundle.pool.hosts}
        fleet = LiveFleet(links, self.escalator, self.clock, self.poll_s)
        now = self.clock.now()
        journal = DurableJournal(bundle.pool, self.store, now, self.holder)
        for host, (boot_id, suspends) in journal.baselines.items():
            self.escalator.before.setdefault(host, Readiness(boot_id, suspends))
        pool_name = bundle.pool.name
        journal.on_outcome = lambda it, reached, at: self.metrics.outcome(pool_name, it, reached, at)
        if bundle.spec.alerts.webhook:
            self.metrics.webhooks[pool_name] = bundle.spec.alerts.webhook
        source = build(bundle.spec.load, lambda: self._ssh_source(bundle, journal))
        controller = Controller(bundle.pool, self.clock, source, fleet, journal, dry_run=self.dry_run)
        journal.audit(now, None, "start", f"controller {self.holder} epoch {journal.epoch}", "controller")
        return PoolRuntime(bundle, journal, fleet, controller, source)

    def _ssh_source(self, bundle: PolicyBundle, journal: DurableJournal) -> LoadSource:
        hosts = {h.name: h for h in bundle.pool.hosts}

        def warm() -> list:  # type: ignore[type-arg]
            return [
                ssh_target(bundle, hosts[o.name])
                for o in journal.snapshot(self.clock.now()).hosts
                if o.state.warm and o.transition is None
            ]

        return SshLoadSource(self.ssh, warm, bundle.spec.load.command)

    async def _first_look(self, rt: PoolRuntime) -> None:
        """Probe hosts the journal has never seen; watch intents a crash left open."""
        j = rt.journal
        unknown = [h for h in j.observations() if h not in j.known and h not in j.open]
        found = await asyncio.gather(*(rt.fleet.observe(h) for h in unknown), return_exceptions=True)
        now = self.clock.now()
        for host, state in zip(unknown, found, strict=True):
            if isinstance(state, PowerState):
                j.observe(host, state, now)
            else:  # silent and no outlet says why: assume off, keep it out until seen
                j.observe(host, PowerState.OFF, now, Health.UNKNOWN)
        await self.read_meters(rt.name)
        for it in list(j.open.values()):
            log.info("pool %s: re-observing %s (open intent %s->%s)", rt.name, it.host, it.src, it.dst)
            rt.fleet.resume(it)

    async def close(self) -> None:
        if self.scheduler is not None and self.scheduler.running:
            self.scheduler.shutdown(wait=False)
        if self._running:
            await asyncio.wait(set(self._running), timeout=30.0)
        for rt in self.pools.values():
            await rt.fleet.drain(timeout_s=60.0)
            async with rt.lock:
                await self._collect(rt)
            rt.journal.close()
            closer = getattr(rt.source, "close", None)
            if closer is not None:
                await closer()
        if hasattr(self, "ssh"):
            self.ssh.close()
            await self.snmp.__aexit__()
        self.store.close()

    # -- the jobs -----------------------------------------------------------------------

    def schedule(self) -> AsyncIOScheduler:
        sched = AsyncIOScheduler(
            job_defaults={"max_instances": 1, "coalesce": True, "misfire_grace_time": 5},
        )
        for name, rt in self.pools.items():
            pool = rt.bundle.pool
            for job, every in (
                (self.tick, pool.tick_s),
                (self.sweep, sweep_s(pool)),
                (self.read_meters, meter_s(pool)),
            ):
                sched.add_job(
                    self._job, "interval", seconds=every, args=[job, name], id=f"{job.__name__}:{name}"
                )
            for w in pool.windows:  # tick at once when a schedule window opens or closes
                days = ",".join(str(d) for d in sorted(w.days))
                for minute in (w.start_min, w.end_min):
                    trigger = CronTrigger(
                        day_of_week=days, hour=minute // 60, minute=minute % 60, timezone=pool.tz
                    )
                    sched.add_job(
                        self._job, trigger, args=[self.tick, name], id=f"window:{name}:{w.name}:{minute}"
                    )
        self.scheduler = sched
        return sched

    async def _job(self, fn: Callable[[str], Awaitable[None]], name: str) -> None:
        """Run a scheduled job where `close` can wait for it (the scheduler's shutdown
        does not wait for coroutines, and a cancelled tick or walk is noise)."""
        task = asyncio.current_task()
        assert task is not None
        self._running.add(task)
        try:
            await fn(name)
        finally:
            self._running.discard(task)

    async def tick(self, name: str) -> None:
        rt = self.pools[name]
        async with rt.lock:
            t0 = time.monotonic()
            try:
                if rt.acting:
                    rt.journal.renew(self.clock.now())
                await tick(rt.controller)
            except LeadershipLost as e:
                log.error("%s", e)
                rt.acting, rt.controller.dry_run = False, True
            self._quarantine(rt)
            self._keep_baselines(rt)
            rt.tick_s = time.monotonic() - t0
            self._after_tick(rt)

    def _keep_baselines(self, rt: PoolRuntime) -> None:
        """Journal the proof-of-return baselines the channels took since the last tick."""
        for host in rt.controller.hosts:
            before = self.escalator.before.get(host)
            if before is not None:
                rt.journal.save_baseline(host, before.boot_id, before.suspends)

    async def _collect(self, rt: PoolRuntime) -> None:
        """Close intents whose verification finished (used on shutdown)."""
        close_finished(rt.controller, self.clock.now())
        self._quarantine(rt)
        self._keep_baselines(rt)

    def _quarantine(self, rt: PoolRuntime) -> None:
        now = self.clock.now()
        for host, why in list(rt.fleet.fatal.items()):
            rt.journal.set_health(host, Health.QUARANTINED, now, why)
            del rt.fleet.fatal[host]
            self.metrics.alert(rt.name, host, "quarantined", why)

    def _after_tick(self, rt: PoolRuntime) -> None:
        plan = rt.controller.last_plan
        for it in rt.controller.failed:
            log.warning("pool %s: %s %s->%s failed", rt.name, it.host, it.src, it.dst)
            self.metrics.alert(rt.name, it.host, "transition failed", f"{it.src}->{it.dst}")
        if plan is not None:
            if rt.controller.dry_run:
                for a in plan.actions:
                    log.info(
                        "pool %s: would %s %s %s->%s: %s", rt.name, a.kind, a.host, a.src, a.dst, a.reason
                    )
            self.metrics.tick(rt, self.clock.now())

    async def read_meters(self, name: str) -> None:
        """Each host's draw from its outlets' meters, one walk per PDU; a host counts as
        measured only when every one of its outlets reported."""
        rt = self.pools[name]
        pdus = {id(pdu): pdu for links in rt.fleet.links.values() for pdu, _ in links.outlets}
        walks = await asyncio.gather(*(self._walk(p) for p in pdus.values()), return_exceptions=True)
        read = {k: w for k, w in zip(pdus, walks, strict=True) if isinstance(w, dict)}
        now = self.clock.now()
        for host, links in rt.fleet.links.items():
            got = [read.get(id(pdu), {}).get(n) for pdu, n in links.outlets]
            if got and all(w is not None for w in got):
                rt.meters[host] = (sum(w for w in got if w is not None), now)

    async def _walk(self, pdu: PduChannel) -> dict[int, float]:
        """One PDU's meters, shared by every pool on it: a walk in flight is joined, and
        one finished in the last 10 s is reused, so the agent's time goes to switching."""
        key = pdu.target.key
        done = self._walked.get(key)
        if done is not None and time.monotonic() - done[0] < 10.0:
            return done[1]
        task = self._walking.get(key)
        if task is None:
            task = self._walking[key] = asyncio.ensure_future(pdu.meters())
            task.add_done_callback(lambda _: self._walking.pop(key, None))
        watts = await asyncio.shield(task)
        self._walked[key] = (time.monotonic(), watts)
        return watts

    async def sweep(self, name: str) -> None:
        """Re-probe resting hosts: drift (woken by hand, lost power) and unreachable ones."""
        rt = self.pools[name]
        hosts = [h.name for h in rt.bundle.pool.hosts if h.name not in rt.journal.open]
        found = await asyncio.gather(
            *(rt.fleet.observe(h, rt.journal.state(h).state) for h in hosts), return_exceptions=True
        )
        async with rt.lock:
            now = self.clock.now()
            for host, seen in zip(hosts, found, strict=True):
                o = rt.journal.state(host)
                if host in rt.journal.open or o.health in (Health.FAILED, Health.QUARANTINED):
                    continue
                if isinstance(seen, PowerState):
                    rt.journal.observe(host, seen, now)
                elif o.state.warm:
                    rt.journal.set_health(host, Health.UNKNOWN, now, "does not answer")

    # -- reading ------------------------------------------------------------------------

    def runtime(self, host: str) -> PoolRuntime:
        for rt in self.pools.values():
            if host in rt.journal:
                return rt
        raise KeyError(host)

    def now(self) -> datetime:
        return self.clock.now()
