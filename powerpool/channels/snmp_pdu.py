"""Switched PDUs over SNMP (pysnmp 7, asyncio). The only module that imports pysnmp.

One SnmpEngine per event loop (engines are loop-bound); per PDU, at most `max_ops`
requests in flight (agents are fragile) and at most `max_ops` outlets switching, from
the SET until the state is read back (relays closing together draw inrush current;
default 1). Typed SET values, and every
varbind of every reply checked: a SET can "succeed" with a noSuchInstance varbind.
Outlet commands are verified by reading the state back to the goal; a cycle is never
retried blindly (a resent SET after a lost reply would cycle twice).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC128_SHA224,
    USM_AUTH_HMAC192_SHA256,
    USM_AUTH_HMAC256_SHA384,
    USM_AUTH_HMAC384_SHA512,
    USM_PRIV_CFB128_AES,
    USM_PRIV_CFB192_AES,
    USM_PRIV_CFB256_AES,
    CommunityData,
    ContextData,
    Integer32,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    UdpTransportTarget,
    UsmUserData,
    get_cmd,
    next_cmd,
    set_cmd,
)
from pysnmp.proto import errind, rfc1905

from powerpool.channels.base import CallPolicy, Channel, Outcome
from powerpool.channels.pdu_profile import Column, Command, OutletState, PduProfile, WattsColumn, candidates
from powerpool.config.schema import PduSpec
from powerpool.errors import (
    AuthFailed,
    ChannelError,
    NoAnswer,
    Refused,
    TransientChannelError,
)
from powerpool.secrets import resolve

SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
_AUTH = {
    "sha": USM_AUTH_HMAC96_SHA,
    "sha224": USM_AUTH_HMAC128_SHA224,
    "sha256": USM_AUTH_HMAC192_SHA256,
    "sha384": USM_AUTH_HMAC256_SHA384,
    "sha512": USM_AUTH_HMAC384_SHA512,
}
_PRIV = {"aes128": USM_PRIV_CFB128_AES, "aes192": USM_PRIV_CFB192_AES, "aes256": USM_PRIV_CFB256_AES}
_AUTH_ERRORS = (
    "UnknownUserName",
    "UnknownSecurityName",
    "WrongDigest",
    "AuthenticationFailure",
    "AuthenticationError",
    "DecryptionError",
    "UnsupportedSecLevel",
    "UnknownCommunityName",
)
_TRANSIENT_STATUS = {"genErr", "resourceUnavailable", "commitFailed", "tooBig"}


@dataclass(frozen=True, slots=True)
class PduTarget:
    """How to reach one PDU, secrets already resolved (held in memory only)."""

    name: str
    host: str
    port: int = 161
    version: Literal["3", "2c", "1"] = "3"
    user: str = ""
    auth_key: str = ""
    priv_key: str = ""
    auth_protocol: str = "sha256"
    priv_protocol: str = "aes128"
    read_community: str = ""
    write_community: str = ""
    context: str = ""
    max_ops: int = 1
    settle_s: float = 2.0  # least time between two commands to the same outlet
    unit: int = 1  # of a daisy chain (Sentry tower, Raritan linked PDU): 1 = A, the master
    feed: int = 1  # input feed (Sentry infeed / cord) of that unit: 1 = A

    @classmethod
    def from_spec(cls, name: str, spec: PduSpec) -> PduTarget:
        """Resolve the spec's secret references (SecretError names the one that fails)."""
        write = resolve(spec.write_community) if spec.write_community else ""
        return cls(
            name=name,
            host=spec.address,
            port=spec.port,
            version=spec.snmp_version,
            user=spec.user or "",
            auth_key=resolve(spec.auth_key) if spec.auth_key else "",
            priv_key=resolve(spec.priv_key) if spec.priv_key else "",
            auth_protocol=spec.auth_protocol,
            priv_protocol=spec.priv_protocol,
            read_community=resolve(spec.read_community) if spec.read_community else write,
            write_community=write,
            context=spec.context,
            max_ops=spec.max_ops,
            settle_s=spec.settle,
            unit=spec.unit,
            feed=spec.feed,
        )

    @property
    def key(self) -> tuple[str, int, str, str]:
        """One agent may serve several PDUs (SNMPv3 contexts, communities of a proxy)."""
        return (self.host, self.port, self.context, self.read_community)

    def auth(self, write: bool) -> Any:
        if self.version == "3":
            return UsmUserData(
                self.user,
                self.auth_key,
                self.priv_key,
                authProtocol=_AUTH[self.auth_protocol],
                privProtocol=_PRIV[self.priv_protocol],
            )
        community = self.write_community if write else self.read_community
        return CommunityData(community, mpModel=0 if self.version == "1" else 1)


