"""A pool's hosts as the live controller reaches them: the reconcile tick's Fleet.

`start` launches the host's escalation as a task and returns at once; the tick collects
verified results through `finished`. `observe` says what a host is now without changing
it (SSH answers, its governor, its outlets), which is how the service learns the state of
new hosts and how an intent left open by a crash is confirmed or failed: `resume` only
watches a host until the intent's deadline, it never re-sends the command.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from datetime import datetime, timedelta
from typing import Any

from powerpool.channels.escalation import Escalator, HostLinks
from powerpool.channels.ssh import GOVERNOR
from powerpool.clock import Clock
from powerpool.errors import ChannelError, FatalChannelError, TransientChannelError
from powerpool.journal import Intent
from powerpool.model import Action, PowerState

A, F = PowerState.ACTIVE, PowerState.FREQ_SCALED
GONE_STATES = (PowerState.SLEEP, PowerState.HIBERNATE, PowerState.OFF, PowerState.UNPOWERED)


class LiveFleet:
    def __init__(
        self, links: Mapping[str, HostLinks], escalator: Escalator, clock: Clock, poll_s: float = 1.0
    ) -> None:
        self.links, self.esc, self.clock, self.poll_s = links, escalator, clock, poll_s
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._done: list[tuple[str, PowerState | None, str]] = []
        self.fatal: dict[str, str] = {}  # host -> why it must be quarantined

    # -- the Fleet protocol -------------------------------------------------------------

    async def start(self, action: Action, intent: Intent) -> None:
        budget = (intent.deadline - intent.started).total_seconds()
        self._spawn(action.host, self._drive(action, budget))

    def finished(self, now: datetime) -> list[tuple[str, PowerState | None, str]]:
        done, self._done = self._done, []
        return done

    def abandon(self, host: str, now: datetime) -> None:
        task = self._tasks.pop(host, None)
        if task is not None:
            task.cancel()

    # -- beyond the protocol ------------------------------------------------------------

    @property
    def busy(self) -> int:
        return len(self._tasks)

    def resume(self, intent: Intent) -> None:
        """Verify an intent found open after a restart: watch, never act."""
        self._spawn(intent.host, self._watch(intent))

    async def drain(self, timeout_s: float) -> None:
        """Let in-flight verifications finish (SIGTERM), cancelling what is left."""
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout_s)
            for t in pending:
                t.cancel()

    async def observe(self, host: str, expect: PowerState | None = None) -> PowerState | None:
        """The host's state as probed now; None when it cannot be told (e.g. silent, with
        no outlets to read and no gone state expected)."""
        h = self.links[host]
        ssh = self.esc.ssh
        if h.ssh is not None:
            try:  # one command shows both that the OS answers and how it runs
                (governor,) = await ssh.read(h.ssh, GOVERNOR)
                return F if governor == "powersave" else A
            except TransientChannelError:
                pass  # silent: asleep, off, unpowered, or unreachable
        if h.outlets:
            states = await asyncio.gather(*(pdu.state(n) for pdu, n in h.outlets), return_exceptions=True)
            if all(s == "off" for s in states):
                return PowerState.UNPOWERED
            if expect is PowerState.UNPOWERED and all(s == "on" for s in states):
                return PowerState.OFF  # silent but powered: shut down, not yet cut
        if expect is not None and expect in GONE_STATES and expect is not PowerState.UNPOWERED:
            return expect  # silent, as a host in that state is (S3 and S5 look alike)
        return None

    # -- tasks --------------------------------------------------------------------------

    def _spawn(self, host: str, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks[host] = task

        def forget(t: asyncio.Task[None]) -> None:
            if self._tasks.get(host) is t:
                del self._tasks[host]

        task.add_done_callback(forget)

    async def _drive(self, action: Action, budget: float) -> None:
        h = self.links[action.host]
        try:
            out = await self.esc.drive(h, action.src, action.dst, budget)
        except FatalChannelError as e:
            self.fatal[action.host] = str(e)
            self._done.append((action.host, None, str(e)))
        except ChannelError as e:
            self._done.append((action.host, None, str(e)))
        else:
            what = "no-op: already there" if out.noop else f"verified in {out.seconds:.1f} s"
            self._done.append((action.host, PowerState(out.reached), f"{out.channel}: {what}"))

    async def _watch(self, it: Intent) -> None:
        seen: PowerState | None = None
        while True:
            try:
                seen = await self.observe(it.host, expect=it.dst)
            except ChannelError:
                seen = None
            if seen is it.dst or (seen is not None and seen is not it.src):
                break  # reached, or settled elsewhere (e.g. shut down but not yet cut)
            if self.clock.now() >= it.deadline - timedelta(seconds=2 * self.poll_s):
                break  # report before the tick fails the intent for its deadline
            await asyncio.sleep(self.poll_s)
        how = "confirmed" if seen is it.dst else f"not confirmed (found {seen.value if seen else 'unknown'})"
        self._done.append((it.host, seen, f"re-observed after restart: {how}; nothing re-sent"))
