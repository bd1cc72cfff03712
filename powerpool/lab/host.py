"""An emulated server on loopback: an SSH server (asyncssh) whose commands act like a
Linux host's power interface, and a UDP Wake-on-LAN listener that wakes it.

The emulation is what powerpool's channels see of a real host: `cat` of boot_id,
suspend_stats and the governor; `sudo -n` with exact commands (a command outside the
host's sudo rules fails as sudo does); suspend that stops the SSH server answering after
its enter time; a magic packet (MAC and SecureOn password checked) that brings it back
after its ready time, with a new boot id when it was off. Faults for tests: a suspend
that hangs the session, a NIC that ignores magic packets.
"""

from __future__ import annotations

import asyncio
import logging
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import asyncssh

logging.getLogger("asyncssh").setLevel(logging.WARNING)  # one INFO line per connection otherwise

SUDO_RULES = (
    "cpupower frequency-set -g powersave",
    "cpupower frequency-set -g performance",
    "hdparm -y",
    "hdparm -C",
    "systemd-run --on-active=2 systemctl suspend",
    "systemd-run --on-active=2 systemctl hibernate",
    "systemd-run --on-active=2 systemctl poweroff",
)


CORES = 8  # the emulated hosts' CPU count: loadavg / CORES is how busy one is


@dataclass
class HostBehaviour:
    enter_s: float = 0.2  # suspend/poweroff take this long before the host goes silent
    ready_s: float = 0.3  # from magic packet to SSH answering
    # per state, from a hardware profile (the lab scales them by --speed); else the above
    enter_by_state: dict[str, float] = field(default_factory=dict)
    ready_by_state: dict[str, float] = field(default_factory=dict)

    def enter(self, state: str) -> float:
        return self.enter_by_state.get(state, self.enter_s)

    def ready(self, state: str) -> float:
        return self.ready_by_state.get(state, self.ready_s)

    sudo: tuple[str, ...] = SUDO_RULES  # command prefixes allowed by sudoers
    hang_on_suspend: bool = False  # the session never returns (a broken suspend)
    ignore_wol: bool = False  # NIC not armed, or the packet is lost
    never_boots: bool = False  # a dead board: no packet or power-on brings it back
    wol_password: bytes = b""  # SecureOn; empty = none
    disks: tuple[str, ...] = ("/dev/sdb",)
    loadavg: float = 0.1


