"""The lab rack: an emulated rack on loopback, and the files to run powerpool against it.

One snmpsim agent serves every PDU (SNMPv3 authPriv, one context per PDU) with linked
control/state/meter objects that switch the hosts' power; each host is an SSH server
with its own pinned host key and a sudo-restricted power interface; one UDP listener
takes the magic packets of the rack's broadcast domain and wakes the host whose MAC
(and SecureOn password) matches. Latencies come from a hardware profile divided by
`speed`; the policy's durations are divided the same way, so the lab is the real
controller on a faster clock.
"""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from powerpool.channels.pdu_profile import load_pdu_profiles
from powerpool.lab.host import (
    CORES,
    EmulatedHost,
    HostBehaviour,
    WolListener,
    authorized,
    new_key,
    save_key,
    write_known_hosts,
)
from powerpool.lab.loop import BackgroundLoop
from powerpool.lab.snmp_agent import EmulatedOutlet, SnmpAgent, V3User, pdu_records, render_snmprec

FAMILY = "apc-rpdu2"
PROFILE = "modern-2s"
STATES = ("sleep", "off", "unpowered")


def write_load(path: Path, value: float) -> None:
    """The lab's load source: one number in a file, replaced whole (never half-written)."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(f"{value:.3f}\n")
    tmp.replace(path)


@dataclass
class LabRack:
    root: Path  # the lab's folder: policy, hardware, keys, journal
    repo_hardware: Path  # shipped hardware/ (server profiles and PDU families)
    hosts: int = 8
    pdus: int = 2
    speed: float = 240.0
    pools: int = 1  # hosts split evenly over this many pools (one policy file each)
    _loop: BackgroundLoop | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.dir = {k: self.root / k for k in ("policies", "hardware/servers", "secrets", "outlets", "state")}
        for d in self.dir.values():
            d.mkdir(parents=True, exist_ok=True)
        self.load_file = self.root / "load"
        prof = tomllib.loads((self.repo_hardware / "servers" / f"{PROFILE}.toml").read_text())
        self.enter = {s: prof["enter_s"][s] / self.speed for s in STATES}
        power = prof["power"]
        self.draw = {**{s: float(w) for s, w in power.items()}, "active": power["active_idle"],
                     "booting": power["active_idle"]}  # fmt: skip
        self.ready = {s: prof["ready_s"][s] / self.speed for s in STATES}
        self._write_profile()

    def s(self, seconds: float, least: float = 0.0) -> float:
        """A policy duration on the lab's clock."""
        return max(least, round(seconds / self.speed, 3))

    # -- the rack -----------------------------------------------------------------------

    def __enter__(self) -> LabRack:
        self._loop = BackgroundLoop().__enter__()
        client = new_key()
        self.key = save_key(client, self.dir["secrets"] / "id_ed25519")
        self.v3 = V3User("powerpool", secrets.token_hex(12), secrets.token_hex(12))
        for name, value in (("pdu_auth", self.v3.auth_key), ("pdu_priv", self.v3.priv_key)):
            path = self.dir["secrets"] / name
            path.write_text(value)
            os.chmod(path, 0o600)
        profile = load_pdu_profiles(self.repo_hardware / "pdus")[FAMILY]
        per_pdu = -(-self.hosts // self.pdus)
        files = {
            f"pdu{p + 1}": render_snmprec(
                pdu_records(profile, [EmulatedOutlet(n, "on", name=f"lab{(n - 1) * self.pdus + p + 1:02d}",
                                                     watts_on=150) for n in range(1, per_pdu + 1)])
            )
            for p in range(self.pdus)
        }  # fmt: skip
        self.agent = SnmpAgent(files, v3=self.v3, statedir=self.dir["outlets"]).__enter__()
        self.emulated: dict[str, EmulatedHost] = {}
        self.outlet_of: dict[str, tuple[str, int]] = {}
        behaviour = dict(enter_by_state=self.enter, ready_by_state=self.ready, enter_s=0.05, ready_s=0.1)
        for i in range(self.hosts):
            name, pdu, n = f"lab{i + 1:02d}", f"pdu{i % self.pdus + 1}", i // self.pdus + 1
            self.outlet_of[name] = (pdu, n)
            self.emulated[name] = EmulatedHost(
                name, f"02:4c:41:42:{(i + 1) >> 8:02x}:{(i + 1) & 255:02x}", new_key(), authorized([client]),
                behaviour=HostBehaviour(**behaviour),  # type: ignore[arg-type]
                power_files=(self.dir["outlets"] / pdu / str(n),), draw_w=self.draw,
            )  # fmt: skip
        self.wol = WolListener({h.mac: h for h in self.emulated.values()})

        self._watchers: list[asyncio.Task[None]] = []

        poll_s = max(0.02, self.hosts / 2000)  # every host reads its outlet file: bound the reads/s

        async def start() -> None:
            for h in self.emulated.values():
                await h.listen()
                self._watchers.append(asyncio.get_running_loop().create_task(h.watch_power(poll_s)))
            await self.wol.start()

        self._loop.run(start(), 60)
        self.known_hosts = self.dir["secrets"] / "known_hosts"
        write_known_hosts(self.known_hosts, list(self.emulated.values()))
        names = list(self.emulated)
        for k in range(self.pools):
            pool = "lab" if self.pools == 1 else f"lab{k + 1}"
            (self.dir["policies"] / f"{pool}.toml").write_text(self._policy(pool, names[k :: self.pools]))
        return self

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            for task in self._watchers:
                task.cancel()
            for h in self.emulated.values():
                await h.silence()
            self.wol.close()

        if self._loop is not None:
            self._loop.run(stop(), 30)
            self._loop.__exit__(*exc)
        self.agent.__exit__(*exc)

    def set_load(self, value: float) -> None:
        """Publish the current load (the policy's file source) and each host's loadavg."""
        write_load(self.load_file, value)
        up = [h for h in self.emulated.values() if h.state in ("active", "freq_scaled")]
        for h in up:
            h.behaviour.loadavg = round(value / 100.0 / len(up) * CORES, 2)

    # -- the lab's own records (evidence) -------------------------------------------------

    def records(self) -> dict[str, int]:
        cmds = [c for h in self.emulated.values() for c in h.commands]
        sets = (self.dir["outlets"] / "sets.log").read_text().split("\n") if (
            self.dir["outlets"] / "sets.log").exists() else []  # fmt: skip
        return {
            "ssh_suspend": sum("systemctl suspend" in c for c in cmds),
            "ssh_poweroff": sum("systemctl poweroff" in c for c in cmds),
            "ssh_commands": len(cmds),
            "magic_packets": len(self.wol.received),
            "hosts_woken_by_packet": sum(h.woken for h in self.emulated.values()),
            "snmp_set_off": sum(line.endswith(" off") for line in sets),
            "snmp_set_on": sum(line.endswith(" on") for line in sets),
            "snmp_set_cycle": sum(line.endswith(" cycle") for line in sets),
        }

    # -- files ----------------------------------------------------------------------------

    def _write_profile(self) -> None:
        text = (self.repo_hardware / "servers" / f"{PROFILE}.toml").read_text()
        text = re.sub(r'^name = ".*"', 'name = "lab-2s"', text, count=1, flags=re.M)

        def scale(body: str) -> str:
            def one(m: re.Match[str]) -> str:
                return f"{m.group(1)} = {float(m.group(2)) / self.speed:.4f}"

            return re.sub(r"^(\w+) = ([0-9.]+)", one, body, flags=re.M)

        parts = re.split(r"^(\[\w+\])$", text, flags=re.M)
        for i in range(1, len(parts), 2):
            if parts[i] in ("[ready_s]", "[enter_s]"):
                parts[i + 1] = scale(parts[i + 1])
        (self.dir["hardware/servers"] / "lab-2s.toml").write_text("".join(parts))

    def _policy(self, pool: str, names: list[str]) -> str:
        s, port = self.s, self.agent.address[1]
        hosts = []
        for name in names:
            h = self.emulated[name]
            pdu, n = self.outlet_of[name]
            rack = f"r{(int(name[3:]) - 1) % 2 + 1}"
            hosts.append(
                f'[[hosts]]\nname = "{name}"\naddress = "127.0.0.1"\nssh_port = {h.port}\n'
                f'mac = "{h.mac}"\nprofile = "lab-2s"\noutlets = ["{pdu}:{n}"]\nrack = "{rack}"\n'
            )
        auth, priv = self.dir["secrets"] / "pdu_auth", self.dir["secrets"] / "pdu_priv"
        pdus = "".join(
            f'[pdus.pdu{p + 1}]\naddress = "127.0.0.1"\nport = {port}\nfamily = "{FAMILY}"\n'
            f'user = "powerpool"\nauth_key = "file:{auth}"\npriv_key = "file:{priv}"\n'
            f'context = "pdu{p + 1}"\nsettle = 0.2\n\n'
            for p in range(self.pdus)
        )
        return f"""# written by `powerpool lab`: the real controller against an emulated rack
# every duration is the production value divided by the lab's speed ({self.speed:g}x)
name = "{pool}"
description = "emulated rack on loopback"
tick = {s(10, 0.5)}
capacity_per_host = 100.0
target_utilisation = 0.8

[load]
source = "file"
unit = "requests/s"
path = "{self.load_file}"

[reserve]
min_active = 1
warm = 1

[[reserve.tiers]]
within = {s(60, 0.5)}
hosts = 1

[[reserve.tiers]]
within = {s(600, 2.0)}
percent = 25

[states]
allowed = ["active", "sleep", "off", "unpowered"]

[hysteresis]
idle_before_sleep = {s(300)}
min_uptime_after_wake = {s(300)}

[hysteresis.min_dwell]
sleep = {s(120)}
off = {s(600)}

[forecast]
peak_hold = {s(600)}
trend_window = {s(600)}

[rates]
wakes_per_minute = 60
sleeps_per_minute = 60
max_ops_per_pdu = 2

[channels]
wake = ["wol", "pdu"]
sleep = ["ssh"]
off = ["ssh", "pdu"]
unpowered = ["ssh", "pdu"]

[safety]
load_max_age = 3
wake_margin = 3
breaker_window = {s(600, 5)}

[ssh]
user = "powerpool"
key = "file:{self.key}"
known_hosts = "{self.known_hosts}"
connect_timeout = 2
command_timeout = 5

[wol]
broadcast = "127.0.0.1"
port = {self.wol.port}
packets = 2
spacing = 0.05

{pdus}{chr(10).join(hosts)}"""
