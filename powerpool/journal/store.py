"""The durable journal file: SQLite in WAL mode in the state dir, one per service.

It holds, per pool, what each host was last observed to be, every intent (written and
committed before its command is sent) with its outcome, holds, an audit log of every
action with its reason and who asked, and the leader lease whose fencing epoch every
intent carries. The schema is versioned; `MIGRATIONS[i]` takes version i to i + 1.
"""

from __future__ import annotations

import os
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from powerpool.errors import LeadershipLost, PowerpoolError

MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE hosts (
        pool TEXT NOT NULL, host TEXT NOT NULL, state TEXT NOT NULL, since REAL NOT NULL,
        health TEXT NOT NULL, hold_kind TEXT, hold_until REAL, hold_reason TEXT,
        hold_owner TEXT, wakes INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (pool, host));
    CREATE TABLE intents (
        id INTEGER PRIMARY KEY, pool TEXT NOT NULL, host TEXT NOT NULL, src TEXT NOT NULL,
        dst TEXT NOT NULL, started REAL NOT NULL, deadline REAL NOT NULL,
        epoch INTEGER NOT NULL, reason TEXT NOT NULL, who TEXT NOT NULL,
        closed REAL, reached TEXT, channel TEXT, detail TEXT);
    CREATE INDEX intents_open ON intents (pool, host) WHERE closed IS NULL;
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY, at REAL NOT NULL, pool TEXT NOT NULL, host TEXT,
        event TEXT NOT NULL, detail TEXT NOT NULL, who TEXT NOT NULL);
    CREATE INDEX audit_host ON audit (host, at);
    CREATE TABLE leases (
        pool TEXT PRIMARY KEY, holder TEXT NOT NULL, epoch INTEGER NOT NULL,
        renewed REAL NOT NULL);
    """,
    """
    CREATE TABLE qualifications (
        id INTEGER PRIMARY KEY, pool TEXT NOT NULL, host TEXT NOT NULL, at REAL NOT NULL,
        state TEXT NOT NULL, enter_s REAL, ready_s REAL, ok INTEGER NOT NULL,
        detail TEXT NOT NULL, who TEXT NOT NULL);
    CREATE INDEX qualifications_host ON qualifications (pool, host, at);
    """,
    """
    CREATE TABLE baselines (
        pool TEXT NOT NULL, host TEXT NOT NULL, boot_id TEXT NOT NULL, suspends INTEGER NOT NULL,
        PRIMARY KEY (pool, host));
    """,
)


class StateDirBusy(PowerpoolError):
    """Another live controller holds a pool's lease."""


def holder_id(role: str) -> str:
    """Who holds a lease: role, machine and process, so a dead holder can be told apart."""
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


def _alive(holder: str) -> bool:
    """False only when the holder is a process on this machine that no longer exists."""
    _, _, where = holder.partition("@")
    host, _, pid = where.rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def ts(t: datetime | None) -> float | None:
    return None if t is None else t.timestamp()


def dt(t: float | None) -> datetime | None:
    return None if t is None else at(t)


def at(t: float) -> datetime:
    return datetime.fromtimestamp(t, UTC)


@dataclass(frozen=True, slots=True)
class AuditEntry:
    at: datetime
    pool: str
    host: str | None
    event: str
    detail: str
    who: str


