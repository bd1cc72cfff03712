"""Load from the pool's own hosts: the sum of their 1-minute load averages (or of a
configured command's number) over the hosts that answer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from datetime import datetime

from powerpool.channels.ssh import SshChannel, SshTarget
from powerpool.errors import ChannelError
from powerpool.reconcile import Reading


class SshLoadSource:
    def __init__(
        self, ssh: SshChannel, targets: Callable[[], Iterable[SshTarget]], command: str | None = None
    ) -> None:
        self.ssh, self.targets, self.command = ssh, targets, command
        self.error = ""

    async def read(self, now: datetime) -> Reading:
        targets = list(self.targets())  # the warm hosts now: sleeping ones do not answer
        if not targets:
            self.error = "no warm host to ask"
            return Reading(None, None)
        values = await asyncio.gather(
            *(self.ssh.load(t, self.command) for t in targets), return_exceptions=True
        )
        good = [v for v in values if isinstance(v, float)]
        bad = [v for v in values if isinstance(v, ChannelError)]
        if not good:
            self.error = f"no host answered ({bad[0] if bad else 'nothing'})"
            return Reading(None, None)
        self.error = f"{len(bad)} host(s) did not answer" if bad else ""
        return Reading(sum(good), now)
