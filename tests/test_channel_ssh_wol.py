"""SSH (paramiko against an asyncssh server with pinned host keys), Wake-on-LAN (real
magic packets to a UDP listener) and escalation through a real snmpsim PDU whose
outlets power the emulated hosts."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from powerpool.channels.escalation import Escalator, HostLinks
from powerpool.channels.ssh import SshChannel, _cached
from powerpool.channels.wol import WolChannel
from powerpool.errors import AuthFailed, Refused, TransientChannelError, TransitionTimeout
from powerpool.lab.host import HostBehaviour, parse_magic
from powerpool.model import PowerState as S
from tests.rack import Rack, fresh_key_line

FAST = {"enter_s": 0.2, "ready_s": 0.3}


@pytest.fixture(scope="module")
def rack() -> Iterator[Rack]:
    behaviours = {
        "ok1": HostBehaviour(**FAST),
        "ok2": HostBehaviour(**FAST, wol_password=bytes.fromhex("0a0b0c0d0e0f")),
        "nosudo": HostBehaviour(**FAST, sudo=("hdparm -C",)),
        "hangs": HostBehaviour(**FAST, hang_on_suspend=True),
        "deaf": HostBehaviour(**FAST, ignore_wol=True),
        "dual": HostBehaviour(**FAST, ignore_wol=True),
        "doomed": HostBehaviour(**FAST, ignore_wol=True),
    }
    outlets = {"deaf": (1,), "dual": (2, 3), "doomed": (4,)}
    with Rack(behaviours, outlets, stuck=(4,)) as r:
        yield r


def ssh_run(coro_fn):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        ch = SshChannel(poll_s=0.1)
        try:
            return await coro_fn(ch)
        finally:
            ch.close()

    return asyncio.run(main())


def test_readiness_and_load_over_a_pinned_key(rack: Rack) -> None:
    async def go(ch: SshChannel):  # type: ignore[no-untyped-def]
        return await ch.readiness(rack.ssh("ok1")), await ch.load(rack.ssh("ok1"))

    ready, load = ssh_run(go)
    assert ready.boot_id == rack.hosts["ok1"].boot_id and load == pytest.approx(0.1)


def test_probes_reuse_one_connection_and_reconnect_after_the_host_went_away(rack: Rack) -> None:
    """The controller probes every host every tick: one key exchange per host, not per
    probe. A host that slept and came back is reached on a new connection."""
    host = rack.hosts["ok1"]

    async def go(ch: SshChannel):  # type: ignore[no-untyped-def]
        t = rack.ssh("ok1")
        before = host.connections
        for _ in range(3):
            await ch.readiness(t)
        kept = host.connections - before
        esc = Escalator(ch, WolChannel())
        links = HostLinks("ok1", t, rack.wol_target("ok1"))
        await esc.drive(links, S.ACTIVE, S.SLEEP, 5)
        await esc.drive(links, S.SLEEP, S.ACTIVE, 5)
        after_wake = host.connections
        ready = await ch.readiness(t)
        return kept, after_wake, host.connections, ready

    kept, after_wake, final, ready = ssh_run(go)
    assert kept == 1
    assert final == after_wake  # the wake's own probe left a connection that is reused
    assert ready.suspends == host.suspend_success


def test_connections_send_small_writes_at_once_and_use_an_aead_cipher(rack: Rack) -> None:
    """Nagle's algorithm would hold each small handshake write for the peer's delayed ACK
    (about 80 ms of every first contact); the kept connection has it off."""

    async def go(ch: SshChannel):  # type: ignore[no-untyped-def]
        t = rack.ssh("ok2")
        await ch.readiness(t)
        client = ch.connections.take(t)
        assert client is not None
        transport = client.get_transport()
        assert transport is not None
        nodelay = transport.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)  # type: ignore[union-attr]
        cipher = transport.local_cipher  # type: ignore[attr-defined]
        ch.connections.give(t, client)
        return nodelay, cipher

    nodelay, cipher = ssh_run(go)
    assert nodelay == 1
    assert cipher == "aes128-gcm@openssh.com"  # AEAD: no pure-Python MAC compare per packet


def test_a_key_file_is_parsed_once_by_many_first_contacts_and_again_when_it_changes(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A pool's first tick opens a connection to every host at once: one parse of its
    known_hosts, not one per thread (500 entries cost about 300 ms of CPU each)."""
    path = tmp_path / "known_hosts"
    path.write_text("one\n")
    calls: list[str] = []

    def parse(name: str) -> str:
        calls.append(name)
        time.sleep(0.05)  # a slow parse: the other threads arrive meanwhile
        return Path(name).read_text()

    with ThreadPoolExecutor(16) as pool:
        seen = list(pool.map(lambda _: _cached("test", path, parse), range(32)))
    assert seen == ["one\n"] * 32 and len(calls) == 1
    path.write_text("two, longer\n")
    assert _cached("test", path, parse) == "two, longer\n" and len(calls) == 2