@dataclass(frozen=True, slots=True)
class OutletReading:
    number: int
    name: str | None
    state: OutletState
    watts: float | None


class Snmp:
    """GET/SET/GETNEXT with powerpool's error mapping; one engine for the running loop.

    Use as `async with Snmp() as snmp:` so the dispatcher is closed on exit.
    """

    def __init__(self, timeout_s: float = 1.0, retries: int = 1) -> None:
        self.timeout_s, self.retries = timeout_s, retries
        self.engine = SnmpEngine()
        self._locks: dict[tuple[str, int, str, str], asyncio.Semaphore] = {}
        self._ops: dict[tuple[str, int, str, str], asyncio.Semaphore] = {}
        self._transports: dict[tuple[str, int, int], Any] = {}  # resolved once per agent

    async def __aenter__(self) -> Snmp:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.engine.close_dispatcher()

    def _lock(self, t: PduTarget) -> asyncio.Semaphore:
        return self._locks.setdefault(t.key, asyncio.Semaphore(t.max_ops))

    def operation(self, t: PduTarget) -> asyncio.Semaphore:
        """Held by an outlet command from its first read until its state is verified."""
        return self._ops.setdefault(t.key, asyncio.Semaphore(t.max_ops))

    async def _send(self, t: PduTarget, op: str, fn: Any, binds: list[Any], write: bool, retries: int) -> Any:
        key = (t.host, t.port, retries)
        transport = self._transports.get(key)
        if transport is None:
            transport = await UdpTransportTarget.create(
                (t.host, t.port), timeout=self.timeout_s, retries=retries
            )
            self._transports[key] = transport
        async with self._lock(t):
            ei, es, eidx, vbs = await fn(
                self.engine,
                t.auth(write),
                transport,
                ContextData(contextName=t.context),
                *binds,
                lookupMib=False,
            )
        if ei:
            raise _indication(t, op, ei, self.timeout_s * (retries + 1))
        if int(es):
            status = es.prettyPrint()
            where = f" at {binds[int(eidx) - 1][0]}" if int(eidx) else ""
            cls = TransientChannelError if status in _TRANSIENT_STATUS else Refused
            raise cls(t.name, "pdu", op, f"the PDU answered {status}{where}")
        return vbs

    async def get(self, t: PduTarget, oids: Sequence[str], op: str = "get") -> list[Any]:
        """Values of `oids`, in order; an object the PDU does not have raises Refused."""
        binds = [ObjectType(ObjectIdentity(o)) for o in oids]
        vbs = await self._send(t, op, get_cmd, binds, False, self.retries)
        return [_value(t, op, vb) for vb in vbs]

    async def get_maybe(self, t: PduTarget, oid: str, op: str = "get") -> Any | None:
        """A value, or None where the PDU has no such object (an optional column)."""
        try:
            return (await self.get(t, [oid], op))[0]
        except Refused:
            return None

    async def set_int(self, t: PduTarget, oid: str, value: int, op: str, retry: bool = True) -> None:
        """SET an Integer32 and check the echoed varbind (a SET can 'succeed' with
        noSuchInstance). `retry=False` for commands that are not idempotent (cycle)."""
        binds = [ObjectType(ObjectIdentity(oid), Integer32(value))]
        vbs = await self._send(t, op, set_cmd, binds, True, self.retries if retry else 0)
        _value(t, op, vbs[0])

    async def column(
        self, t: PduTarget, column: str, op: str = "walk", limit: int = 512
    ) -> list[tuple[str, Any]]:
        """Every (oid, value) under `column`, by GETNEXT until the column ends."""
        out: list[tuple[str, Any]] = []
        current = column
        for _ in range(limit):
            vbs = await self._send(
                t, op, next_cmd, [ObjectType(ObjectIdentity(current))], False, self.retries
            )
            oid, value = str(vbs[0][0]), vbs[0][1]
            if not oid.startswith(column + ".") or isinstance(value, rfc1905.EndOfMibView):
                break
            out.append((oid, _plain(value)))
            current = oid
        return out


