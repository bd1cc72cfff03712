"""A small emulated rack for channel tests: SSH hosts and a WOL listener on a background
loop, an snmpsim PDU whose outlets feed the hosts, a client key and pinned known_hosts."""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

from powerpool.channels.pdu_profile import load_pdu_profiles
from powerpool.channels.snmp_pdu import PduChannel, PduTarget, Snmp
from powerpool.channels.ssh import SshTarget
from powerpool.channels.wol import WolTarget
from powerpool.lab.host import (
    EmulatedHost,
    HostBehaviour,
    WolListener,
    authorized,
    new_key,
    save_key,
    write_known_hosts,
)
from powerpool.lab.loop import BackgroundLoop
from powerpool.lab.snmp_agent import EmulatedOutlet, SnmpAgent, pdu_records, render_snmprec
from tests.conftest import REPO as ROOT

PROFILES = load_pdu_profiles(ROOT / "hardware" / "pdus")


@dataclass
class Rack:
    behaviours: dict[str, HostBehaviour]
    outlets: dict[str, tuple[int, ...]] = field(default_factory=dict)  # host -> outlet numbers on "pdu"
    stuck: tuple[int, ...] = ()

    def __enter__(self) -> Rack:
        self._tmp = tempfile.TemporaryDirectory(prefix="powerpool-rack-")
        self.dir = Path(self._tmp.name)
        self.loop = BackgroundLoop().__enter__()
        client = new_key()
        self.key = save_key(client, self.dir / "id_ed25519")
        self.other_key = save_key(new_key(), self.dir / "other_ed25519")
        numbers = sorted({n for ns in self.outlets.values() for n in ns} | set(self.stuck)) or [1]
        files = {
            "pdu": render_snmprec(
                pdu_records(
                    PROFILES["apc-rpdu"], [EmulatedOutlet(n, "on", stuck=n in self.stuck) for n in numbers]
                )
            )
        }
        self.agent = SnmpAgent(files, statedir=self.dir / "outlets").__enter__()
        self.hosts: dict[str, EmulatedHost] = {}
        for i, (name, b) in enumerate(self.behaviours.items()):
            power = tuple(self.dir / "outlets" / "pdu" / str(n) for n in self.outlets.get(name, ()))
            self.hosts[name] = EmulatedHost(
                name,
                f"02:00:00:00:00:{i + 1:02x}",
                new_key(),
                authorized([client]),
                behaviour=b,
                power_files=power,
            )
        self.wol = WolListener({h.mac: h for h in self.hosts.values()})

        async def start() -> None:
            for h in self.hosts.values():
                await h.listen()
                asyncio.get_running_loop().create_task(h.watch_power())
            await self.wol.start()

        self.loop.run(start())
        self.known_hosts = self.dir / "known_hosts"
        write_known_hosts(self.known_hosts, list(self.hosts.values()))
        return self

    def __exit__(self, *exc: object) -> None:
        async def stop() -> None:
            for h in self.hosts.values():
                await h.silence()
            self.wol.close()
            for t in asyncio.all_tasks():
                if t is not asyncio.current_task():
                    t.cancel()

        self.loop.run(stop())
        self.loop.__exit__(None, None, None)
        self.agent.stop()
        self._tmp.cleanup()

    def ssh(self, name: str, **kw: object) -> SshTarget:
        args: dict[str, object] = {
            "key": self.key,
            "known_hosts": self.known_hosts,
            "port": self.hosts[name].port,
            "connect_timeout_s": 2.0,
            "command_timeout_s": 3.0,
            "disks": ("/dev/sdb",),
            **kw,
        }
        return SshTarget(name, "127.0.0.1", "powerpool", **args)  # type: ignore[arg-type]

    def wol_target(self, name: str, **kw: object) -> WolTarget:
        args: dict[str, object] = {"packets": 3, "spacing_s": 0.05, **kw}
        return WolTarget(name, self.hosts[name].mac, "127.0.0.1", self.wol.port, **args)  # type: ignore[arg-type]

    def pdu(self) -> PduTarget:
        return PduTarget(
            "pdu",
            *self.agent.address,
            version="2c",
            read_community="pdu",
            write_community="pdu",
            settle_s=0.2,
        )

    @asynccontextmanager
    async def pdu_channel(self) -> AsyncIterator[PduChannel]:
        """The rack's PDU on a fresh engine, its family detected."""
        async with Snmp(0.5, 1) as snmp:
            pdu = PduChannel(snmp, self.pdu(), poll_s=0.05)
            await pdu.detect(PROFILES)
            yield pdu


def fresh_key_line(host: EmulatedHost) -> str:
    other: asyncssh.SSHKey = new_key()
    return f"[127.0.0.1]:{host.port} {other.export_public_key('openssh').decode().strip()}\n"
