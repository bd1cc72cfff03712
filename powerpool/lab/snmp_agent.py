"""An emulated switched PDU on loopback: snmpsim serving a data file whose outlets are
switchable through the `pplink` variation module.

A data file is built from a family profile (`hardware/pdus/`) and, when there is one, a
real capture of that family: the capture's records are served as recorded, and the
outlet control, state and meter records are replaced by linked ones starting from the
recorded states. Used by the tests and by `powerpool lab`.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from powerpool.channels.pdu_profile import PduProfile

MODULES_DIR = Path(__file__).parent / "snmpsim_modules"
SYS_OBJECT_ID = "1.3.6.1.2.1.1.2.0"
SYS_DESCR = "1.3.6.1.2.1.1.1.0"


@dataclass(frozen=True, slots=True)
class EmulatedOutlet:
    number: int
    state: str = "on"  # "on" | "off"
    name: str | None = None
    watts_on: int = 150
    watts_off: int = 0
    lag_s: float = 0.0
    stuck: bool = False  # accepts commands, never changes: a PDU that never reaches the goal


def parse_snmprec(text: str) -> dict[str, str]:
    """OID -> "TAG|VALUE" for every record of a capture."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        oid, sep, rest = line.partition("|")
        if sep and oid and oid[0].isdigit():
            out[oid] = rest
    return out


def render_snmprec(records: dict[str, str]) -> str:
    """Records in the ascending OID order snmpsim requires."""
    ordered = sorted(records, key=lambda oid: tuple(int(x) for x in oid.split(".")))
    return "".join(f"{oid}|{records[oid]}\n" for oid in ordered)


def pdu_records(
    profile: PduProfile,
    outlets: Iterable[EmulatedOutlet],
    base: dict[str, str] | None = None,
    sys_object_id: str | None = None,
    unit: int = 1,
    feed: int = 1,
) -> dict[str, str]:
    """A data file for `profile`: `base` (a parsed capture) with linked outlet records,
    for outlets of one unit and feed of a daisy chain (call again with the result as
    `base` for the next unit)."""
    place = (unit, feed)
    prefix = "" if place == (1, 1) else f"u{unit}f{feed}-"  # keeps each unit's outlet state apart
    records = dict(base or {})
    records.setdefault(SYS_DESCR, f"4|powerpool lab PDU ({profile.family})")
    if sys_object_id or SYS_OBJECT_ID not in records:
        records[SYS_OBJECT_ID] = "6|" + (sys_object_id or profile.sys_object_ids[0])
    reads = {"r_on": profile.state.on[0], "r_off": profile.state.off[0]}
    if profile.state.pending:
        reads["r_pending"] = profile.state.pending[0]
    for o in outlets:
        common = {"key": f"{prefix}{o.number}", "init": o.state}
        if o.lag_s:
            common["lag"] = f"{o.lag_s:g}"
        if o.stuck:
            common["stuck"] = "1"
        linked: dict[str, dict[str, object]] = {
            profile.oid(profile.state, o.number, *place): {**common, **reads}
        }
        for command in ("on", "off", "cycle"):
            write = profile.write(command)
            if write is None:
                continue
            oid = profile.oid(write, o.number, *place)
            linked.setdefault(oid, {**common, "r_fixed": -1})[f"w_{command}"] = write.value
        if profile.watts is not None:
            oid = profile.oid(profile.watts, o.number, *place)
            linked[oid] = {**common, "watts_on": o.watts_on, "watts_off": o.watts_off}
        for oid, args in linked.items():
            tag = records.get(oid, "2|").split("|", 1)[0].split(":", 1)[0]
            records[oid] = f"{tag}:pplink|" + ",".join(f"{k}={v}" for k, v in args.items())
        if profile.name is not None and o.name is not None:
            records[profile.oid(profile.name, o.number, *place)] = f"4|{o.name}"
    return records


@dataclass(frozen=True, slots=True)
class V3User:
    user: str
    auth_key: str
    priv_key: str
    auth_protocol: str = "SHA256"
    priv_protocol: str = "AES"


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class SnmpAgent:
    """snmpsim-command-responder on 127.0.0.1, serving `files` (community -> snmprec text).

    SNMPv1/v2c communities and SNMPv3 context names are the file names, as in snmpsim.
    """

    def __init__(
        self,
        files: dict[str, str],
        v3: V3User | None = None,
        port: int | None = None,
        statedir: Path | None = None,
    ) -> None:
        """`statedir`: where outlet state changes are published (DIR/<community>/<outlet>)."""
        self.files, self.v3, self.statedir = files, v3, statedir
        self.port = port or free_udp_port()
        self.address = ("127.0.0.1", self.port)
        self._dir: tempfile.TemporaryDirectory[str] | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> SnmpAgent:
        self.start()
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    def start(self, timeout_s: float = 30.0) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="powerpool-snmp-")
        root = Path(self._dir.name)
        (root / "data").mkdir()
        (root / "cache").mkdir()
        for community, text in self.files.items():
            (root / "data" / f"{community}.snmprec").write_text(text)
        log = root / "agent.log"
        cmd = [
            _responder(),
            f"--data-dir={root / 'data'}",
            f"--cache-dir={root / 'cache'}",
            f"--variation-modules-dir={MODULES_DIR}",
            f"--agent-udpv4-endpoint=127.0.0.1:{self.port}",
            f"--logging-method=file:{log}",
        ]
        if self.statedir is not None:
            cmd.append(f"--variation-module-options=pplink:statedir:{self.statedir}")
        if self.v3:
            cmd += [
                f"--v3-user={self.v3.user}",
                f"--v3-auth-key={self.v3.auth_key}",
                f"--v3-auth-proto={self.v3.auth_protocol}",
                f"--v3-priv-key={self.v3.priv_key}",
                f"--v3-priv-proto={self.v3.priv_protocol}",
            ]
        env = {**os.environ, "SNMPSIM_ALLOW_ROOT": "true"}
        self._proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        end = time.monotonic() + timeout_s
        while time.monotonic() < end:
            if log.exists() and "Listening at" in log.read_text(errors="replace"):
                return
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                text = log.read_text(errors="replace") if log.exists() else ""
                self.stop()
                raise RuntimeError(f"snmpsim exited {self._proc.returncode}: {err or text}"[-2000:])
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"snmpsim did not start listening within {timeout_s:g} s")

    def stop(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        if self._proc is not None and self._proc.stderr:
            self._proc.stderr.close()
        if self._dir is not None:
            self._dir.cleanup()
            self._dir = None


def _responder() -> str:
    local = Path(sys.executable).parent / "snmpsim-command-responder"
    found = str(local) if local.exists() else shutil.which("snmpsim-command-responder")
    if not found:
        raise RuntimeError("snmpsim-command-responder not found: pip install 'powerpool[lab]'")
    return found