def _indication(t: PduTarget, op: str, ei: Any, waited: float) -> ChannelError:
    if isinstance(ei, errind.RequestTimedOut):
        hint = "the PDU is down or unreachable" + (
            ", or the community is wrong (v1/v2c agents stay silent)" if t.version != "3" else ""
        )
        return NoAnswer(t.name, "pdu", op, f"no answer from {t.host}:{t.port} within {waited:g} s: {hint}")
    if type(ei).__name__ in _AUTH_ERRORS:
        return AuthFailed(t.name, "pdu", op, f"SNMPv3 credentials refused by {t.host}: {ei}")
    return TransientChannelError(t.name, "pdu", op, str(ei))


def _value(t: PduTarget, op: str, vb: Any) -> Any:
    oid, value = vb[0], vb[1]
    if isinstance(value, rfc1905.NoSuchObject | rfc1905.NoSuchInstance | rfc1905.EndOfMibView):
        raise Refused(
            t.name, "pdu", op, f"the PDU has no object {oid} ({value.prettyPrint()}): wrong family or outlet"
        )
    return _plain(value)


def _plain(value: Any) -> Any:
    if hasattr(value, "asOctets"):
        return bytes(value.asOctets()).decode("utf-8", "replace").rstrip("\x00")
    try:
        return int(value)
    except (TypeError, ValueError):
        return value.prettyPrint()


