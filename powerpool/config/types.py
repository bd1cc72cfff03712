"""Field types shared by the policy and hardware schemas, each with an error that says
what was expected."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import AfterValidator, BeforeValidator, ConfigDict

from powerpool.model import PowerState

STRICT = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """'90s', '10m', '1h30m', '2d' or a plain number of seconds -> seconds."""
    if isinstance(value, bool):
        raise ValueError("expected a duration like 90s, 10m or 2h")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError("expected a duration >= 0")
        return float(value)
    if isinstance(value, str):
        text = value.replace(" ", "").lower()
        if text and _DURATION.sub("", text) == "":
            return sum(float(n) * _UNITS[u] for n, u in _DURATION.findall(text))
    raise ValueError("expected a duration like 90s, 10m or 2h")


Duration = Annotated[float, BeforeValidator(parse_duration)]

_SECRET = re.compile(r"^(env:[A-Za-z_][A-Za-z0-9_]*|file:/\S+|credential:[A-Za-z0-9_.@-]+)$")


def _secret_ref(value: object) -> str:
    if not isinstance(value, str) or not _SECRET.match(value):
        raise ValueError(
            "a secret in clear text: write a reference instead "
            "(env:NAME, file:/path or credential:NAME), never the secret itself"
        )
    return value


SecretRef = Annotated[str, BeforeValidator(_secret_ref)]

_MAC = re.compile(r"^[0-9a-f]{2}([:-]?)[0-9a-f]{2}(\1[0-9a-f]{2}){4}$")


def _mac(value: object) -> str:
    if not isinstance(value, str) or not _MAC.match(value.strip().lower()):
        raise ValueError("expected a MAC address like aa:bb:cc:dd:ee:ff")
    digits = re.sub(r"[^0-9a-f]", "", value.lower())
    return ":".join(digits[i : i + 2] for i in range(0, 12, 2))


Mac = Annotated[str, BeforeValidator(_mac)]


def _state(value: object) -> PowerState:
    try:
        return PowerState(str(value))
    except ValueError:
        names = ", ".join(s.value for s in PowerState)
        raise ValueError(f"unknown power state; expected one of {names}") from None


State = Annotated[PowerState, BeforeValidator(_state)]

Channel = Literal["ssh", "wol", "pdu"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError("expected a name of letters, digits, '.', '_' or '-' (max 63)")
    return value


Name = Annotated[str, AfterValidator(_name)]

_DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def parse_days(text: str) -> frozenset[int]:
    """Cron-style day-of-week: '*', 'mon-fri', 'sat,sun', '1-5' (0 and 7 are Sunday)."""

    def one(tok: str) -> int:
        tok = tok.strip().lower()[:3]
        if tok in _DAYS:
            return _DAYS.index(tok)
        if tok.isdigit() and 0 <= int(tok) <= 7:
            return (int(tok) - 1) % 7
        raise ValueError(f"expected days like mon-fri, sat,sun or 1-5, not {tok!r}")

    if text.strip() == "*":
        return frozenset(range(7))
    days: set[int] = set()
    for part in text.split(","):
        if "-" in part:
            a, b = (one(x) for x in part.split("-", 1))
            days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
        else:
            days.add(one(part))
    return frozenset(days)


def parse_clock(text: str) -> int:
    """'08:00' -> minutes after midnight ('24:00' allowed as an end)."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if not m or int(m[1]) > 24 or int(m[2]) > 59 or (int(m[1]) == 24 and int(m[2])):
        raise ValueError("expected a time of day like 08:00")
    return int(m[1]) * 60 + int(m[2])
