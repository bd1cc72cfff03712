"""Build channel targets from a loaded policy: the one place where policy settings turn
into addresses, resolved secrets and channel orders."""

from __future__ import annotations

from pathlib import Path

from powerpool.channels.escalation import HostLinks
from powerpool.channels.snmp_pdu import PduChannel, PduTarget
from powerpool.channels.ssh import SshTarget
from powerpool.channels.wol import WolTarget
from powerpool.config.load import PolicyBundle
from powerpool.errors import NO_VALUE, ConfigError, Problem
from powerpool.model import Host
from powerpool.secrets import resolve, resolve_path


def host(bundle: PolicyBundle, name: str) -> Host:
    for h in bundle.pool.hosts:
        if h.name == name:
            return h
    known = ", ".join(h.name for h in bundle.pool.hosts)
    raise ConfigError([Problem(str(bundle.path), "hosts", name, f"one of the pool's hosts ({known})")])


def pdu_target(bundle: PolicyBundle, name: str) -> PduTarget:
    spec = bundle.spec.pdus.get(name)
    if spec is None:
        known = ", ".join(bundle.spec.pdus) or "none"
        raise ConfigError([Problem(str(bundle.path), "pdus", name, f"a PDU of this policy ({known})")])
    return PduTarget.from_spec(name, spec)


def ssh_target(bundle: PolicyBundle, h: Host) -> SshTarget:
    ssh = bundle.spec.ssh
    if ssh is None:
        raise ConfigError(
            [Problem(str(bundle.path), "ssh", NO_VALUE, "an [ssh] table (user, key, known_hosts)")]
        )
    return SshTarget(
        host=h.name,
        address=h.address,
        user=ssh.user,
        key=resolve_path(ssh.key),
        known_hosts=Path(ssh.known_hosts),
        port=h.ssh_port or ssh.port,
        connect_timeout_s=ssh.connect_timeout,
        command_timeout_s=ssh.command_timeout,
        disks=h.disks,
    )


def wol_target(bundle: PolicyBundle, h: Host) -> WolTarget:
    wol = bundle.spec.wol
    return WolTarget(
        host=h.name,
        mac=h.mac,
        broadcast=wol.broadcast,
        port=wol.port,
        interface=wol.interface,
        password=resolve(wol.password) if wol.password else "",
        packets=wol.packets,
        spacing_s=wol.spacing,
    )


def host_links(bundle: PolicyBundle, h: Host, pdus: dict[str, PduChannel]) -> HostLinks:
    """A host's channels: SSH and WOL targets, its outlets on the given PDU channels."""
    return HostLinks(
        name=h.name,
        ssh=ssh_target(bundle, h) if bundle.spec.ssh else None,
        wol=wol_target(bundle, h),
        outlets=tuple((pdus[o.pdu], o.outlet) for o in h.outlets if o.pdu in pdus),
        order=h.channels,
    )
