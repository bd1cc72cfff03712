"""OS/ACPI power control over SSH (paramiko), run in a bounded thread pool from asyncio.

Host keys are pinned (a known_hosts file per pool; RejectPolicy, never AutoAddPolicy):
an unknown or changed key is a fatal AuthFailed and the host is quarantined. Key auth
only (no agent, no key search). Root actions are `sudo -n <exact command>` so a missing
sudoers rule fails at once instead of prompting. No wait on a remote exit status is
without a deadline: paramiko's recv_exit_status ignores timeouts and hangs on a host that
suspends, so the session is polled, and suspend/poweroff are fire-and-forget through
`systemd-run --on-active=2` so the session returns before the host freezes.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paramiko

from powerpool.channels.base import CallPolicy, Channel, Outcome
from powerpool.errors import AuthFailed, ChannelError, NoAnswer, Refused, TransientChannelError
from powerpool.model import PowerState

BOOT_ID = "/proc/sys/kernel/random/boot_id"
SUSPENDS = "/sys/power/suspend_stats/success"
GOVERNOR = "/sys/devices/system/cpu/cpu0/cpufreq/scaling_governor"
_FIRE_AND_FORGET = "systemd-run --on-active=2 systemctl "
ROOT_COMMANDS: dict[PowerState, str] = {
    PowerState.ACTIVE: "cpupower frequency-set -g performance",
    PowerState.FREQ_SCALED: "cpupower frequency-set -g powersave",
    PowerState.DISK_STANDBY: "hdparm -y",  # + the host's disks
    PowerState.SLEEP: _FIRE_AND_FORGET + "suspend",
    PowerState.HIBERNATE: _FIRE_AND_FORGET + "hibernate",
    PowerState.OFF: _FIRE_AND_FORGET + "poweroff",
}
GONE = (PowerState.SLEEP, PowerState.HIBERNATE, PowerState.OFF)
_SUDO_DENIED = ("a password is required", "a terminal is required", "not allowed", "may not run sudo")


@dataclass(frozen=True, slots=True)
class SshTarget:
    host: str
    address: str
    user: str
    key: Path
    known_hosts: Path
    port: int = 22
    connect_timeout_s: float = 10.0
    command_timeout_s: float = 30.0
    disks: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Readiness:
    """What proves a host really came back: a new boot id (from off or hibernate) or one
    more successful suspend (from S3)."""

    boot_id: str
    suspends: int

    def after(self, before: Readiness) -> bool:
        return self.boot_id != before.boot_id or self.suspends > before.suspends


_parsed: dict[tuple[str, str], tuple[tuple[int, int, int], object]] = {}
_parsed_lock = threading.Lock()


def _cached(kind: str, path: Path, parse: Callable[[str], Any]) -> Any:
    """A key file parsed once per version: a pool's known_hosts of 500 entries costs far
    more to parse than the key exchange itself. A changed file (inode, mtime, size) is re-read."""
    st = path.stat()
    version = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _parsed_lock:  # held while parsing: 64 first contacts at once parse it once, not 64 times
        hit = _parsed.get((kind, str(path)))
        if hit is not None and hit[0] == version:
            return hit[1]
        value = parse(str(path))
        _parsed[(kind, str(path))] = (version, value)
    return value


def _dial(t: SshTarget) -> socket.socket:
    """A TCP connection with Nagle off: the handshake's small back-to-back writes otherwise
    wait on the peer's delayed ACK, about 80 ms of every first contact."""
    sock = socket.create_connection((t.address, t.port), timeout=t.connect_timeout_s)
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _transport(sock: Any, **options: Any) -> paramiko.Transport:
    """AEAD ciphers first, as current OpenSSH hardening guides order them: their tag is
    checked inside `cryptography`, where ctr + HMAC costs paramiko a pure-Python
    constant-time compare on every packet (about 8 % of a probe's CPU)."""
    transport = paramiko.Transport(sock, **options)
    security = transport.get_security_options()
    security.ciphers = tuple(sorted(security.ciphers, key=lambda c: "-gcm@" not in c))
    return transport


def _connect(t: SshTarget) -> paramiko.SSHClient:
    client = paramiko.SSHClient()
    sock: socket.socket | None = None
    try:
        known: paramiko.HostKeys = _cached("known_hosts", t.known_hosts, paramiko.HostKeys)
        name = t.address if t.port == 22 else f"[{t.address}]:{t.port}"  # as OpenSSH writes it
        for keytype, key in (known.lookup(name) or {}).items():  # only this host's pinned keys
            client.get_host_keys().add(name, keytype, key)
        client.set_missing_host_key_policy(paramiko.RejectPolicy())
        sock = _dial(t)
        client.connect(
            t.address,
            port=t.port,
            sock=sock,
            transport_factory=_transport,
            username=t.user,
            pkey=_cached("key", t.key, paramiko.PKey.from_path),
            timeout=t.connect_timeout_s,
            banner_timeout=t.connect_timeout_s,
            auth_timeout=t.connect_timeout_s,
            channel_timeout=t.connect_timeout_s,
            allow_agent=False,
            look_for_keys=False,
        )
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)
    except BaseException:
        client.close()
        if sock is not None:
            sock.close()
        raise
    return client


