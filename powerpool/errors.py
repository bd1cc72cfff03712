"""powerpool's typed errors.

PowerpoolError
├── ConfigError            bad policy/hardware input; carries every Problem found
├── SecretError            a secret reference (env:, file:, credential:) cannot be read
├── ChannelError           a channel operation failed (host, channel, operation)
│   ├── TransientChannelError   retry, then fall back to the next channel
│   │   ├── NoAnswer            the peer did not answer in time (down, or wrong community)
│   │   └── TransitionTimeout   the command went out but the goal state was not verified
│   └── FatalChannelError       never retried: the host is quarantined with the reason
│       ├── AuthFailed          credentials or a pinned host key were refused
│       └── Refused             the peer refused the operation (no such object, no sudo right)
└── LeadershipLost         this controller no longer holds the pool's lease
"""

from __future__ import annotations

from dataclasses import dataclass


class PowerpoolError(Exception):
    """Base of every error powerpool raises on purpose."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with an input file: where, what was found, what was expected."""

    file: str
    key: str
    value: object
    expected: str

    def __str__(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        if self.value is _NO_VALUE:
            return f"{where}: {self.expected}"
        return f"{where} = {_show(self.value)}: {self.expected}"


class _NoValue:
    def __repr__(self) -> str:
        return "<no value>"


_NO_VALUE: object = _NoValue()
NO_VALUE = _NO_VALUE


def _show(value: object) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 60 else text[:57] + "..."


class ConfigError(PowerpoolError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class ChannelError(PowerpoolError):
    def __init__(self, host: str, channel: str, operation: str, detail: str) -> None:
        self.host, self.channel, self.operation, self.detail = host, channel, operation, detail
        super().__init__(f"{host}: {channel} {operation}: {detail}")


class TransientChannelError(ChannelError):
    pass


class NoAnswer(TransientChannelError):
    pass


class TransitionTimeout(TransientChannelError):
    pass


class FatalChannelError(ChannelError):
    pass


class AuthFailed(FatalChannelError):
    pass


class Refused(FatalChannelError):
    pass


class SecretError(PowerpoolError):
    pass


class LeadershipLost(PowerpoolError):
    pass