@dataclass
class EmulatedHost:
    """One host: its power state and SSH endpoint; runs on the lab's event loop."""

    name: str
    mac: str
    host_key: asyncssh.SSHKey
    authorized: asyncssh.SSHAuthorizedKeys
    user: str = "powerpool"
    behaviour: HostBehaviour = field(default_factory=HostBehaviour)
    port: int = 0
    state: str = "active"  # active | freq_scaled | sleep | hibernate | off | unpowered | booting
    boot_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    suspend_success: int = 0
    governor: str = "performance"
    disk_state: dict[str, str] = field(default_factory=dict)
    wakes: int = 0  # valid magic packets received
    woken: int = 0  # times a packet brought it back from sleep, hibernate or off
    commands: list[str] = field(default_factory=list)
    power_files: tuple[Path, ...] = ()  # the emulated PDU's outlet state files feeding this host
    draw_w: dict[str, float] = field(default_factory=dict)  # watts per state, shown on the outlet meters
    connections: int = 0  # SSH connections accepted (evidence for the lab's summary)
    _server: asyncssh.SSHAcceptor | None = None
    _conns: set[asyncssh.SSHServerConnection] = field(default_factory=set)

    async def listen(self) -> None:
        self._server = await asyncssh.create_server(
            lambda: _Server(self),
            "127.0.0.1",
            self.port,
            server_host_keys=[self.host_key],
            authorized_client_keys=self.authorized,
            process_factory=self._process,
            keepalive_interval=0,
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def silence(self) -> None:
        """The host stops answering (asleep or off): close the listener, drop connections."""
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None
        for conn in list(self._conns):
            conn.abort()
        self._conns.clear()

    async def _go_down(self, to: str) -> None:
        await asyncio.sleep(self.behaviour.enter(to))
        self.state = to
        await self.silence()

    async def wake(self) -> None:
        b = self.behaviour
        if self.state not in ("sleep", "hibernate", "off") or b.ignore_wol or b.never_boots:
            return
        was, self.state = self.state, "booting"  # later packets of the burst change nothing
        self.woken += 1
        await asyncio.sleep(self.behaviour.ready(was))
        if was == "sleep":
            self.suspend_success += 1
        else:  # off or hibernate: a fresh boot
            self.boot_id = str(uuid.uuid4())
        self.state, self.governor = "active", "performance"
        await self.listen()

    def powered(self) -> bool:
        """Any outlet on powers the host (dual PSUs); no outlets: always powered."""
        if not self.power_files:
            return True
        return any((not f.exists()) or f.read_text() == "on" for f in self.power_files)

    def publish_draw(self) -> None:
        """Tell the outlet meters what this host draws now, split over its outlets."""
        if not self.draw_w or not self.power_files:
            return
        watts = self.draw_w.get(self.state, self.draw_w.get("active", 0.0))
        if self.state == "active" and "active_peak" in self.draw_w:  # busier draws more
            busy = min(1.0, self.behaviour.loadavg / CORES)
            watts += (self.draw_w["active_peak"] - self.draw_w["active"]) * busy
        watts /= len(self.power_files)
        for f in self.power_files:
            f.parent.mkdir(parents=True, exist_ok=True)
            tmp = f.with_name(f".{f.name}.watts.tmp")
            tmp.write_text(f"{watts:.0f}")
            tmp.replace(f.with_name(f"{f.name}.watts"))

    async def watch_power(self, interval_s: float = 0.05) -> None:
        """Follow the outlets: losing power drops the host at once; power back boots it.
        Publishes the host's draw whenever its state changed."""
        shown: tuple[str, float] | None = None
        while True:
            if (self.state, self.behaviour.loadavg) != shown:
                shown = (self.state, self.behaviour.loadavg)
                self.publish_draw()
            if not self.powered() and self.state != "unpowered":
                self.state = "unpowered"
                await self.silence()
            elif self.powered() and self.state == "unpowered" and not self.behaviour.never_boots:
                self.state = "booting"
                await asyncio.sleep(self.behaviour.ready("unpowered"))
                self.boot_id, self.state, self.governor = str(uuid.uuid4()), "active", "performance"
                await self.listen()
            await asyncio.sleep(interval_s)

    async def _process(self, process: asyncssh.SSHServerProcess[str]) -> None:
        cmd = (process.command or "").strip()
        self.commands.append(cmd)
        code, out = await self._run(cmd)
        process.stdout.write(out)
        process.exit(code)

    async def _run(self, cmd: str) -> tuple[int, str]:
        if cmd.startswith("sudo -n "):
            inner = cmd[len("sudo -n ") :]
            listing = inner.startswith("-l ")
            inner = inner[3:] if listing else inner
            if not any(inner == r or inner.startswith(r + " ") for r in self.behaviour.sudo):
                return 1, "sudo: a password is required\n"
            return (0, f"/usr/bin/{inner}\n") if listing else await self._root(inner)
        files = {
            "/proc/sys/kernel/random/boot_id": self.boot_id,
            "/sys/power/suspend_stats/success": str(self.suspend_success),
            "/proc/loadavg": f"{self.behaviour.loadavg:.2f} 0.10 0.05 1/200 4242",
            "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor": self.governor,
            "/sys/power/mem_sleep": "s2idle [deep]",
        }
        words = cmd.split()
        if words[:1] == ["cat"] and len(words) > 1:
            missing = [w for w in words[1:] if w not in files]
            if missing:
                return 1, f"cat: {missing[0]}: No such file or directory\n"
            return 0, "".join(files[w] + "\n" for w in words[1:])
        if cmd.startswith("ethtool "):
            return 0, "Settings for eth0:\n\tSupports Wake-on: pumbg\n\tWake-on: g\n"
        if cmd == "true":
            return 0, ""
        return 127, f"sh: {cmd.split()[0] if cmd else ''}: not found\n"

    async def _root(self, cmd: str) -> tuple[int, str]:
        words = cmd.split()
        if words[:3] == ["cpupower", "frequency-set", "-g"]:
            self.governor = words[3]
            self.state = "freq_scaled" if self.governor == "powersave" else "active"
            return 0, "Setting cpu: 0\n"
        if words[:2] == ["hdparm", "-y"]:
            for d in words[2:]:
                self.disk_state[d] = "standby"
            return 0, "".join(f"\n{d}:\n issuing standby command\n" for d in words[2:])
        if words[:2] == ["hdparm", "-C"]:
            return 0, "".join(
                f"\n{d}:\n drive state is:  {self.disk_state.get(d, 'active/idle')}\n" for d in words[2:]
            )
        if words[:3] == ["systemd-run", "--on-active=2", "systemctl"]:
            verb = words[3]
            if verb == "suspend" and self.behaviour.hang_on_suspend:
                await asyncio.Event().wait()  # the session hangs forever
            to = {"suspend": "sleep", "hibernate": "hibernate", "poweroff": "off"}[verb]
            asyncio.get_running_loop().create_task(self._go_down(to))
            return 0, f"Running timer as unit: run-u{self.wakes}.timer\n"
        return 127, f"sudo: {words[0]}: command not found\n"


class _Server(asyncssh.SSHServer):
    def __init__(self, host: EmulatedHost) -> None:
        self.host = host
        self.conn: asyncssh.SSHServerConnection | None = None

    def connection_made(self, conn: asyncssh.SSHServerConnection) -> None:
        self.conn = conn
        self.host._conns.add(conn)
        self.host.connections += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.conn is not None:
            self.host._conns.discard(self.conn)

    def begin_auth(self, username: str) -> bool:
        return True

    def password_auth_supported(self) -> bool:
        return False

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        return username == self.host.user and self.host.authorized.validate(key, "", "127.0.0.1") is not None


def parse_magic(packet: bytes) -> tuple[str, bytes] | None:
    """(MAC, SecureOn password) of a valid magic packet, else None."""
    if len(packet) not in (102, 108) or packet[:6] != b"\xff" * 6:
        return None
    mac = packet[6:12]
    if packet[6:102] != mac * 16:
        return None
    return ":".join(f"{b:02x}" for b in mac), packet[102:]


class WolListener(asyncio.DatagramProtocol):
    """A UDP port where magic packets for the lab's hosts arrive (one for all hosts: on a
    real segment every NIC sees the broadcast and only the addressed one wakes)."""

    def __init__(self, hosts: dict[str, EmulatedHost]) -> None:
        self.hosts = hosts  # by MAC
        self.received: list[tuple[str, bool]] = []  # (mac, accepted)
        self.port = 0
        self._transport: asyncio.DatagramTransport | None = None

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(lambda: self, local_addr=("127.0.0.1", 0))
        self._transport = transport
        self.port = transport.get_extra_info("sockname")[1]

    def datagram_received(self, data: bytes, addr: tuple[str | int, ...]) -> None:
        parsed = parse_magic(data)
        if parsed is None:
            return
        mac, password = parsed
        host = self.hosts.get(mac)
        ok = host is not None and password == host.behaviour.wol_password and not host.behaviour.ignore_wol
        self.received.append((mac, ok))
        if ok and host is not None:
            host.wakes += 1
            asyncio.get_running_loop().create_task(host.wake())

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def write_known_hosts(path: Path, hosts: list[EmulatedHost]) -> None:
    """known_hosts pinning each host's key under [127.0.0.1]:port, as OpenSSH writes it."""
    lines = [
        f"[127.0.0.1]:{h.port} {h.host_key.export_public_key('openssh').decode().strip()}\n" for h in hosts
    ]
    path.write_text("".join(lines))


def new_key() -> asyncssh.SSHKey:
    return asyncssh.generate_private_key("ssh-ed25519")


def save_key(key: asyncssh.SSHKey, path: Path) -> Path:
    """Write a private key as OpenSSH reads it: owner-only, or it refuses the file."""
    path.write_bytes(key.export_private_key("openssh"))
    os.chmod(path, 0o600)
    return path


def authorized(keys: list[asyncssh.SSHKey]) -> asyncssh.SSHAuthorizedKeys:
    return asyncssh.import_authorized_keys("".join(k.export_public_key("openssh").decode() for k in keys))
