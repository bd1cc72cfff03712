"""What every powerpool command shares: consoles, friendly errors, file loading."""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console

from powerpool.config import Loaded, discover, load_all
from powerpool.errors import NO_VALUE, ConfigError, PowerpoolError, Problem

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn powerpool's typed errors into readable lines and exit code 2."""

    @wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ConfigError as e:
            for p in e.problems:
                err.print(f"[red]error:[/red] {p}", markup=True, soft_wrap=True)
            n = len(e.problems)
            err.print(f"{n} problem{'s' if n != 1 else ''} found; nothing was applied.")
            sys.exit(2)
        except PowerpoolError as e:
            err.print(f"[red]error:[/red] {e}", soft_wrap=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def load(
    paths: tuple[Path, ...], hardware: Path | None, overrides: Mapping[str, Any] | None = None
) -> Loaded:
    given = list(paths) or [p for p in (Path("policies"), Path("hardware")) if p.exists()]
    if not given:
        raise ConfigError([_problem(".", "no policies/ or hardware/ here; pass files or folders")])
    hw, policies = discover(given)
    if not hw:
        folder = hardware or _near_hardware(policies)
        hw, _ = discover([folder])
        if not hw:
            raise ConfigError([_problem(str(folder), "no hardware profiles found (servers/*.toml)")])
    return load_all(policies, hw, pdu_families(hw[0].parent.parent / "pdus"), overrides)


def pdu_families(folder: Path) -> frozenset[str] | None:
    """The PDU family names shipped beside the server profiles (None: no such folder)."""
    if not folder.is_dir():
        return None
    from powerpool.channels.pdu_profile import load_pdu_profiles

    return frozenset(load_pdu_profiles(folder))


def _near_hardware(policies: list[Path]) -> Path:
    for p in policies:
        for parent in p.resolve().parents:
            if (parent / "hardware" / "servers").is_dir():
                return parent / "hardware"
    return Path("hardware")


def _problem(file: str, text: str) -> Problem:
    return Problem(file, "", NO_VALUE, text)


HARDWARE = click.option(
    "--hardware",
    type=click.Path(path_type=Path, file_okay=False),
    help="Folder of hardware profiles (default: hardware/ beside the policies).",
)
JSON = click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")
