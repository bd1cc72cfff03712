"""The shape of hardware profiles and policy files, checked field by field.

These models only describe one file each; checks that need several files (an unknown
profile, an outlet claimed twice, ...) live in `powerpool.config.load`.
"""

from __future__ import annotations

from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, Field, field_validator, model_validator

from powerpool.config.types import (
    STRICT,
    Channel,
    Duration,
    Mac,
    Name,
    SecretRef,
    State,
    parse_clock,
    parse_days,
)
from powerpool.model import PowerState

# -- hardware/servers/*.toml ------------------------------------------------------------

_STATE_KEYS = [s.value for s in PowerState if s is not PowerState.ACTIVE]


class StateWatts(BaseModel):
    """Watts per non-active state; a state left out is not supported by the model."""

    model_config = STRICT
    freq_scaled: float | None = Field(default=None, ge=0)
    disk_standby: float | None = Field(default=None, ge=0)
    sleep: float | None = Field(default=None, ge=0)
    hibernate: float | None = Field(default=None, ge=0)
    off: float | None = Field(default=None, ge=0)
    unpowered: float | None = Field(default=None, ge=0)


class PowerTable(StateWatts):
    """Resting watts: active idle and peak, and one entry per supported state."""

    active_idle: float = Field(gt=0)
    active_peak: float = Field(gt=0)

    @model_validator(mode="after")
    def _ordered(self) -> PowerTable:
        if self.active_peak < self.active_idle:
            raise ValueError("active_peak must be >= active_idle")
        for key in _STATE_KEYS:
            watts = getattr(self, key)
            if watts is not None and watts > self.active_idle:
                raise ValueError(
                    f"{key} draws {watts} W, more than active_idle ({self.active_idle} W): "
                    "a power-saving state must draw less than idling"
                )
        return self


class StateSeconds(BaseModel):
    model_config = STRICT
    freq_scaled: Duration | None = None
    disk_standby: Duration | None = None
    sleep: Duration | None = None
    hibernate: Duration | None = None
    off: Duration | None = None
    unpowered: Duration | None = None


class ServerProfileFile(BaseModel):
    model_config = STRICT
    name: Name
    description: str = ""
    capacity: float = Field(default=1.0, gt=0)
    power: PowerTable
    ready_s: StateSeconds
    enter_s: StateSeconds
    transition_w: StateWatts = StateWatts()


# -- policies/*.toml --------------------------------------------------------------------


class LoadSpec(BaseModel):
    """Where the pool's load comes from, and in which unit."""

    model_config = STRICT
    source: Literal["prometheus", "ssh", "http", "file"]
    unit: str
    url: str | None = None  # prometheus base URL or HTTP JSON endpoint
    query: str | None = None  # PromQL
    field: str | None = None  # dotted path into an HTTP JSON answer
    path: str | None = None  # a file holding the current value
    command: str | None = None  # ssh: a command printing one number (default: loadavg)
    timeout: Duration = 5.0

    @model_validator(mode="after")
    def _source_fields(self) -> LoadSpec:
        need = {"prometheus": ("url", "query"), "http": ("url",), "file": ("path",)}
        for key in need.get(self.source, ()):
            if getattr(self, key) is None:
                raise ValueError(f"load.source = {self.source!r} needs load.{key}")
        return self


class TierSpec(BaseModel):
    model_config = STRICT
    within: Duration
    hosts: int = Field(default=0, ge=0)
    percent: float = Field(default=0.0, ge=0, le=1000)

    @model_validator(mode="after")
    def _some(self) -> TierSpec:
        if self.hosts == 0 and self.percent == 0:
            raise ValueError("a tier needs hosts or percent (e.g. hosts = 2 or percent = 25)")
        return self


class ReserveSpec(BaseModel):
    model_config = STRICT
    warm: int = Field(default=1, ge=0)
    min_active: int = Field(default=1, ge=0)
    tiers: list[TierSpec] = []


