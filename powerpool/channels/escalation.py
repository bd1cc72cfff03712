"""Escalation: per host, an ordered list of channels per transition, under one overall
deadline from the hardware profile.

A wake tries each channel of the host's `wake` order (e.g. WOL, then a PDU power cycle)
and is verified by the SSH readiness probe (a new boot id or one more resume). Going
down uses SSH for the OS states; `off` and `unpowered` may start with a graceful SSH
poweroff but never depend on it: the outlets are cut after the host reads off or after
its share of the deadline. A host on several outlets is off only when every outlet reads
off, and a power cycle turns every outlet off before any comes back on.

A transient failure moves on to the next channel; a fatal one (key refused, host key
changed, no sudo right) stops at once so the host can be quarantined with the reason.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

from powerpool.channels.base import Outcome
from powerpool.channels.snmp_pdu import PduChannel
from powerpool.channels.ssh import GONE, Readiness, SshChannel, SshTarget
from powerpool.channels.wol import WolChannel, WolTarget
from powerpool.errors import FatalChannelError, Refused, TransientChannelError, TransitionTimeout
from powerpool.model import WARM_STATES, PowerState


@dataclass(frozen=True)
class HostLinks:
    """Everything needed to reach one host, and its channel order per transition."""

    name: str
    ssh: SshTarget | None = None
    wol: WolTarget | None = None
    outlets: tuple[tuple[PduChannel, int], ...] = ()
    order: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


class Escalator:
    def __init__(self, ssh: SshChannel, wol: WolChannel) -> None:
        self.ssh, self.wol = ssh, wol
        self.before: dict[str, Readiness] = {}  # proof-of-return baseline per host
        self.attempts: list[tuple[str, str, str]] = []  # (host, channel, result) for evidence

    async def drive(self, h: HostLinks, src: PowerState, goal: PowerState, deadline_s: float) -> Outcome:
        """Reach `goal` from `src` through the host's channels, or raise: FatalChannelError
        (quarantine) or TransitionTimeout listing what each channel did."""
        start = time.monotonic()
        waking = goal in WARM_STATES and src not in WARM_STATES
        key = "wake" if waking else goal.value
        order = h.order.get(key) or (("wol", "pdu") if waking else ("ssh",))
        if src is PowerState.UNPOWERED and "pdu" in order:
            order = tuple(c for c in order if c != "wol")  # no power, no NIC: WOL cannot work
        failures: list[str] = []
        for i, channel in enumerate(order):
            left = deadline_s - (time.monotonic() - start)
            share = left if i == len(order) - 1 else left / (len(order) - i)
            if channel == "ssh" and goal is PowerState.UNPOWERED and h.ssh is not None:
                await self._graceful(h.ssh, share)  # then cut the outlets whatever happened
                continue
            try:
                out = await asyncio.wait_for(self._one(h, channel, src, goal, share, waking), share + 1.0)
            except FatalChannelError:
                self.attempts.append((h.name, channel, "fatal"))
                raise
            except (TransientChannelError, TimeoutError) as e:
                detail = (
                    e.detail if isinstance(e, TransientChannelError) else f"no result within {share:.0f} s"
                )
                self.attempts.append((h.name, channel, "failed"))
                failures.append(f"{channel}: {detail}")
                continue
            self.attempts.append((h.name, channel, "ok"))
            return Outcome(h.name, out.reached, out.noop, time.monotonic() - start, channel, out.detail)
        raise TransitionTimeout(
            h.name,
            "+".join(order),
            f"{src.value}->{goal.value}",
            "every channel failed: " + "; ".join(failures),
        )

    async def _one(
        self, h: HostLinks, channel: str, src: PowerState, goal: PowerState, budget: float, waking: bool
    ) -> Outcome:
        started = time.monotonic()
        if channel == "ssh":
            if waking:
                raise Refused(h.name, "ssh", "wake", "SSH cannot wake a host; list wol or pdu for wake")
            t = self._ssh(h, "ssh")
            if goal is PowerState.UNPOWERED:
                raise Refused(h.name, "ssh", goal.value, "SSH alone cannot cut power; add pdu after ssh")
            out, before = await self.ssh.enter(t, goal, budget)
            if before is not None:
                self.before[h.name] = before
            return out
        if channel == "wol":
            if not waking:
                raise Refused(h.name, "wol", goal.value, "Wake-on-LAN only wakes")
            if h.wol is None:
                raise Refused(h.name, "wol", "wake", "no MAC / WOL settings for this host")
            await self.wol.send(h.wol)
            return await self._ready(h, budget, started)
        if channel == "pdu":
            if not h.outlets:
                raise Refused(h.name, "pdu", goal.value, "the host has no outlets listed")
            if waking:
                await self._outlets(h, "off", budget / 3)  # a cycle: every outlet off before any on
                await self._outlets(h, "on", budget / 3)
                return await self._ready(h, budget, started)
            if goal in GONE and goal is not PowerState.OFF:
                raise Refused(h.name, "pdu", goal.value, "a PDU can only cut power (off / unpowered)")
            await self._outlets(h, "off", budget)
            return Outcome(h.name, PowerState.UNPOWERED.value, False, time.monotonic() - started, "pdu")
        raise Refused(h.name, channel, goal.value, f"unknown channel {channel!r}")

    async def _graceful(self, t: SshTarget, budget: float) -> None:
        """A clean OS shutdown before the power is cut; its failure only costs time."""
        try:
            _, before = await asyncio.wait_for(self.ssh.enter(t, PowerState.OFF, budget), budget + 1.0)
            if before is not None:
                self.before[t.host] = before  # the proof of its next boot
            self.attempts.append((t.host, "ssh", "ok"))
        except (TransientChannelError, FatalChannelError, TimeoutError):
            self.attempts.append((t.host, "ssh", "failed"))

    def _ssh(self, h: HostLinks, why: str) -> SshTarget:
        if h.ssh is None:
            raise Refused(h.name, "ssh", why, "no SSH settings for this host")
        return h.ssh

    async def _ready(self, h: HostLinks, budget: float, started: float) -> Outcome:
        return await self.ssh.wait_ready(self._ssh(h, "wake"), self.before.get(h.name), budget, started)

    async def _outlets(self, h: HostLinks, command: str, budget: float) -> None:
        """Switch every outlet of the host and verify each (all PDUs in parallel)."""
        results = await asyncio.gather(
            *(pdu.switch(n, command, budget) for pdu, n in h.outlets),  # type: ignore[arg-type]
            return_exceptions=True,
        )
        for r in results:
            if isinstance(r, BaseException):
                raise r
