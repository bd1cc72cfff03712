"""PDU family profiles (`hardware/pdus/*.toml`): where a family keeps its outlet state,
its commands and its meters, and which integers mean what.

Vendors use different integers for writing and reading (APC rPDU2 writes 1 = on and
reads 1 = off), separate control and status objects, and differently shaped indexes, so
a profile states each of them explicitly instead of code guessing per vendor.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator

from powerpool.config.load import read_toml, show_path, validate
from powerpool.config.types import STRICT
from powerpool.errors import ConfigError, Problem

OutletState = Literal["on", "off", "pending", "unknown"]
Command = Literal["on", "off", "cycle"]

_OID = re.compile(r"^1(\.\d+)+$")
_INDEX = re.compile(r"^((\d+|\{unit\}|\{feed\})\.)*\{n0?\}(\.\d+)*$")


def _oid(value: str) -> str:
    if not _OID.match(value):
        raise ValueError("expected a numeric OID like 1.3.6.1.4.1.318.1.1.12.3.5.1.1.4 (no leading dot)")
    return value


def _index(value: str) -> str:
    if not _INDEX.match(value):
        raise ValueError(
            "expected an index template like '{n}', '0.{n}', '1.{n}.14', "
            "'{unit}.{feed}.{n}' or '{n0}' (0-based)"
        )
    return value


class Column(BaseModel):
    """A table column; the outlet's OID is `oid.index` with {n} = the outlet number as the
    PDU's own interface shows it (1-based), {n0} = n - 1, and for linked units {unit} =
    the unit (tower, linked PDU) and {feed} = its input feed, both 1-based (A = 1)."""

    model_config = STRICT
    oid: str
    index: str | None = None  # overrides the family's index for this column

    _check_oid = field_validator("oid")(_oid)

    @field_validator("index")
    @classmethod
    def _check_index(cls, v: str | None) -> str | None:
        return None if v is None else _index(v)


class StateColumn(Column):
    on: list[int]
    off: list[int]
    pending: list[int] = []  # transitional read-backs: in transition, not a result


class Write(Column):
    value: int  # sent as Integer32


class WattsColumn(Column):
    """An outlet's active power: watts = raw x scale / 10^digits, where a PDU that says how
    many decimal digits each reading carries (Raritan's outletSensorDecimalDigits) names
    that column in `decimals`; without it, or without a row for an outlet, digits = 0."""

    scale: float = 1.0
    decimals: Column | None = None


class PduProfile(BaseModel):
    model_config = STRICT
    family: str
    description: str
    sys_object_ids: list[str] = Field(min_length=1)  # prefixes of sysObjectID.0
    priority: int = 50  # among families matching one sysObjectID, probe the lowest first
    index: str = "{n}"
    state: StateColumn
    on: Write
    off: Write
    cycle: Write | None = None
    name: Column | None = None
    watts: WattsColumn | None = None
    source: str = ""

    _check_index = field_validator("index")(_index)

    @field_validator("sys_object_ids")
    @classmethod
    def _check_ids(cls, v: list[str]) -> list[str]:
        return [_oid(x) for x in v]

    def oid(self, column: Column, n: int, unit: int = 1, feed: int = 1) -> str:
        """The full OID of outlet `n` (of `unit`, `feed`) in `column`."""
        template = _place(column.index or self.index, unit, feed)
        return column.oid + "." + template.replace("{n0}", str(n - 1)).replace("{n}", str(n))

    def number(self, column: Column, oid: str, unit: int = 1, feed: int = 1) -> int | None:
        """The outlet number an OID of `column` belongs to (None: another row, e.g. a
        different sensor type or another unit of a daisy chain)."""
        template = _place(column.index or self.index, unit, feed)
        pattern = re.escape(template).replace(r"\{n0\}", "(?P<n0>\\d+)").replace(r"\{n\}", "(?P<n>\\d+)")
        m = re.fullmatch(re.escape(column.oid) + r"\." + pattern, oid)
        if not m:
            return None
        found = m.groupdict()
        return int(found["n"]) if found.get("n") is not None else int(found["n0"]) + 1

    def decode(self, raw: int | None) -> OutletState:
        if raw is None:
            return "unknown"
        if raw in self.state.on:
            return "on"
        if raw in self.state.off:
            return "off"
        if raw in self.state.pending:
            return "pending"
        return "unknown"

    def write(self, command: Command) -> Write | None:
        return {"on": self.on, "off": self.off, "cycle": self.cycle}[command]

    def matches(self, sys_object_id: str) -> int:
        """Length of the longest matching sysObjectID prefix (0: no match)."""
        best = 0
        for prefix in self.sys_object_ids:
            if sys_object_id == prefix or sys_object_id.startswith(prefix + "."):
                best = max(best, len(prefix))
        return best


def _place(template: str, unit: int, feed: int) -> str:
    return template.replace("{unit}", str(unit)).replace("{feed}", str(feed))


def load_pdu_profiles(directory: Path) -> dict[str, PduProfile]:
    """Every profile in `directory`, keyed by family; ConfigError lists every problem."""
    problems: list[Problem] = []
    out: dict[str, PduProfile] = {}
    for path in sorted(directory.glob("*.toml")):
        data = read_toml(path, problems)
        if data is None:
            continue
        prof = validate(PduProfile, data, show_path(path), problems)
        if prof is None:
            continue
        if prof.family in out:
            problems.append(Problem(show_path(path), "family", prof.family, "a family name used once"))
        out[prof.family] = prof
    if not out and not problems:
        problems.append(Problem(str(directory), "", [], "at least one PDU profile (*.toml)"))
    if problems:
        raise ConfigError(problems)
    return out


def candidates(profiles: dict[str, PduProfile], sys_object_id: str) -> list[PduProfile]:
    """Families to probe for a sysObjectID: matching ones first (longest prefix, then
    priority), then every other one — vendor labels disagree, so probing decides."""
    return sorted(profiles.values(), key=lambda p: (-p.matches(sys_object_id), p.priority, p.family))