class StatesSpec(BaseModel):
    model_config = STRICT
    allowed: list[State]

    @field_validator("allowed")
    @classmethod
    def _has_active(cls, v: list[PowerState]) -> list[PowerState]:
        if PowerState.ACTIVE not in v:
            raise ValueError("allowed states must include active")
        return v


class HysteresisSpec(BaseModel):
    model_config = STRICT
    idle_before_sleep: Duration = 600.0
    min_uptime_after_wake: Duration = 900.0
    min_dwell: dict[State, Duration] = {}


class RatesSpec(BaseModel):
    model_config = STRICT
    wakes_per_minute: int = Field(default=10, ge=1)
    sleeps_per_minute: int = Field(default=5, ge=1)
    max_ops_per_pdu: int = Field(default=2, ge=1)


class ChannelOrder(BaseModel):
    """Channels tried in order for each transition (escalation)."""

    model_config = STRICT
    wake: list[Channel] | None = None
    freq_scaled: list[Channel] | None = None
    disk_standby: list[Channel] | None = None
    sleep: list[Channel] | None = None
    hibernate: list[Channel] | None = None
    off: list[Channel] | None = None
    unpowered: list[Channel] | None = None


DEFAULT_CHANNELS: dict[str, list[str]] = {
    "wake": ["wol", "pdu"],
    "freq_scaled": ["ssh"],
    "disk_standby": ["ssh"],
    "sleep": ["ssh"],
    "hibernate": ["ssh"],
    "off": ["ssh", "pdu"],
    "unpowered": ["pdu"],
}


class WindowSpec(BaseModel):
    """At least `min_warm` warm hosts on `days` from `start` to `end` (local time)."""

    model_config = STRICT
    name: str = ""
    days: str = "*"
    start: str
    end: str
    min_warm: int = Field(ge=0)

    @field_validator("days")
    @classmethod
    def _days(cls, v: str) -> str:
        parse_days(v)
        return v

    @field_validator("start", "end")
    @classmethod
    def _clock(cls, v: str) -> str:
        parse_clock(v)
        return v


class ForecastSpec(BaseModel):
    """How far ahead the pool provisions: the safety-vs-saving knob."""

    model_config = STRICT
    peak_hold: Duration = 600.0  # how far back the load's swing is measured (the safety knob)
    trend_window: Duration = 600.0  # a rising trend over this window is extrapolated


class SafetySpec(BaseModel):
    model_config = STRICT
    load_max_age: Duration = 60.0
    breaker_failures: int = Field(default=3, ge=1)
    breaker_window: Duration = 600.0
    wake_margin: Duration = 30.0
    spread_failure_domains: bool = True


class AlertsSpec(BaseModel):
    """Where failed wakes, quarantines and the breaker are announced besides the log."""

    model_config = STRICT
    webhook: str | None = None  # POSTed a JSON object {pool, host, kind, detail}


class SshSpec(BaseModel):
    model_config = STRICT
    user: str = "powerpool"
    key: SecretRef
    known_hosts: str
    port: int = Field(default=22, ge=1, le=65535)
    connect_timeout: Duration = 10.0
    command_timeout: Duration = 30.0


class WolSpec(BaseModel):
    model_config = STRICT
    broadcast: str = "255.255.255.255"
    port: int = Field(default=9, ge=1, le=65535)
    interface: str | None = None
    password: SecretRef | None = None
    packets: int = Field(default=3, ge=1, le=20)
    spacing: Duration = 1.0
    nic: str = "eth0"  # the hosts' wake-on-LAN interface, checked by `powerpool host ... wol-check`


