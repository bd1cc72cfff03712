"""What every channel shares, so that drivers implement primitives only.

The base owns: a timeout on every call, bounded retries of transient failures (never of
a command that is not idempotent), verification by polling a read to the goal under a
deadline, and the mapping of library errors to powerpool's typed errors with host,
channel and operation attached. Success always means a verified state, never "the
command returned".
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from powerpool.errors import ChannelError, NoAnswer, TransientChannelError, TransitionTimeout

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Outcome:
    """The verified result of one command: what was reached, whether anything was sent,
    and how long it took (the qualify command and the wake statistics record this)."""

    target: str  # host or outlet the command was about
    reached: str
    noop: bool
    seconds: float
    channel: str
    detail: str = ""


@dataclass(frozen=True, slots=True)
class CallPolicy:
    """Timeout per attempt, retries of transient failures, pause between attempts."""

    timeout_s: float = 5.0
    retries: int = 1
    backoff_s: float = 0.2


class Channel:
    """Base of the ssh, wol and pdu channels."""

    name = "channel"

    def __init__(self, policy: CallPolicy | None = None) -> None:
        self.policy = policy or CallPolicy()

    def map_error(self, target: str, operation: str, exc: BaseException) -> ChannelError | None:
        """Turn a library exception into a typed error; None lets it propagate (a bug)."""
        return None

    async def call(
        self,
        target: str,
        operation: str,
        fn: Callable[[], Awaitable[T]],
        *,
        idempotent: bool = True,
        timeout_s: float | None = None,
    ) -> T:
        """Run one primitive under the timeout, retrying transient failures when it is safe."""
        timeout = self.policy.timeout_s if timeout_s is None else timeout_s
        attempts = 1 + (self.policy.retries if idempotent else 0)
        for attempt in range(attempts):
            try:
                return await asyncio.wait_for(fn(), timeout)
            except ChannelError as e:
                err: ChannelError = e
            except TimeoutError:
                err = NoAnswer(target, self.name, operation, f"no answer within {timeout:g} s")
            except Exception as e:
                mapped = self.map_error(target, operation, e)
                if mapped is None:
                    raise
                err = mapped
            if not isinstance(err, TransientChannelError) or attempt == attempts - 1:
                raise err
            await asyncio.sleep(self.policy.backoff_s * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover

    async def verify(
        self,
        target: str,
        operation: str,
        read: Callable[[], Awaitable[T]],
        done: Callable[[T], bool],
        deadline_s: float,
        interval_s: float = 0.5,
        started: float | None = None,
    ) -> T:
        """Poll `read` until `done` or `deadline_s` after `started` (default: now); a read
        that fails transiently counts as 'not there yet' (a host entering S3 stops
        answering), a fatal one ends it."""
        end = (time.monotonic() if started is None else started) + deadline_s
        last: T | None = None
        seen = "nothing readable"
        while True:
            try:
                last = await read()
                if done(last):
                    return last
                seen = f"last read {last}"
            except TransientChannelError as e:
                seen = f"last read failed: {e.detail}"
            left = end - time.monotonic()
            if left <= 0:
                raise TransitionTimeout(
                    target, self.name, operation, f"goal not verified within {deadline_s:g} s ({seen})"
                )
            await asyncio.sleep(min(interval_s, left))