class _Connections:
    """Open connections kept between commands, one idle per host: a key exchange costs
    far more CPU than a command, and the controller probes every host every tick.

    A connection is used by one command at a time (taken, then given back); one that
    failed in any way is closed, never given back."""

    def __init__(self) -> None:
        self._idle: dict[SshTarget, paramiko.SSHClient] = {}
        self._lock = threading.Lock()

    def take(self, t: SshTarget) -> paramiko.SSHClient | None:
        with self._lock:
            return self._idle.pop(t, None)

    def give(self, t: SshTarget, client: paramiko.SSHClient) -> None:
        transport = client.get_transport()
        with self._lock:
            if transport is not None and transport.is_active() and t not in self._idle:
                self._idle[t] = client
                return
        client.close()

    def close(self) -> None:
        with self._lock:
            clients, self._idle = list(self._idle.values()), {}
        for c in clients:
            c.close()


def _exec(t: SshTarget, command: str, timeout_s: float, conns: _Connections, fresh: bool) -> tuple[int, str]:
    """Blocking: run on a kept or new connection (pinned key), poll to a deadline;
    (exit, output). `fresh` closes the host's kept connection and keeps none: silence
    probes and commands that take the host away must not meet a connection from before."""
    client = conns.take(t)
    if fresh and client is not None:
        client.close()
        client = None
    reused = client is not None
    try:
        if client is None:
            client = _connect(t)
        try:
            chan = _session(client, t)
        except (paramiko.SSHException, OSError, EOFError):
            if not reused:
                raise
            client.close()  # the host went away since: one new connection, nothing was sent
            client = _connect(t)
            chan = _session(client, t)
        chan.exec_command(command)
        out = bytearray()
        end = time.monotonic() + timeout_s
        while True:  # block on the exit status, waking to drain output and check the deadline
            done = chan.status_event.wait(max(0.0, min(0.2, end - time.monotonic())))
            finished = chan.exit_status_ready()  # its output arrived before it: drain after
            while chan.recv_ready():
                out += chan.recv(65536)
            if finished:
                code = chan.recv_exit_status()
                chan.close()
                break
            if done or not chan.get_transport().is_active():
                raise EOFError("the connection dropped while the command ran")
            if time.monotonic() > end:
                raise _CommandTimeout(timeout_s)
    except BaseException:
        if client is not None:
            client.close()
        raise
    if fresh:
        client.close()
    else:
        conns.give(t, client)
    return code, out.decode(errors="replace")


def _session(client: paramiko.SSHClient, t: SshTarget) -> paramiko.Channel:
    transport = client.get_transport()
    if transport is None or not transport.is_active():
        raise EOFError("connection closed")
    chan = transport.open_session(timeout=t.connect_timeout_s)
    chan.set_combine_stderr(True)
    return chan