def test_changed_host_key_is_refused_fast_and_fatal(rack: Rack) -> None:
    changed = rack.dir / "known_hosts.changed"
    changed.write_text(fresh_key_line(rack.hosts["ok1"]))
    t0 = time.monotonic()
    with pytest.raises(AuthFailed, match="host key CHANGED"):
        ssh_run(lambda ch: ch.readiness(rack.ssh("ok1", known_hosts=changed)))
    assert time.monotonic() - t0 < 3


def test_unknown_host_key_is_refused(rack: Rack) -> None:
    empty = rack.dir / "known_hosts.empty"
    empty.write_text("")
    with pytest.raises(AuthFailed, match="unknown host key"):
        ssh_run(lambda ch: ch.readiness(rack.ssh("ok1", known_hosts=empty)))


def test_wrong_user_key_is_refused(rack: Rack) -> None:
    with pytest.raises(AuthFailed, match="refused our key"):
        ssh_run(lambda ch: ch.readiness(rack.ssh("ok1", key=rack.other_key)))


def test_missing_sudo_right_names_the_rule_to_add(rack: Rack) -> None:
    with pytest.raises(Refused, match="add `cpupower frequency-set -g powersave` to the sudoers"):
        ssh_run(lambda ch: ch.enter(rack.ssh("nosudo"), S.FREQ_SCALED, 5))
    assert rack.hosts["nosudo"].governor == "performance"


def test_host_hanging_on_suspend_gives_an_error_within_the_deadline(rack: Rack) -> None:
    t0 = time.monotonic()
    with pytest.raises(TransientChannelError, match="did not return within 1 s"):
        ssh_run(lambda ch: ch.enter(rack.ssh("hangs", command_timeout_s=1.0), S.SLEEP, 5))
    assert time.monotonic() - t0 < 4


def test_frequency_scaling_and_disk_standby_are_verified_and_idempotent(rack: Rack) -> None:
    async def go(ch: SshChannel):  # type: ignore[no-untyped-def]
        t = rack.ssh("ok1")
        first, _ = await ch.enter(t, S.FREQ_SCALED, 5)
        again, _ = await ch.enter(t, S.FREQ_SCALED, 5)
        disks, _ = await ch.enter(t, S.DISK_STANDBY, 5)
        back, _ = await ch.enter(t, S.ACTIVE, 5)
        return first, again, disks, back

    first, again, disks, back = ssh_run(go)
    assert (first.noop, again.noop, disks.noop, back.noop) == (False, True, False, False)
    assert rack.hosts["ok1"].disk_state == {"/dev/sdb": "standby"}
    assert rack.hosts["ok1"].governor == "performance"
    sudo = [c for c in rack.hosts["ok1"].commands if c.startswith("sudo")]
    assert sudo.count("sudo -n cpupower frequency-set -g powersave") == 1  # the no-op sent nothing


def test_magic_packet_format_and_secureon_password(rack: Rack) -> None:
    import wakeonlan

    packet = wakeonlan.create_magic_packet("02:00:00:00:00:02/0a:0b:0c:0d:0e:0f")
    assert parse_magic(packet) == ("02:00:00:00:00:02", bytes.fromhex("0a0b0c0d0e0f"))
    assert parse_magic(packet[:-1]) is None


