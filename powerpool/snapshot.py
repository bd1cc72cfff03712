"""Snapshot files: a recorded view of a pool that `powerpool plan --snapshot` replays.

{"now": ISO8601, "load": {"value": x, "observed_at": ISO8601},
 "hosts": [{"name", "state", "since", "health", "hold", "transition", "wakes"}],
 "history": [[ISO8601, load], ...],                       # optional, oldest first
 "recent": [{"host", "kind": "wake"|"sleep", "at", "failed"}]}   # optional
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, Field

from powerpool.config.load import show_path, validate
from powerpool.config.types import STRICT, State
from powerpool.errors import NO_VALUE, ConfigError, Problem
from powerpool.model import (
    Health,
    Hold,
    HoldKind,
    HostObservation,
    RecentAction,
    Snapshot,
    Transition,
)


class _Load(BaseModel):
    model_config = STRICT
    value: float | None
    observed_at: AwareDatetime | None = None


class _Hold(BaseModel):
    model_config = STRICT
    until: AwareDatetime | None = None
    reason: str
    kind: HoldKind | None = None  # default: pinned in whatever state it is in
    owner: str = ""


class _Transition(BaseModel):
    model_config = STRICT
    to: State
    started: AwareDatetime


class _Host(BaseModel):
    model_config = STRICT
    name: str
    state: State
    since: AwareDatetime
    health: Health = Health.OK
    hold: _Hold | None = None
    transition: _Transition | None = None
    wakes: int = Field(default=0, ge=0)


class _Recent(BaseModel):
    model_config = STRICT
    host: str
    kind: Literal["wake", "sleep"]
    at: AwareDatetime
    failed: bool = False


class SnapshotFile(BaseModel):
    model_config = STRICT
    now: AwareDatetime
    load: _Load | None = None
    hosts: list[_Host]
    history: list[tuple[AwareDatetime, float]] = []
    recent: list[_Recent] = []


def from_dict(spec: SnapshotFile) -> Snapshot:
    hosts = []
    for h in spec.hosts:
        hold = None
        if h.hold is not None:
            kind = h.hold.kind or (HoldKind.AWAKE if h.state.warm else HoldKind.ASLEEP)
            hold = Hold(kind, h.hold.until, h.hold.reason, h.hold.owner)
        tr = Transition(h.transition.to, h.transition.started) if h.transition else None
        hosts.append(HostObservation(h.name, h.state, h.since, h.health, hold, tr, h.wakes))
    load = spec.load
    return Snapshot(
        now=spec.now,
        load=load.value if load else None,
        load_observed_at=load.observed_at if load else None,
        hosts=tuple(hosts),
        history=tuple((t.timestamp(), v) for t, v in spec.history),
        recent=tuple(RecentAction(r.host, r.kind, r.at, r.failed) for r in spec.recent),
    )


def read_snapshot(path: Path) -> Snapshot:
    """Parse and validate a snapshot file; ConfigError names the key that is wrong."""
    file = show_path(path)
    try:
        data: Any = json.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigError([Problem(file, "", NO_VALUE, "file not found")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError([Problem(file, "", NO_VALUE, f"cannot read: {e}")]) from None
    except json.JSONDecodeError as e:
        raise ConfigError([Problem(file, "", NO_VALUE, f"not valid JSON: {e}")]) from None
    problems: list[Problem] = []
    if not isinstance(data, dict):
        raise ConfigError([Problem(file, "", NO_VALUE, "expected a JSON object")])
    spec = validate(SnapshotFile, data, file, problems)
    if spec is None:
        raise ConfigError(problems)
    return from_dict(spec)


def check_hosts(snap: Snapshot, known: set[str], file: str) -> None:
    """Hosts in the snapshot that the policy does not list are a mistake, not noise."""
    unknown = [h.name for h in snap.hosts if h.name not in known]
    if unknown:
        raise ConfigError([Problem(file, "hosts", unknown[:5], "not in the policy's host list")])