class _CommandTimeout(Exception):
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class SshChannel(Channel):
    """Commands to one pool's hosts; `max_parallel` sessions at a time."""

    name = "ssh"

    def __init__(self, max_parallel: int = 32, poll_s: float = 1.0) -> None:
        super().__init__(CallPolicy(timeout_s=60.0, retries=1, backoff_s=0.5))
        self.pool = ThreadPoolExecutor(max_workers=max_parallel, thread_name_prefix="powerpool-ssh")
        self.poll_s = poll_s
        self.connections = _Connections()

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.connections.close()

    def map_error(self, target: str, operation: str, exc: BaseException) -> ChannelError | None:
        if isinstance(exc, paramiko.BadHostKeyException):
            return AuthFailed(
                target,
                self.name,
                operation,
                f"host key CHANGED ({exc.key.get_name()} {exc.key.fingerprint}): refusing to connect; "
                "if the host was reinstalled, verify the new key and re-pin it in known_hosts",
            )
        if isinstance(exc, paramiko.AuthenticationException) and "saw EOF" in str(exc):
            # the host dropped the connection mid-handshake (going down): not a key problem
            return NoAnswer(target, self.name, operation, f"the connection dropped: {exc}")
        if isinstance(exc, paramiko.AuthenticationException):
            return AuthFailed(target, self.name, operation, f"the host refused our key: {exc}")
        if isinstance(exc, paramiko.SSHException) and "known_hosts" in str(exc):
            return AuthFailed(
                target,
                self.name,
                operation,
                "unknown host key (not pinned in the pool's known_hosts): verify its fingerprint, then "
                "add it with ssh-keyscan",
            )
        if isinstance(exc, FileNotFoundError):
            return Refused(target, self.name, operation, f"missing file: {exc.filename}")
        if isinstance(exc, _CommandTimeout):
            return TransientChannelError(
                target,
                self.name,
                operation,
                f"the command did not return within {exc.seconds:g} s (host hung?)",
            )
        if isinstance(exc, paramiko.SSHException | OSError | EOFError | socket.timeout):
            return NoAnswer(target, self.name, operation, f"no SSH answer: {exc or type(exc).__name__}")
        return None

    async def run(
        self,
        t: SshTarget,
        command: str,
        operation: str,
        *,
        idempotent: bool = True,
        command_timeout_s: float | None = None,
        fresh: bool = False,
    ) -> tuple[int, str]:
        """(exit status, output) of a command; transport failures are typed errors."""
        loop = asyncio.get_running_loop()
        limit = t.command_timeout_s if command_timeout_s is None else command_timeout_s
        return await self.call(
            t.host,
            operation,
            lambda: loop.run_in_executor(self.pool, _exec, t, command, limit, self.connections, fresh),
            idempotent=idempotent,
            timeout_s=t.connect_timeout_s * 4 + limit + 5,
        )

    async def read(self, t: SshTarget, *paths: str) -> list[str]:
        code, out = await self.run(t, "cat " + " ".join(paths), "read " + " ".join(paths))
        if code != 0:
            raise Refused(t.host, self.name, "read", f"cat {' '.join(paths)} failed: {out.strip()}")
        return out.split()

    async def sudo(self, t: SshTarget, command: str, *, idempotent: bool = True, fresh: bool = False) -> str:
        """Run an exact root command through `sudo -n`; a missing rule is Refused and says
        which rule to add."""
        code, out = await self.run(t, "sudo -n " + command, command, idempotent=idempotent, fresh=fresh)
        if code != 0 and any(s in out for s in _SUDO_DENIED):
            raise Refused(
                t.host,
                self.name,
                command,
                f"sudo refused: add `{command}` to the sudoers rule of {t.user} (see docs/ssh.md)",
            )
        if code != 0:
            raise TransientChannelError(t.host, self.name, command, f"exit {code}: {out.strip()[-200:]}")
        return out

    async def readiness(self, t: SshTarget) -> Readiness:
        boot_id, suspends = await self.read(t, BOOT_ID, SUSPENDS)
        return Readiness(boot_id, int(suspends))

    async def load(self, t: SshTarget, command: str | None = None) -> float:
        """The host's 1-minute load average, or the number a configured command prints."""
        code, out = await self.run(t, command or "cat /proc/loadavg", "load")
        if code != 0:
            raise Refused(t.host, self.name, "load", f"exit {code}: {out.strip()[-200:]}")
        try:
            return float(out.split()[0])
        except (IndexError, ValueError):
            raise Refused(t.host, self.name, "load", f"expected a number, got {out.strip()[:60]!r}") from None

    async def _state_now(self, t: SshTarget, goal: PowerState) -> bool:
        if goal in (PowerState.ACTIVE, PowerState.FREQ_SCALED):
            (governor,) = await self.read(t, GOVERNOR)
            return governor == ("powersave" if goal is PowerState.FREQ_SCALED else "performance")
        if goal is PowerState.DISK_STANDBY:
            out = await self.sudo(t, "hdparm -C " + " ".join(t.disks))
            return out.count("standby") >= len(t.disks)
        return False

    async def _silent(self, t: SshTarget) -> bool:
        """True once the host no longer answers SSH (asleep, off or cut)."""
        try:
            await self.run(
                t, "true", "probe", idempotent=False, command_timeout_s=t.connect_timeout_s, fresh=True
            )
        except TransientChannelError:
            return True
        return False

    async def enter(
        self, t: SshTarget, goal: PowerState, deadline_s: float
    ) -> tuple[Outcome, Readiness | None]:
        """Put the host into `goal` and verify it; returns the outcome and, for states the
        host leaves the network in, its readiness before (to prove the wake later)."""
        if goal not in ROOT_COMMANDS:
            raise Refused(t.host, self.name, goal.value, "not reachable over SSH (use the pdu channel)")
        if goal is PowerState.DISK_STANDBY and not t.disks:
            raise Refused(t.host, self.name, goal.value, "no disks listed for this host")
        start = time.monotonic()
        before = await self.readiness(t)
        if goal not in GONE and await self._state_now(t, goal):
            return Outcome(t.host, goal.value, True, 0.0, self.name, "already there"), None
        command = ROOT_COMMANDS[goal] + (" " + " ".join(t.disks) if goal is PowerState.DISK_STANDBY else "")
        await self.sudo(t, command, idempotent=goal not in GONE, fresh=goal in GONE)
        if goal in GONE:  # verified when the host stops answering
            await self.verify(
                t.host, goal.value, lambda: self._silent(t), bool, deadline_s, self.poll_s, start
            )
        else:
            await self.verify(
                t.host, goal.value, lambda: self._state_now(t, goal), bool, deadline_s, self.poll_s, start
            )
        return Outcome(t.host, goal.value, False, time.monotonic() - start, self.name), before

    async def wait_ready(
        self, t: SshTarget, before: Readiness | None, deadline_s: float, started: float
    ) -> Outcome:
        """Verify a wake: SSH answers and the boot id or suspend count shows the host
        really came back (not a stale answer from before it went down)."""

        def back(r: Readiness) -> bool:
            return before is None or r.after(before)

        await self.verify(t.host, "wake", lambda: self.readiness(t), back, deadline_s, self.poll_s, started)
        return Outcome(t.host, PowerState.ACTIVE.value, False, time.monotonic() - started, self.name)