def test_sleep_then_wake_on_lan_is_verified_by_a_new_resume(rack: Rack) -> None:
    host = rack.hosts["ok2"]

    async def go(ch: SshChannel):  # type: ignore[no-untyped-def]
        esc = Escalator(ch, WolChannel())
        links = HostLinks("ok2", rack.ssh("ok2"), rack.wol_target("ok2", password="0a:0b:0c:0d:0e:0f"))
        down = await esc.drive(links, S.ACTIVE, S.SLEEP, 5)
        asleep = host.state
        wrong = HostLinks(
            "ok2",
            rack.ssh("ok2"),
            rack.wol_target("ok2", password="00:00:00:00:00:00"),
            order={"wake": ("wol",)},
        )
        with pytest.raises(TransitionTimeout, match="every channel failed"):
            await esc.drive(wrong, S.SLEEP, S.ACTIVE, 1.5)
        up = await esc.drive(links, S.SLEEP, S.ACTIVE, 5)
        return down, asleep, up

    before = host.suspend_success
    down, asleep, up = ssh_run(go)
    assert (down.reached, asleep, up.reached, up.channel) == ("sleep", "sleep", "active", "wol")
    assert host.suspend_success == before + 1 and host.state == "active"
    assert (host.mac, False) in rack.wol.received and (host.mac, True) in rack.wol.received


def test_lost_wake_on_lan_is_completed_by_a_pdu_power_cycle(rack: Rack) -> None:
    host = rack.hosts["deaf"]

    async def go(ch: SshChannel):  # type: ignore[no-untyped-def]
        async with rack.pdu_channel() as pdu:
            esc = Escalator(ch, WolChannel())
            links = HostLinks(
                "deaf", rack.ssh("deaf"), rack.wol_target("deaf"), ((pdu, 1),), {"wake": ("wol", "pdu")}
            )
            await esc.drive(links, S.ACTIVE, S.OFF, 5)
            t0 = time.monotonic()
            out = await esc.drive(links, S.OFF, S.ACTIVE, 8)
            return out, time.monotonic() - t0, esc.attempts

    boot = host.boot_id
    out, took, attempts = ssh_run(go)
    assert (out.reached, out.channel) == ("active", "pdu") and took < 8
    assert ("deaf", "wol", "failed") in attempts and host.boot_id != boot


def test_off_on_two_outlets_needs_both_off_and_falls_back_from_a_failed_ssh(rack: Rack) -> None:
    host = rack.hosts["dual"]

    async def go(ch: SshChannel):  # type: ignore[no-untyped-def]
        async with rack.pdu_channel() as pdu:
            esc = Escalator(ch, WolChannel())
            broken_ssh = rack.ssh("dual", key=rack.other_key)  # SSH cannot do it: the PDU must
            links = HostLinks("dual", broken_ssh, None, ((pdu, 2), (pdu, 3)), {"unpowered": ("ssh", "pdu")})
            out = await esc.drive(links, S.ACTIVE, S.UNPOWERED, 5)
            return out, await pdu.state(2), await pdu.state(3)

    out, s2, s3 = ssh_run(go)
    assert (out.reached, s2, s3) == ("unpowered", "off", "off")
    time.sleep(0.2)
    assert host.state == "unpowered"


def test_wol_lost_and_pdu_stuck_fail_within_the_deadline(rack: Rack) -> None:
    async def go(ch: SshChannel):  # type: ignore[no-untyped-def]
        async with rack.pdu_channel() as pdu:
            esc = Escalator(ch, WolChannel())
            links = HostLinks(
                "doomed", rack.ssh("doomed"), rack.wol_target("doomed"), ((pdu, 4),), {"wake": ("wol", "pdu")}
            )
            await esc.drive(links, S.ACTIVE, S.SLEEP, 5)
            with pytest.raises(TransitionTimeout, match=r"wol: .*; pdu: "):
                await esc.drive(links, S.SLEEP, S.ACTIVE, 3.0)

    t0 = time.monotonic()
    ssh_run(go)
    assert time.monotonic() - t0 < 3.0 + 5 + 2  # the sleep's own verification + the wake's deadline