class PduSpec(BaseModel):
    model_config = STRICT
    address: str
    port: int = Field(default=161, ge=1, le=65535)
    family: str = "auto"
    snmp_version: Literal["3", "2c", "1"] = "3"
    insecure_snmp: bool = False
    user: str | None = None
    auth_key: SecretRef | None = None
    priv_key: SecretRef | None = None
    auth_protocol: Literal["sha", "sha224", "sha256", "sha384", "sha512"] = "sha256"
    priv_protocol: Literal["aes128", "aes192", "aes256"] = "aes128"
    read_community: SecretRef | None = None
    write_community: SecretRef | None = None
    context: str = ""  # SNMPv3 context name, where the agent serves several PDUs
    max_ops: int = Field(default=1, ge=1)  # requests in flight to this agent at once
    settle: Duration = 2.0  # least time between two commands to one outlet
    unit: int = Field(default=1, ge=1, le=64)  # unit of a daisy chain (Sentry tower B = 2)
    feed: int = Field(default=1, ge=1, le=8)  # its input feed / cord (A = 1)

    @field_validator("snmp_version", mode="before")
    @classmethod
    def _version(cls, v: object) -> object:
        return str(v) if isinstance(v, int) else v

    @model_validator(mode="after")
    def _security(self) -> PduSpec:
        if self.snmp_version == "3":
            missing = [k for k in ("user", "auth_key", "priv_key") if getattr(self, k) is None]
            if missing:
                raise ValueError("SNMPv3 authPriv needs " + ", ".join(missing) + " (keys as env:/file: refs)")
        else:
            if not self.insecure_snmp:
                raise ValueError(
                    f"SNMP v{self.snmp_version} sends communities in clear: set "
                    "insecure_snmp = true to opt in, or use snmp_version = 3"
                )
            if self.write_community is None:
                raise ValueError(f"SNMP v{self.snmp_version} needs write_community (a reference)")
        return self


class HostSpec(BaseModel):
    model_config = STRICT
    name: Name
    address: str
    mac: Mac
    profile: str
    outlets: list[str] = []  # "pdu-name:outlet-number"
    rack: str | None = None
    domain: str | None = None  # any other failure domain (row, circuit, switch)
    exclude: bool = False
    channels: ChannelOrder = ChannelOrder()
    disks: list[str] = []  # block devices spun down for disk_standby, e.g. ["/dev/sdb"]
    ssh_port: int | None = Field(default=None, ge=1, le=65535)  # default: the [ssh] port

    @field_validator("outlets")
    @classmethod
    def _outlets(cls, v: list[str]) -> list[str]:
        for item in v:
            pdu, _, num = item.rpartition(":")
            if not pdu or not num.isdigit() or int(num) < 1:
                raise ValueError(f"expected outlets like 'pdu-a:7' (1-based), not {item!r}")
        return v


class InventoryFile(BaseModel):
    model_config = STRICT
    hosts: list[HostSpec]


class PolicyFile(BaseModel):
    model_config = STRICT
    name: Name
    description: str = ""
    timezone: str = "UTC"
    tick: Duration = Field(default=10.0, gt=0)
    capacity_per_host: float = Field(gt=0)
    target_utilisation: float = Field(gt=0, le=1)
    load: LoadSpec
    reserve: ReserveSpec = ReserveSpec()
    states: StatesSpec
    hysteresis: HysteresisSpec = HysteresisSpec()
    rates: RatesSpec = RatesSpec()
    channels: ChannelOrder = ChannelOrder()
    schedule: list[WindowSpec] = []
    safety: SafetySpec = SafetySpec()
    alerts: AlertsSpec = AlertsSpec()
    ssh: SshSpec | None = None
    wol: WolSpec = WolSpec()
    pdus: dict[Name, PduSpec] = {}
    hosts: list[HostSpec] = []
    inventory: str | None = None
    forecast: ForecastSpec = ForecastSpec()

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("unknown time zone; expected e.g. UTC or Europe/Berlin") from None
        return v

    @model_validator(mode="after")
    def _hosts_somewhere(self) -> PolicyFile:
        if not self.hosts and self.inventory is None:
            raise ValueError("a policy needs [[hosts]] or inventory = 'file.toml'")
        return self
