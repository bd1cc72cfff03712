"""snmpsim variation module `pplink`: a switched outlet whose control, state and meter
objects are linked, as on a real PDU.

snmpsim's own `writecache` can only read back what was written to the same OID; real
PDUs write a command to one object and report the state (often on another scale) on
another. This module keeps one state per outlet `key` per data file and renders it for
every record of that outlet. It runs inside the snmpsim process (snmpsim executes this
file with `moduleContext`, `agentContext` and `recordContext` in its globals); powerpool
itself never imports it.

Record value, comma-separated `name=value`:
  key=K            the outlet this record belongs to (shared by its records)
  init=on|off      state before any command
  w_on / w_off / w_cycle = N   SET values accepted as commands (absent: not writable)
  r_on / r_off / r_pending = N what a GET returns per state
  r_fixed=N        a GET always returns N (e.g. Eaton's command objects read -1)
  watts_on / watts_off = N     a meter: GET returns the watts of the current state
  lag=S            seconds from a command to the new state (reads r_pending meanwhile)
  stuck=1          commands are accepted but the state never changes

Module option `statedir:DIR` (--variation-module-options=pplink:statedir:DIR): every
state change is written to DIR/<data file stem>/<key>, which the lab's emulated hosts
watch so that cutting an outlet really cuts the host. A host that writes its draw to
DIR/<data file stem>/<key>.watts is what the meter reads while the outlet is on (a
sleeping host draws little even with its outlet on); without that file, `watts_on`.
"""

from __future__ import annotations

import os
import time
from typing import Any

from pysnmp.smi import error
from snmpsim.grammar.snmprec import SnmprecGrammar
from snmpsim.record.snmprec import SnmprecRecord

moduleContext: dict[str, Any] = {}  # replaced by snmpsim
agentContext: dict[str, Any] = {}  # per data file, replaced by snmpsim before each call
recordContext: dict[str, Any] = {}  # per record, replaced by snmpsim before each call

CYCLE_S = 1.0  # a cycle reads off this long, then on


def init(**context: Any) -> None:
    options = dict(item.split(":", 1) for item in (context.get("options") or "").split(",") if ":" in item)
    moduleContext["statedir"] = options.get("statedir")


def _stem(data_file: str) -> str:
    """The PDU a data file serves (its name without folder or extension)."""
    return os.path.splitext(os.path.basename(data_file))[0]


def _publish(key: str, state: str, data_file: str) -> None:
    base = moduleContext.get("statedir")
    if not base:
        return
    folder = os.path.join(base, _stem(data_file))
    os.makedirs(folder, exist_ok=True)
    tmp = os.path.join(folder, f".{key}.tmp")
    with open(tmp, "w") as f:
        f.write(state)
    os.replace(tmp, os.path.join(folder, key))


def _host_draw(data_file: str, key: str) -> float | None:
    """The watts the host behind this outlet says it draws now (None: it says nothing)."""
    base = moduleContext.get("statedir")
    if not base:
        return None
    path = os.path.join(base, _stem(data_file), f"{key}.watts")
    try:
        with open(path) as f:
            return float(f.read())
    except (OSError, ValueError):
        return None


def _log_set(data_file: str, key: str, command: str) -> None:
    """One line per accepted SET (`<pdu> <outlet> <command>`), the lab's own record."""
    base = moduleContext.get("statedir")
    if base:
        os.makedirs(base, exist_ok=True)
        with open(os.path.join(base, "sets.log"), "a") as f:
            f.write(f"{_stem(data_file)} {key} {command}\n")


def shutdown(**context: Any) -> None:
    pass


def _settings(value: str) -> dict[str, str]:
    if "settings" not in recordContext:
        recordContext["settings"] = dict(item.split("=", 1) for item in str(value).split(",") if item)
    settings: dict[str, str] = recordContext["settings"]
    return settings


def _outlet(s: dict[str, str], data_file: str) -> dict[str, Any]:
    outlets = agentContext.setdefault("outlets", {})
    if s["key"] not in outlets:
        outlets[s["key"]] = {"state": s.get("init", "on"), "goal": None, "at": 0.0, "then": None}
        outlets[s["key"]]["publish"] = lambda state: _publish(s["key"], state, data_file)
    outlet: dict[str, Any] = outlets[s["key"]]
    return outlet


def _advance(o: dict[str, Any], now: float) -> None:
    if o["goal"] is not None and now >= o["at"] and not o.get("stuck"):
        o["state"], o["goal"] = o["goal"], None
        o["publish"](o["state"])
        if o["then"] is not None:  # second half of a cycle
            o["goal"], o["at"], o["then"] = o["then"], now + CYCLE_S, None


def variate(oid: Any, tag: str, value: str, **context: Any) -> tuple[Any, str, Any]:
    if not context["nextFlag"] and not context["exactMatch"]:
        return context["origOid"], tag, context["errorStatus"]
    s = _settings(value)
    o = _outlet(s, context.get("dataFile", "pdu"))
    now = time.monotonic()
    kind = SnmprecGrammar.TAG_MAP[SnmprecRecord.unpack_tag(tag)[0]]
    idx = max(0, context["varsTotal"] - context["varsRemaining"] - 1)

    if context["setFlag"]:
        written = context["origValue"]
        if not kind().isSameTypeWith(written):
            return context["origOid"], tag, context["errorStatus"]  # wrongly typed: noSuchInstance
        commands = {s[k]: k[2:] for k in ("w_on", "w_off", "w_cycle") if k in s}
        if not commands:
            raise error.NotWritableError(name=oid, idx=idx)
        command = commands.get(str(int(written)))
        if command is None:
            raise error.WrongValueError(name=oid, idx=idx)
        _advance(o, now)
        _log_set(context.get("dataFile", ""), s["key"], command)
        lag = float(s.get("lag", "0"))
        o["stuck"] = s.get("stuck") == "1"
        if command == "cycle":
            o["goal"], o["at"], o["then"] = "off", now + lag, "on"
        else:
            o["goal"], o["at"], o["then"] = command, now + lag, None
        _advance(o, now)
        return oid, tag, written

    _advance(o, now)
    if "r_fixed" in s:
        return oid, tag, kind(int(s["r_fixed"]))
    if "watts_on" in s:
        if o["state"] != "on":
            return oid, tag, kind(int(s.get("watts_off", "0")))
        drawn = _host_draw(context.get("dataFile", "pdu"), s["key"])
        return oid, tag, kind(int(s["watts_on"] if drawn is None else drawn))
    if o["goal"] is not None and "r_pending" in s:
        return oid, tag, kind(int(s["r_pending"]))
    return oid, tag, kind(int(s["r_" + o["state"]]))
