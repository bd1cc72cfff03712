"""Load policies and hardware profiles into the model; every problem names file and key.

Loading is all-or-nothing: `load_all` collects every problem it can find across all
files and raises one ConfigError, so a bad file is never half applied.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ValidationError

from powerpool.config.schema import (
    DEFAULT_CHANNELS,
    HostSpec,
    InventoryFile,
    PolicyFile,
    ServerProfileFile,
)
from powerpool.config.types import parse_clock, parse_days
from powerpool.errors import NO_VALUE, ConfigError, Problem
from powerpool.model import (
    LADDER,
    Host,
    Outlet,
    Pool,
    PowerState,
    Profile,
    Tier,
    Window,
)

M = TypeVar("M", bound=BaseModel)
OUT_OF_BAND = {"pdu"}


def show_path(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def read_toml(path: Path, problems: list[Problem]) -> dict[str, Any] | None:
    try:
        with path.open("rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        problems.append(Problem(show_path(path), "", NO_VALUE, "file not found"))
    except tomllib.TOMLDecodeError as e:
        problems.append(Problem(show_path(path), "", NO_VALUE, f"not valid TOML: {e}"))
    except OSError as e:
        problems.append(Problem(show_path(path), "", NO_VALUE, f"cannot read: {e.strerror}"))
    return None


def parse_override(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` from the command line: the value is read as TOML (0.9, true,
    ["active", "sleep"], "quoted"), and as a plain string when it is not TOML (2m)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise ValueError(f"{text!r} is not KEY=VALUE (e.g. forecast.peak_hold=2m)")
    try:
        return key, tomllib.loads(f"v = {raw.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return key, raw.strip()


def apply_overrides(
    data: dict[str, Any], overrides: Mapping[str, Any], file: str, problems: list[Problem]
) -> None:
    """Set dotted keys in a file's parsed TOML before it is validated, so an override is
    checked exactly as the same line in the file would be."""
    for key, value in overrides.items():
        *path, last = key.split(".")
        table = data
        for i, part in enumerate(path):
            table = table.setdefault(part, {})
            if not isinstance(table, dict):
                where = ".".join(path[: i + 1])
                problems.append(
                    Problem(file, key, value, f"a key inside a table, but {where} is not a table")
                )
                break
        else:
            table[last] = value


def _key(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def _fields_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> list[str]:
    """Field names of the (sub)model that `loc` points into, to suggest valid keys."""
    current: type[BaseModel] = model
    skip_key = False  # inside a dict of models, the next part is a free-form key
    for part in loc:
        if isinstance(part, int) or skip_key:
            skip_key = False
            continue
        info = current.model_fields.get(part)
        if info is None:
            return []
        ann = info.annotation
        skip_key = getattr(ann, "__origin__", None) is dict
        stack = [ann]
        while stack:
            arg = stack.pop()
            if isinstance(arg, type) and issubclass(arg, BaseModel):
                current = arg
                break
            stack.extend(getattr(arg, "__args__", ()))
        else:
            return []
    return list(current.model_fields)


def validate(model: type[M], data: dict[str, Any], file: str, problems: list[Problem]) -> M | None:
    try:
        return model.model_validate(data)
    except ValidationError as e:
        for err in e.errors():
            loc = tuple(err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                known = _fields_at(model, loc[:-1])
                msg = "unknown key" + (f"; expected one of {', '.join(known)}" if known else "")
            elif err["type"] == "missing":
                msg = "required key is missing"
                problems.append(Problem(file, _key(loc), NO_VALUE, msg))
                continue
            elif msg.startswith("Input should be "):
                msg = "expected " + msg.removeprefix("Input should be ")
            value = err.get("input", NO_VALUE)
            if isinstance(value, dict):
                value = NO_VALUE
            problems.append(Problem(file, _key(loc), value, msg))
        return None


# -- hardware -------------------------------------------------------------------------


def to_profile(spec: ServerProfileFile, source: str = "") -> Profile:
    power: dict[PowerState, float] = {PowerState.ACTIVE: spec.power.active_idle}
    ready: dict[PowerState, float] = {PowerState.ACTIVE: 0.0}
    enter: dict[PowerState, float] = {PowerState.ACTIVE: 0.0}
    moving: dict[PowerState, float] = {}
    for s in LADDER[1:]:
        watts = getattr(spec.power, s.value)
        if watts is not None:
            power[s] = watts
            ready[s] = getattr(spec.ready_s, s.value)
            enter[s] = getattr(spec.enter_s, s.value)
        tw = getattr(spec.transition_w, s.value)
        if tw is not None:
            moving[s] = tw
    return Profile(
        name=spec.name,
        description=spec.description,
        capacity=spec.capacity,
        active_idle=spec.power.active_idle,
        active_peak=spec.power.active_peak,
        power=power,
        ready_s=ready,
        enter_s=enter,
        transition_w=moving,
        source=source,
    )


def _complete(spec: ServerProfileFile, file: str, problems: list[Problem]) -> bool:
    """Every supported state needs both latencies, and only supported states may have them."""
    ok = True
    for s in LADDER[1:]:
        supported = getattr(spec.power, s.value) is not None
        for table in ("ready_s", "enter_s"):
            has = getattr(getattr(spec, table), s.value) is not None
            if supported != has:
                ok = False
                why = (
                    f"required, because power.{s.value} is given"
                    if supported
                    else f"given, but power.{s.value} is not (the model does not support it)"
                )
                problems.append(Problem(file, f"{table}.{s.value}", NO_VALUE, why))
    return ok


def load_profiles(
    paths: list[Path], problems: list[Problem], broken: set[str] | None = None
) -> dict[str, Profile]:
    """Profiles by name; names of profiles whose files are invalid go into `broken`."""
    profiles: dict[str, Profile] = {}
    for path in sorted(paths):
        data = read_toml(path, problems)
        if data is None:
            continue
        spec = validate(ServerProfileFile, data, show_path(path), problems)
        if spec is None or not _complete(spec, show_path(path), problems):
            if broken is not None and isinstance(data.get("name"), str):
                broken.add(data["name"])
            continue
        if spec.name in profiles:
            other = profiles[spec.name].source
            problems.append(
                Problem(show_path(path), "name", spec.name, f"profile name already used by {other}")
            )
            continue
        profiles[spec.name] = to_profile(spec, show_path(path))
    return profiles


# -- policies -------------------------------------------------------------------------


@dataclass
class PolicyBundle:
    """A validated policy: the model the planner reads plus the spec channels read."""

    path: Path
    spec: PolicyFile
    pool: Pool
    host_keys: dict[str, tuple[str, str]] = field(default_factory=dict)  # host -> (file, key)


def _hosts(spec: PolicyFile, path: Path, problems: list[Problem]) -> list[tuple[HostSpec, str, str]]:
    """(host, file, key prefix) for every host, inline or from the inventory file."""
    out = [(h, show_path(path), f"hosts[{i}]") for i, h in enumerate(spec.hosts)]
    if spec.inventory is not None:
        inv_path = (path.parent / spec.inventory).resolve()
        data = read_toml(inv_path, problems)
        if data is not None:
            inv = validate(InventoryFile, data, show_path(inv_path), problems)
            if inv is not None:
                out += [(h, show_path(inv_path), f"hosts[{i}]") for i, h in enumerate(inv.hosts)]
    return out


def _channels(spec: PolicyFile, host: HostSpec) -> dict[str, tuple[str, ...]]:
    order: dict[str, tuple[str, ...]] = {}
    for key, default in DEFAULT_CHANNELS.items():
        chosen = getattr(host.channels, key) or getattr(spec.channels, key) or default
        order[key] = tuple(chosen)
    return order


def load_policy(
    path: Path,
    profiles: dict[str, Profile],
    problems: list[Problem],
    broken: frozenset[str] = frozenset(),
    pdu_families: frozenset[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> PolicyBundle | None:
    file = show_path(path)
    data = read_toml(path, problems)
    if data is None:
        return None
    if overrides:  # what is wrong may be the override, not the file: say both
        file = f"{file} (with --set)"
        before = len(problems)
        apply_overrides(data, overrides, file, problems)
        if len(problems) > before:
            return None
    spec = validate(PolicyFile, data, file, problems)
    if spec is None:
        return None
    before = len(problems)
    for name, pdu_spec in spec.pdus.items():
        family = pdu_spec.family
        if pdu_families is not None and family != "auto" and family not in pdu_families:
            known = ", ".join(["auto", *sorted(pdu_families)])
            problems.append(Problem(file, f"pdus.{name}.family", family, f"a known PDU family ({known})"))
    hosts: list[Host] = []
    host_keys: dict[str, tuple[str, str]] = {}
    allowed = frozenset(spec.states.allowed)
    for hspec, hfile, key in _hosts(spec, path, problems):
        prof = profiles.get(hspec.profile)
        if prof is None and hspec.profile in broken:
            problems.append(Problem(hfile, "", NO_VALUE, ""))  # reported with the profile
            continue
        if prof is None:
            known = ", ".join(sorted(profiles)) or "none found"
            problems.append(
                Problem(hfile, f"{key}.profile", hspec.profile, f"unknown hardware profile ({known})")
            )
            continue
        for s in sorted(allowed, key=lambda s: s.depth):
            if not prof.supports(s):
                problems.append(
                    Problem(
                        file,
                        "states.allowed",
                        s.value,
                        f"host {hspec.name} uses profile {prof.name}, which has no power.{s.value}",
                    )
                )
        outlets = []
        for item in hspec.outlets:
            pdu, _, num = item.rpartition(":")
            if pdu not in spec.pdus:
                known = ", ".join(sorted(spec.pdus)) or "no [pdus] defined"
                problems.append(Problem(hfile, f"{key}.outlets", item, f"unknown PDU ({known})"))
            outlets.append(Outlet(pdu, int(num)))
        domains = [f"rack:{hspec.rack}"] if hspec.rack else []
        domains += [f"pdu:{p}" for p in sorted({o.pdu for o in outlets})]
        domains += [f"domain:{hspec.domain}"] if hspec.domain else []
        channels = _channels(spec, hspec)
        _check_channels(hspec, channels, allowed, hfile, key, problems)
        hosts.append(
            Host(
                name=hspec.name,
                address=hspec.address,
                mac=hspec.mac,
                profile=hspec.profile,
                outlets=tuple(outlets),
                domains=tuple(domains),
                excluded=hspec.exclude,
                channels=channels,
                disks=tuple(hspec.disks),
                ssh_port=hspec.ssh_port,
            )
        )
        if hspec.name in host_keys:
            other = host_keys[hspec.name]
            problems.append(
                Problem(hfile, f"{key}.name", hspec.name, f"already used by {other[1]} in {other[0]}")
            )
        host_keys.setdefault(hspec.name, (hfile, key))
    if len(problems) > before:
        return None
    pool = to_pool(spec, hosts, profiles)
    _check_reserve(spec, pool, file, problems)
    if len(problems) > before:
        return None
    return PolicyBundle(path, spec, pool, host_keys)


def _check_channels(
    host: HostSpec,
    channels: dict[str, tuple[str, ...]],
    allowed: frozenset[PowerState],
    file: str,
    key: str,
    problems: list[Problem],
) -> None:
    used = ["wake"] + [s.value for s in allowed if s is not PowerState.ACTIVE]
    for what in used:
        order = channels[what]
        where = f"channels.{what}"
        if "pdu" in order and not host.outlets:
            problems.append(
                Problem(file, f"{key}.outlets", [], f"{where} uses the PDU but the host has none")
            )
        if "wol" in order and what != "wake":
            problems.append(Problem(file, where, list(order), "Wake-on-LAN can only wake a host"))
    for state in ("off", "unpowered"):
        if PowerState(state) not in allowed:
            continue
        order = channels[state]
        if not OUT_OF_BAND & set(order):
            problems.append(
                Problem(
                    file,
                    f"{key}.channels.{state}" if getattr(host.channels, state) else f"channels.{state}",
                    list(order),
                    f"forcing a host {state} must not depend on the host itself: "
                    "ssh may only be a graceful first step before an out-of-band channel "
                    '(e.g. ["ssh", "pdu"])',
                )
            )


def to_pool(spec: PolicyFile, hosts: list[Host], profiles: dict[str, Profile]) -> Pool:
    windows = tuple(
        Window(
            name=w.name or f"schedule[{i}]",
            days=parse_days(w.days),
            start_min=parse_clock(w.start),
            end_min=parse_clock(w.end),
            min_warm=w.min_warm,
        )
        for i, w in enumerate(spec.schedule)
    )
    return Pool(
        name=spec.name,
        hosts=tuple(hosts),
        profiles={h.profile: profiles[h.profile] for h in hosts},
        capacity_per_host=spec.capacity_per_host,
        target_utilisation=spec.target_utilisation,
        allowed=frozenset(spec.states.allowed),
        min_active=spec.reserve.min_active,
        warm=spec.reserve.warm,
        tiers=tuple(
            sorted(
                (Tier(t.within, t.hosts, t.percent) for t in spec.reserve.tiers),
                key=lambda t: t.within_s,
            )
        ),
        windows=windows,
        tz=ZoneInfo(spec.timezone),
        tick_s=spec.tick,
        idle_before_sleep_s=spec.hysteresis.idle_before_sleep,
        min_uptime_s=spec.hysteresis.min_uptime_after_wake,
        min_dwell_s=dict(spec.hysteresis.min_dwell),
        wakes_per_minute=spec.rates.wakes_per_minute,
        sleeps_per_minute=spec.rates.sleeps_per_minute,
        max_ops_per_pdu=spec.rates.max_ops_per_pdu,
        load_max_age_s=spec.safety.load_max_age,
        breaker_failures=spec.safety.breaker_failures,
        breaker_window_s=spec.safety.breaker_window,
        wake_margin_s=spec.safety.wake_margin,
        trend_window_s=spec.forecast.trend_window,
        peak_hold_s=spec.forecast.peak_hold,
        spread_domains=spec.safety.spread_failure_domains,
    )


def _check_reserve(spec: PolicyFile, pool: Pool, file: str, problems: list[Problem]) -> None:
    """A reserve the pool can never satisfy, even at zero load with every host up."""
    capacity = sum(pool.profiles[h.profile].capacity for h in pool.hosts if not h.excluded)
    floor = pool.min_active + pool.warm + sum(t.extra(pool.min_active) for t in pool.tiers)
    if floor > capacity + 1e-9:
        problems.append(
            Problem(
                file,
                "reserve",
                f"min_active {pool.min_active} + warm {pool.warm} + tiers "
                f"{floor - pool.min_active - pool.warm}",
                f"needs {floor} host-capacities at zero load but the pool has {capacity:g}",
            )
        )
    for i, w in enumerate(spec.schedule):
        if w.min_warm > capacity + 1e-9:
            problems.append(
                Problem(
                    file,
                    f"schedule[{i}].min_warm",
                    w.min_warm,
                    f"more than the pool's {capacity:g} host-capacities",
                )
            )


# -- everything -----------------------------------------------------------------------


@dataclass
class Loaded:
    profiles: dict[str, Profile]
    policies: dict[str, PolicyBundle]


def discover(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """Split files and folders into (hardware profiles, policies)."""
    hardware: list[Path] = []
    policies: list[Path] = []
    for p in paths:
        files = sorted(p.rglob("*.toml")) if p.is_dir() else [p]
        for f in files:
            parts = f.resolve().parts
            if "servers" in parts and "hardware" in parts:
                hardware.append(f)
            elif "hardware" in parts:
                continue  # PDU profiles are read by the SNMP channel
            elif "inventory" in f.stem or f.parent.name == "inventory":
                continue  # read through the policy that names it
            else:
                policies.append(f)
    return hardware, policies


def load_all(
    policy_paths: list[Path],
    hardware_paths: list[Path],
    pdu_families: frozenset[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Loaded:
    """Load and cross-check; raise ConfigError with every problem found. `pdu_families`,
    when given, are the PDU profile names a policy's `pdus.*.family` may use; `overrides`
    (dotted key -> value) are set in every policy before it is validated."""
    problems: list[Problem] = []
    broken: set[str] = set()
    profiles = load_profiles(hardware_paths, problems, broken)
    policies: dict[str, PolicyBundle] = {}
    for path in sorted(policy_paths):
        bundle = load_policy(path, profiles, problems, frozenset(broken), pdu_families, overrides)
        if bundle is None:
            continue
        if bundle.pool.name in policies:
            other = show_path(policies[bundle.pool.name].path)
            problems.append(
                Problem(show_path(path), "name", bundle.pool.name, f"pool name already used by {other}")
            )
            continue
        policies[bundle.pool.name] = bundle
    _check_unique(list(policies.values()), problems)
    problems = [p for p in problems if p.expected]  # drop the silent markers of a cascade
    if problems:
        raise ConfigError(problems)
    return Loaded(profiles, policies)


def _check_unique(bundles: list[PolicyBundle], problems: list[Problem]) -> None:
    """Names, MACs and outlets belong to one host across every pool."""
    seen: dict[tuple[str, str], tuple[str, str, str]] = {}
    for b in bundles:
        for h in b.pool.hosts:
            file, key = b.host_keys[h.name]
            claims = [("name", h.name, h.name), ("mac", h.mac, h.mac)]
            for o in h.outlets:
                pdu = b.spec.pdus[o.pdu]
                where = f"{pdu.address}:{pdu.port}/{pdu.context}/{o.outlet}"  # contexts: one agent, many PDUs
                claims.append(("outlets", where, f"{o.pdu}:{o.outlet}"))
            me = (b.pool.name, h.name, file)
            for what, identity, label in claims:
                pool, name, where = seen.setdefault((what, identity), me)
                if (pool, name) != me[:2]:
                    why = f"already claimed by host {name} ({where})"
                    problems.append(Problem(file, f"{key}.{what}", label, why))
