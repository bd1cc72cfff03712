"""Operator commands to probe and drive channels by hand: `powerpool pdu probe`,
`powerpool outlet` and `powerpool host`. Each prints a table for people and --json for
scripts; a failed check exits 1 with what to do about it, bad input exits 2."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, Literal, TypeVar

import click
from rich.table import Table

from powerpool.channels.pdu_profile import PduProfile, load_pdu_profiles
from powerpool.channels.snmp_pdu import PduChannel, PduTarget, Snmp
from powerpool.channels.ssh import GOVERNOR, ROOT_COMMANDS, SshChannel
from powerpool.cliutil import JSON, friendly, load, out
from powerpool.config.load import PolicyBundle
from powerpool.errors import ChannelError
from powerpool.model import PowerState
from powerpool.secrets import resolve

from . import wiring

T = TypeVar("T")
_REF = re.compile(r"^(env|file|credential):")
PDUS = click.option(
    "--pdu-profiles",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("hardware/pdus"),
    show_default=True,
    help="Folder of PDU family profiles.",
)
POLICY = click.option(
    "--policy", "policy_path", required=True, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)


def _secret(value: str | None) -> str:
    """A literal, or an env:/file:/credential: reference (keeps secrets out of shell history)."""
    return resolve(value) if value and _REF.match(value) else (value or "")


def _run(fn: Callable[[Snmp], Awaitable[T]], timeout_s: float = 1.0) -> T:
    async def main() -> T:
        async with Snmp(timeout_s=timeout_s, retries=1) as snmp:
            return await fn(snmp)

    return asyncio.run(main())


@click.group()
def pdu() -> None:
    """Switched PDUs over SNMP."""


@pdu.command()
@click.option("--address", required=True, help="HOST or HOST:PORT of the PDU's SNMP agent (port 161).")
@click.option("--community", help="SNMP v2c community (literal or env:/file: reference).")
@click.option("--v1", is_flag=True, help="Use SNMP v1 with --community.")
@click.option("--v3-user", help="SNMPv3 user (authPriv).")
@click.option("--v3-auth-key", help="SNMPv3 auth key (literal or env:/file: reference).")
@click.option("--v3-priv-key", help="SNMPv3 privacy key (literal or env:/file: reference).")
@click.option(
    "--v3-auth-proto",
    type=click.Choice(["sha", "sha224", "sha256", "sha384", "sha512"]),
    default="sha256",
    show_default=True,
)
@click.option(
    "--v3-priv-proto", type=click.Choice(["aes128", "aes192", "aes256"]), default="aes128", show_default=True
)
@click.option("--context", default="", help="SNMPv3 context name.")
@click.option(
    "--unit",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Unit of a daisy chain behind this address (Sentry tower B or Raritan linked PDU 2 = 2).",
)
@click.option(
    "--feed",
    type=click.IntRange(1, 8),
    default=1,
    show_default=True,
    help="Input feed/cord of that unit (A = 1).",
)
@click.option("--timeout", default=1.0, show_default=True, help="Seconds per request.")
@PDUS
@JSON
@friendly
def probe(
    address: str,
    community: str | None,
    v1: bool,
    v3_user: str | None,
    v3_auth_key: str | None,
    v3_priv_key: str | None,
    v3_auth_proto: str,
    v3_priv_proto: str,
    context: str,
    unit: int,
    feed: int,
    timeout: float,
    pdu_profiles: Path,
    as_json: bool,
) -> None:
    """Detect a PDU's family and list every outlet with its name, state and watts.

    The family is chosen by sysObjectID and confirmed by probing its outlet table (vendor
    labels disagree). Read-only: nothing is switched.

    \b
    Examples:
      powerpool pdu probe --address 10.0.0.5 --v3-user pp --v3-auth-key env:AUTH --v3-priv-key env:PRIV
      powerpool pdu probe --address 127.0.0.1:16161 --community public --json
      powerpool pdu probe --address 10.0.0.6 --community env:COMM --unit 2   # Sentry tower B
    """
    host, _, port = address.partition(":")
    if not (community or v3_user) or (community and v3_user):
        raise click.UsageError("give either --community (v1/v2c) or --v3-user with its keys")
    if v3_user and not (v3_auth_key and v3_priv_key):
        raise click.UsageError("SNMPv3 authPriv needs --v3-auth-key and --v3-priv-key")
    version: Literal["3", "2c", "1"] = "3" if v3_user else ("1" if v1 else "2c")
    target = PduTarget(
        name=address,
        host=host,
        port=int(port) if port.isdigit() else 161,
        version=version,
        user=v3_user or "",
        auth_key=_secret(v3_auth_key),
        priv_key=_secret(v3_priv_key),
        auth_protocol=v3_auth_proto,
        priv_protocol=v3_priv_proto,
        read_community=_secret(community),
        write_community=_secret(community),
        context=context,
        unit=unit,
        feed=feed,
    )
    profiles = load_pdu_profiles(pdu_profiles)

    async def go(snmp: Snmp) -> tuple[PduProfile, str, list[Any]]:
        ch = PduChannel(snmp, target)
        prof = await ch.detect(profiles)
        return prof, ch.sys_object_id, await ch.outlets()

    prof, oid, outlets = _run(go, timeout)
    if as_json:
        doc = {"family": prof.family, "sys_object_id": oid, "outlets": [asdict(o) for o in outlets]}
        out.print_json(json.dumps(doc))
        return
    out.print(f"[bold]{address}[/bold]: {prof.family} — {prof.description}\n  sysObjectID {oid}")
    table = Table("outlet", "name", "state", "watts")
    for o in outlets:
        colour = {"on": "green", "off": "dim", "pending": "yellow"}.get(o.state, "red")
        watts = "-" if o.watts is None else f"{o.watts:g}"
        table.add_row(str(o.number), o.name or "", f"[{colour}]{o.state}[/{colour}]", watts)
    out.print(table)


def _bundle(policy_path: Path) -> PolicyBundle:
    loaded = load((policy_path,), None)
    return next(iter(loaded.policies.values()))


@click.command()
@POLICY
@click.argument("pdu_name", metavar="PDU")
@click.argument("number", metavar="OUTLET", type=click.IntRange(min=1))
@click.argument("action", type=click.Choice(["status", "on", "off", "cycle"]))
@click.option("--yes", is_flag=True, help="Confirm switching off or cycling an outlet that powers a host.")
@click.option("--deadline", default=30.0, show_default=True, help="Seconds to verify the new state.")
@PDUS
@JSON
@friendly
def outlet(
    policy_path: Path,
    pdu_name: str,
    number: int,
    action: str,
    yes: bool,
    deadline: float,
    pdu_profiles: Path,
    as_json: bool,
) -> None:
    """Read or switch one outlet of a policy's PDU, and verify the result.

    on/off send nothing when the outlet is already there. cycle is never retried (a
    resent SET could cycle twice). Switching off or cycling an outlet that powers one of
    the policy's hosts needs --yes.

    \b
    Examples:
      powerpool outlet --policy policies/web.toml pdu-a 7 status
      powerpool outlet --policy policies/web.toml pdu-a 7 off --yes
    """
    bundle = _bundle(policy_path)
    target = wiring.pdu_target(bundle, pdu_name)
    spec = bundle.spec.pdus[pdu_name]
    profiles = load_pdu_profiles(pdu_profiles)
    if spec.family != "auto" and spec.family not in profiles:
        raise click.BadParameter(f"family {spec.family!r} of pdus.{pdu_name} is not in {pdu_profiles}")
    powered = [
        h.name for h in bundle.pool.hosts if any(o.pdu == pdu_name and o.outlet == number for o in h.outlets)
    ]
    if action in ("off", "cycle") and powered and not yes:
        raise click.UsageError(
            f"outlet {pdu_name}:{number} powers {', '.join(powered)}; add --yes to {action} it"
        )

    async def go(snmp: Snmp) -> dict[str, Any]:
        ch = PduChannel(snmp, target, profiles.get(spec.family))
        if ch.profile is None:
            await ch.detect(profiles)
        if action == "status":
            state = await ch.state(number)
            return {"state": state, "watts": await ch.watts(number), "noop": True}
        result = await ch.switch(number, action, deadline)  # type: ignore[arg-type]
        return {
            "state": result.reached,
            "watts": await ch.watts(number),
            "noop": result.noop,
            "seconds": result.seconds,
        }

    doc = {"pdu": pdu_name, "outlet": number, "action": action, "hosts": powered, **_run(go)}
    if as_json:
        out.print_json(json.dumps(doc))
        return
    what = "unchanged" if doc["noop"] and action != "status" else ("" if action == "status" else "verified")
    watts = "" if doc["watts"] is None else f", {doc['watts']:g} W"
    out.print(
        f"{pdu_name}:{number} ({', '.join(powered) or 'no host'}): {doc['state']}{watts} {what}".rstrip()
    )


@click.command("host")
@POLICY
@click.argument("host_name", metavar="HOST")
@click.argument("check", type=click.Choice(["probe", "ssh-check", "wol-check"]))
@JSON
@friendly
def host_cmd(policy_path: Path, host_name: str, check: str, as_json: bool) -> None:
    """Check one host's channels and say what is missing.

    \b
    probe       is it up: boot id, resumes, load, CPU governor (over SSH)
    ssh-check   reachability, pinned host key, our key, and every sudo rule the
                policy's states need (sudo -n -l, nothing is run)
    wol-check   the NIC is armed for magic packets (ethtool shows Wake-on: g)

    Exit 1 when a check fails, with the fix in words.
    """
    bundle = _bundle(policy_path)
    h = wiring.host(bundle, host_name)
    t = wiring.ssh_target(bundle, h)
    checks: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        checks.append({"check": name, "ok": ok, "detail": detail})

    async def go() -> None:
        ch = SshChannel(max_parallel=4)
        try:
            try:
                ready = await ch.readiness(t)
            except ChannelError as e:
                add("ssh", False, e.detail)
                return
            add("ssh", True, f"{t.user}@{t.address}:{t.port}, host key pinned in {t.known_hosts}")
            if check == "probe":
                (governor,) = await ch.read(t, GOVERNOR)
                add("boot id", True, ready.boot_id)
                add("resumes", True, str(ready.suspends))
                add("load", True, f"{await ch.load(t):g}")
                add("governor", True, governor)
            elif check == "ssh-check":
                for state in sorted(bundle.pool.allowed, key=lambda s: s.depth):
                    if state not in ROOT_COMMANDS or "ssh" not in h.channels.get(state.value, ("ssh",)):
                        continue
                    cmd = ROOT_COMMANDS[state] + (
                        " " + " ".join(h.disks) if state is PowerState.DISK_STANDBY else ""
                    )
                    code, _ = await ch.run(t, "sudo -n -l " + cmd, "sudo check")
                    add(
                        f"sudo {state.value}",
                        code == 0,
                        f"`{cmd}` allowed"
                        if code == 0
                        else f"add `{cmd}` to the sudoers rule of {t.user} (docs/ssh.md)",
                    )
            else:
                nic = bundle.spec.wol.nic
                code, text = await ch.run(t, f"ethtool {nic}", "ethtool")
                m = re.search(r"^\s*Wake-on:\s*(\S+)", text, re.M)
                armed = bool(m and "g" in m.group(1))
                fix = (
                    f"run `ethtool -s {nic} wol g` and persist it (NetworkManager "
                    "802-3-ethernet.wake-on-lan magic, or a systemd .link WakeOnLan=magic)"
                )
                add(
                    "wake-on-lan",
                    armed,
                    f"{nic}: Wake-on: {m.group(1) if m else '?'}" + ("" if armed else f"; {fix}"),
                )
        finally:
            ch.close()

    asyncio.run(go())
    ok = all(c["ok"] for c in checks)
    if as_json:
        out.print_json(json.dumps({"host": host_name, "check": check, "ok": ok, "checks": checks}))
    else:
        table = Table("check", "", "detail")
        for c in checks:
            table.add_row(c["check"], "[green]ok[/green]" if c["ok"] else "[red]FAIL[/red]", c["detail"])
        out.print(table)
    if not ok:
        sys.exit(1)