class PduChannel(Channel):
    """One PDU: detect its family, read outlets, switch them and verify the result."""

    name = "pdu"

    def __init__(
        self, snmp: Snmp, target: PduTarget, profile: PduProfile | None = None, poll_s: float = 0.25
    ) -> None:
        # pysnmp times out first; this outer bound only catches a wedged dispatcher
        super().__init__(CallPolicy(timeout_s=snmp.timeout_s * (snmp.retries + 1) * 2 + 2.0, retries=0))
        self.snmp, self.target, self.profile, self.poll_s = snmp, target, profile, poll_s
        self.sys_object_id = ""
        self._last_command: dict[int, float] = {}

    async def detect(self, profiles: dict[str, PduProfile]) -> PduProfile:
        """The family by sysObjectID, confirmed by the profile's state column answering
        (vendor labels disagree, so a probe decides); falls back to a name column."""
        self.sys_object_id = str((await self.snmp.get(self.target, [SYS_OBJECT_ID], "detect"))[0])
        ranked = candidates(profiles, self.sys_object_id)
        # The first row settles it for the first unit; a later unit's rows follow the
        # units before it.
        rows_needed = 1 if (self.target.unit, self.target.feed) == (1, 1) else 512
        for column in ("state", "name"):
            for prof in ranked:
                col = prof.state if column == "state" else prof.name
                if col is None:
                    continue
                rows = await self.snmp.column(self.target, col.oid, "detect", limit=rows_needed)
                if any(self._number(col, oid, prof) is not None for oid, _ in rows):
                    self.profile = prof
                    return prof
        raise Refused(
            self.target.name,
            "pdu",
            "detect",
            f"sysObjectID {self.sys_object_id}: no known PDU family answers (hardware/pdus/ lists them)",
        )

    def _profile(self) -> PduProfile:
        if self.profile is None:
            raise RuntimeError("PduChannel used before detect() or without a profile")
        return self.profile

    async def state(self, n: int) -> OutletState:
        p = self._profile()
        return p.decode(
            int((await self.snmp.get(self.target, [self._oid(p.state, n)], f"outlet {n} state"))[0])
        )

    def _oid(self, column: Column, n: int) -> str:
        return self._profile().oid(column, n, self.target.unit, self.target.feed)

    def _number(self, column: Column, oid: str, profile: PduProfile | None = None) -> int | None:
        """Outlet number of a row of this target's unit and feed (None: another row)."""
        return (profile or self._profile()).number(column, oid, self.target.unit, self.target.feed)

    async def watts(self, n: int) -> float | None:
        p = self._profile()
        if p.watts is None:
            return None
        raw = await self.snmp.get_maybe(self.target, self._oid(p.watts, n), f"outlet {n} watts")
        if raw is None or int(raw) < 0:
            return None
        digits = 0
        if p.watts.decimals is not None:
            got = await self.snmp.get_maybe(
                self.target, self._oid(p.watts.decimals, n), f"outlet {n} watt digits"
            )
            digits = int(got) if got is not None else 0
        return _watts(p.watts, int(raw), digits)

    async def meters(self) -> dict[int, float]:
        """Watts per outlet, one walk of the meter column ({} when the PDU meters none)."""
        p = self._profile()
        watts: dict[int, float] = {}
        if p.watts is None:
            return watts
        digits: dict[int, int] = {}
        if p.watts.decimals is not None:
            for oid, v in await self.snmp.column(
                self.target, p.watts.decimals.oid, "list watt digits", limit=4096
            ):
                if (n := self._number(p.watts.decimals, oid)) is not None and isinstance(v, int):
                    digits[n] = v
        for oid, v in await self.snmp.column(self.target, p.watts.oid, "list watts", limit=4096):
            if (n := self._number(p.watts, oid)) is not None and isinstance(v, int) and v >= 0:
                watts[n] = _watts(p.watts, v, digits.get(n, 0))
        return watts

    async def outlets(self) -> list[OutletReading]:
        """Every outlet the PDU lists, numbered as its own interface shows them."""
        p = self._profile()
        states = {
            n: p.decode(v if isinstance(v, int) else None)
            for oid, v in await self.snmp.column(self.target, p.state.oid, "list outlets")
            if (n := self._number(p.state, oid)) is not None
        }
        names: dict[int, str] = {}
        if p.name is not None:
            for oid, v in await self.snmp.column(self.target, p.name.oid, "list names"):
                if (n := self._number(p.name, oid)) is not None:
                    names[n] = str(v)
        watts = await self.meters()
        numbers = sorted(set(states) | set(names))
        return [OutletReading(n, names.get(n), states.get(n, "unknown"), watts.get(n)) for n in numbers]

    async def switch(self, n: int, command: Command, deadline_s: float = 10.0) -> Outcome:
        """Drive outlet `n` to on/off (idempotent: no SET when already there) or cycle it,
        and verify by reading the state back before the deadline."""
        async with self.snmp.operation(self.target):
            return await self._switch(n, command, deadline_s)

    async def _switch(self, n: int, command: Command, deadline_s: float) -> Outcome:
        p = self._profile()
        target = f"{self.target.name}:{n}"
        start = time.monotonic()
        before = await self.call(target, f"{command} read", lambda: self.state(n))
        if command != "cycle" and before == command:
            return Outcome(target, before, True, 0.0, self.name, "already " + before)
        write = p.write(command)
        if write is None:
            raise Refused(target, "pdu", command, f"family {p.family} has no {command} command")
        await self._space(n)
        await self.call(
            target,
            command,
            lambda: self.snmp.set_int(
                self.target, self._oid(write, n), write.value, command, command != "cycle"
            ),
            idempotent=command != "cycle",
        )
        self._last_command[n] = time.monotonic()
        goal: OutletState = "on" if command == "cycle" else command
        seen_off = [before != "on"]

        def reached(s: OutletState) -> bool:
            seen_off[0] |= s != "on"
            settled = time.monotonic() - start >= self.target.settle_s
            return s == goal and (command != "cycle" or seen_off[0] or settled)

        await self.verify(target, command, lambda: self.state(n), reached, deadline_s, self.poll_s, start)
        return Outcome(target, goal, False, time.monotonic() - start, self.name)

    async def _space(self, n: int) -> None:
        """Leave `settle_s` between two commands to one outlet (PSU hold-up, toggle spacing)."""
        last = self._last_command.get(n)
        if last is not None:
            wait = self.target.settle_s - (time.monotonic() - last)
            if wait > 0:
                await asyncio.sleep(wait)


def _watts(column: WattsColumn, raw: int, digits: int) -> float:
    """A meter reading in watts (digits: decimal places the PDU says the reading has)."""
    return float(raw * column.scale) / float(10 ** max(0, min(digits, 9)))
