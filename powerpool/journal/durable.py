"""The journal the live service uses: the in-memory record, written through to SQLite.

Every change is committed before the in-memory view moves, so what the planner sees never
runs ahead of what survives a crash. An intent is written (with the fencing epoch of
this controller's lease, checked in the same transaction) before its command is sent;
a controller whose lease was taken stops with LeadershipLost and sends nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta

from powerpool.journal.memory import Intent, MemoryJournal
from powerpool.journal.store import Store, at, dt, ts
from powerpool.model import (
    Action,
    Health,
    Hold,
    HoldKind,
    HostObservation,
    Pool,
    PowerState,
    Transition,
)


class DurableJournal(MemoryJournal):
    """One pool's journal in a Store; holds the pool's lease while it lives."""

    def __init__(
        self,
        pool: Pool,
        store: Store,
        now: datetime,
        holder: str,
        lease_ttl_s: float | None = None,
        history_s: float = 0.0,
    ) -> None:
        super().__init__(pool, now, history_s=history_s)
        self.store, self.holder = store, holder
        self.lease_ttl_s = lease_ttl_s if lease_ttl_s is not None else max(30.0, 3 * pool.tick_s)
        self.epoch = store.acquire(pool.name, holder, now, self.lease_ttl_s)
        self.known: set[str] = set()  # hosts the journal has a row for (others need a probe)
        self.baselines: dict[str, tuple[str, int]] = {}  # host -> (boot id, resumes) before it went down
        self.on_outcome: Callable[[Intent, PowerState | None, datetime], None] | None = None
        self._load()

    def _load(self) -> None:
        db, name = self.store.db, self.pool.name
        for host, state, since, health, kind, until, reason, owner, wakes in db.execute(
            "SELECT host, state, since, health, hold_kind, hold_until, hold_reason, hold_owner, wakes "
            "FROM hosts WHERE pool = ?",
            (name,),
        ):
            if host not in self._obs:
                continue  # removed from the policy since
            hold = Hold(HoldKind(kind), dt(until), reason or "", owner or "") if kind else None
            self._obs[host] = HostObservation(
                host, PowerState(state), at(since), Health(health), hold, None, wakes
            )
            self.wakes[host] = wakes
            self.known.add(host)
        for host, src, dst, started, deadline, epoch, reason, who in db.execute(
            "SELECT host, src, dst, started, deadline, epoch, reason, who FROM intents "
            "WHERE pool = ? AND closed IS NULL",
            (name,),
        ):
            if host in self._obs:
                t0, t1 = at(started), at(deadline)
                self.open[host] = Intent(host, PowerState(src), PowerState(dst), t0, t1, epoch, reason, who)
                self._obs[host] = replace(self._obs[host], transition=Transition(PowerState(dst), t0))
        # an intent left open by a crash stays open: the service re-observes the host
        # until the intent's deadline and closes it with what it finds, never re-sending
        self.baselines |= {
            host: (str(boot_id), int(suspends))
            for host, boot_id, suspends in db.execute(
                "SELECT host, boot_id, suspends FROM baselines WHERE pool = ?", (name,)
            )
            if host in self._obs
        }

    # -- writes -------------------------------------------------------------------------

    def _save_host(self, o: HostObservation) -> None:
        h = o.hold
        self.store.db.execute(
            "INSERT INTO hosts (pool, host, state, since, health, hold_kind, hold_until, hold_reason, "
            "hold_owner, wakes) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (pool, host) DO UPDATE SET "
            "state = excluded.state, since = excluded.since, health = excluded.health, "
            "hold_kind = excluded.hold_kind, hold_until = excluded.hold_until, "
            "hold_reason = excluded.hold_reason, hold_owner = excluded.hold_owner, wakes = excluded.wakes",
            (
                self.pool.name,
                o.name,
                o.state.value,
                ts(o.since),
                o.health.value,
                h.kind.value if h else None,
                ts(h.until) if h else None,
                h.reason if h else None,
                h.owner if h else None,
                self.wakes[o.name],
            ),
        )
        self.known.add(o.name)

    def _audit(self, now: datetime, host: str | None, event: str, detail: str, who: str) -> None:
        self.store.db.execute(
            "INSERT INTO audit (at, pool, host, event, detail, who) VALUES (?, ?, ?, ?, ?, ?)",
            (now.timestamp(), self.pool.name, host, event, detail, who),
        )

    def audit(
        self, now: datetime, host: str | None, event: str, detail: str, who: str = "controller"
    ) -> None:
        with self.store.transaction():
            self._audit(now, host, event, detail, who)

    def save_baseline(self, host: str, boot_id: str, suspends: int) -> None:
        """What proves the host's next wake (its boot id and resume count before it went
        down), kept so a wake after a restart is still proven, not merely answered."""
        if self.baselines.get(host) == (boot_id, suspends):
            return
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO baselines (pool, host, boot_id, suspends) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (pool, host) DO UPDATE SET boot_id = excluded.boot_id, "
                "suspends = excluded.suspends",
                (self.pool.name, host, boot_id, suspends),
            )
        self.baselines[host] = (boot_id, suspends)

    def qualified(
        self, host: str, now: datetime, state: PowerState, enter_s: float | None, ready_s: float | None,
        ok: bool, detail: str, who: str,
    ) -> None:  # fmt: skip
        """Record one measured round trip to `state` and back (`powerpool qualify`)."""
        with self.store.transaction() as db:
            db.execute(
                "INSERT INTO qualifications (pool, host, at, state, enter_s, ready_s, ok, detail, who) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (self.pool.name, host, now.timestamp(), state.value, enter_s, ready_s, int(ok), detail, who),
            )
            self._audit(now, host, f"qualify {state.value}", ("passed; " if ok else "FAILED; ") + detail, who)

    def renew(self, now: datetime) -> None:
        """Keep the lease; raises LeadershipLost when another controller took it."""
        self.store.renew(self.pool.name, self.holder, self.epoch, now)

    def close(self) -> None:
        self.store.release(self.pool.name, self.holder)

    def observe(self, host: str, state: PowerState, now: datetime, health: Health = Health.OK) -> None:
        before = self._obs[host]
        changed = (before.state, before.health) != (state, health)
        if changed or host not in self.known:
            after = replace(before, state=state, since=now, health=health) if changed else before
            with self.store.transaction():
                self._save_host(after)
                if changed:
                    self._audit(now, host, "observed", f"{state.value} ({health.value})", "controller")
        super().observe(host, state, now, health)

    def set_health(self, host: str, health: Health, now: datetime, detail: str = "") -> None:
        if self._obs[host].health is health:
            return
        with self.store.transaction():
            self._save_host(replace(self._obs[host], health=health))
            self._audit(now, host, f"health {health.value}", detail, "controller")
        super().set_health(host, health, now, detail)

    def set_hold(self, host: str, hold: Hold | None, now: datetime | None = None) -> None:
        now = now or datetime.now().astimezone()
        with self.store.transaction():
            self._save_host(replace(self._obs[host], hold=hold))
            if hold is None:
                self._audit(now, host, "release", "hold released", "operator")
            else:
                until = hold.until.isoformat(timespec="seconds") if hold.until else "until released"
                self._audit(now, host, f"hold {hold.kind.value}", f"{until}: {hold.reason}", hold.owner)
        super().set_hold(host, hold, now)

    def intent(self, action: Action, now: datetime, deadline_s: float, who: str = "controller") -> Intent:
        if action.host in self.open:
            raise RuntimeError(f"{action.host} already has an open intent")
        if action.host not in self._obs:
            raise KeyError(f"{action.host} is not a host of pool {self.pool.name}")
        deadline = now + timedelta(seconds=deadline_s)
        with self.store.transaction() as db:
            self.store.check_lease(db, self.pool.name, self.holder, self.epoch)
            db.execute(
                "INSERT INTO intents (pool, host, src, dst, started, deadline, epoch, reason, who) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    self.pool.name,
                    action.host,
                    action.src.value,
                    action.dst.value,
                    now.timestamp(),
                    deadline.timestamp(),
                    self.epoch,
                    action.reason,
                    who,
                ),
            )
            self._audit(
                now, action.host, f"intent {action.src.value}->{action.dst.value}", action.reason, who
            )
        it = Intent(action.host, action.src, action.dst, now, deadline, self.epoch, action.reason, who)
        self._opened(it)
        return it

    def outcome(self, host: str, reached: PowerState | None, now: datetime, detail: str = "") -> Intent:
        it = self.open[host]
        with self.store.transaction() as db:
            db.execute(
                "UPDATE intents SET closed = ?, reached = ?, detail = ? "
                "WHERE pool = ? AND host = ? AND closed IS NULL",
                (now.timestamp(), reached.value if reached else None, detail, self.pool.name, host),
            )
            o = self._obs[host]
            if reached is None:
                row = replace(o, transition=None, health=Health.FAILED, since=now)
            else:
                row = self.reached(o, it, reached, now)
            self._save_host(row)
            result = f"reached {reached.value}" if reached else "FAILED"
            self._audit(now, host, f"outcome {it.src.value}->{it.dst.value}", f"{result}; {detail}", it.who)
        if self.on_outcome is not None:
            self.on_outcome(it, reached, now)
        return super().outcome(host, reached, now, detail)