class Store:
    """One SQLite file; every write is its own committed transaction."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.db = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")  # an intent must survive a power cut
        self.db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    def close(self) -> None:
        self.db.close()

    @property
    def version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def _migrate(self) -> None:
        with self.transaction():
            current = self.version
            if current > len(MIGRATIONS):
                raise PowerpoolError(
                    f"{self.path}: journal schema version {current} is newer than this powerpool "
                    f"({len(MIGRATIONS)}); upgrade powerpool"
                )
            for i in range(current, len(MIGRATIONS)):
                for statement in MIGRATIONS[i].split(";"):
                    if statement.strip():
                        self.db.execute(statement)
                self.db.execute(f"PRAGMA user_version = {i + 1}")

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE: writers queue here, so a check and its write are one step."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # -- the leader lease ---------------------------------------------------------------

    def acquire(self, pool: str, holder: str, now: datetime, ttl_s: float) -> int:
        """Take the pool's lease with a new fencing epoch; refuse while a live holder has it."""
        with self.transaction() as db:
            row = db.execute("SELECT holder, epoch, renewed FROM leases WHERE pool = ?", (pool,)).fetchone()
            if row is not None:
                other, epoch, renewed = row
                fresh = now.timestamp() - renewed < ttl_s
                if other != holder and fresh and _alive(other):
                    raise StateDirBusy(
                        f"pool {pool}: {other} holds the controller lease (renewed "
                        f"{now.timestamp() - renewed:.0f} s ago); refusing to act"
                    )
            epoch = (row[1] if row else 0) + 1
            db.execute(
                "INSERT INTO leases (pool, holder, epoch, renewed) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (pool) DO UPDATE SET holder = excluded.holder, epoch = excluded.epoch, "
                "renewed = excluded.renewed",
                (pool, holder, epoch, now.timestamp()),
            )
        return int(epoch)

    def check_lease(self, db: sqlite3.Connection, pool: str, holder: str, epoch: int) -> None:
        row = db.execute("SELECT holder, epoch FROM leases WHERE pool = ?", (pool,)).fetchone()
        if row is None or (row[0], row[1]) != (holder, epoch):
            who = f"{row[0]} (epoch {row[1]})" if row else "nobody"
            raise LeadershipLost(f"pool {pool}: the lease is now held by {who}; this controller stops acting")

    def renew(self, pool: str, holder: str, epoch: int, now: datetime) -> None:
        with self.transaction() as db:
            self.check_lease(db, pool, holder, epoch)
            db.execute("UPDATE leases SET renewed = ? WHERE pool = ?", (now.timestamp(), pool))

    def release(self, pool: str, holder: str) -> None:
        with self.transaction() as db:
            db.execute("DELETE FROM leases WHERE pool = ? AND holder = ?", (pool, holder))

    def lease(self, pool: str) -> tuple[str, int, datetime] | None:
        row = self.db.execute("SELECT holder, epoch, renewed FROM leases WHERE pool = ?", (pool,)).fetchone()
        return None if row is None else (row[0], int(row[1]), at(row[2]))

    # -- reading back -------------------------------------------------------------------

    def audit(
        self, host: str | None = None, since: datetime | None = None, limit: int = 1000
    ) -> list[AuditEntry]:
        sql = "SELECT at, pool, host, event, detail, who FROM audit WHERE at >= ?"
        args: list[object] = [ts(since) or 0.0]
        if host is not None:
            sql += " AND host = ?"
            args.append(host)
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(limit)
        rows = self.db.execute(sql, args).fetchall()
        return [AuditEntry(at(r[0]), r[1], r[2], r[3], r[4], r[5]) for r in reversed(rows)]

    def wake_stats(self, pool: str) -> dict[str, dict[str, float]]:
        """Per host: wakes from a parked state, failures, and latency percentiles (s)."""
        rows = self.db.execute(
            "SELECT host, closed - started, reached IS NOT NULL FROM intents "
            "WHERE pool = ? AND closed IS NOT NULL AND dst IN ('active', 'freq_scaled') "
            "AND src NOT IN ('active', 'freq_scaled') ORDER BY host, closed - started",
            (pool,),
        ).fetchall()
        by_host: dict[str, list[tuple[float, bool]]] = {}
        for host, took, ok in rows:
            by_host.setdefault(host, []).append((float(took), bool(ok)))
        out: dict[str, dict[str, float]] = {}
        for host, items in by_host.items():
            lat = sorted(t for t, ok in items if ok)
            out[host] = {
                "wakes": float(len(lat)),
                "failures": float(sum(1 for _, ok in items if not ok)),
                "p50_s": _pct(lat, 0.5),
                "p95_s": _pct(lat, 0.95),
                "max_s": lat[-1] if lat else float("nan"),
            }
        return out


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return values[min(len(values) - 1, int(q * len(values)))]
