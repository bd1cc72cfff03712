"""Wake-on-LAN (wakeonlan 4, `wake()`): a burst of magic packets, spaced out, to the
broadcast or directed subnet broadcast of the host's segment from a chosen interface,
with the SecureOn password when the NIC has one. A single UDP packet gets lost, and the
packet itself proves nothing: the wake is verified by the SSH readiness probe."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import wakeonlan

from powerpool.channels.base import CallPolicy, Channel, Outcome
from powerpool.errors import ChannelError, Refused


@dataclass(frozen=True, slots=True)
class WolTarget:
    host: str
    mac: str
    broadcast: str = "255.255.255.255"
    port: int = 9
    interface: str | None = None  # local IP to send from (the host's segment)
    password: str = ""  # SecureOn, "aa:bb:cc:dd:ee:ff" form
    packets: int = 3
    spacing_s: float = 1.0


class WolChannel(Channel):
    name = "wol"

    def __init__(self) -> None:
        super().__init__(CallPolicy(timeout_s=2.0, retries=0))

    def map_error(self, target: str, operation: str, exc: BaseException) -> ChannelError | None:
        if isinstance(exc, ValueError):
            return Refused(target, self.name, operation, f"bad MAC or SecureOn password: {exc}")
        if isinstance(exc, OSError):
            return Refused(
                target, self.name, operation, f"cannot send the magic packet: {exc.strerror or exc}"
            )
        return None

    async def send(self, t: WolTarget) -> Outcome:
        """Send the burst (the spacing is awaited, not slept); nothing is verified here."""
        mac = f"{t.mac}/{t.password}" if t.password else t.mac
        for i in range(t.packets):
            await self.call(t.host, "wake", lambda: _send(mac, t))
            if i < t.packets - 1:
                await asyncio.sleep(t.spacing_s)
        return Outcome(
            t.host, "sent", False, t.spacing_s * (t.packets - 1), self.name, f"{t.packets} packets"
        )


async def _send(mac: str, t: WolTarget) -> None:
    wakeonlan.wake(mac, host=t.broadcast, port=t.port, interface=t.interface)
