"""Resolve secret references at the moment of use, so secrets never sit in policy files,
the journal or logs. A reference is `env:NAME`, `file:/path` or `credential:NAME` (a
systemd credential, read from $CREDENTIALS_DIRECTORY)."""

from __future__ import annotations

import os
from pathlib import Path

from powerpool.errors import SecretError


def resolve(ref: str) -> str:
    """The secret behind `ref`, stripped of a trailing newline; SecretError says which
    reference could not be read and why (never the secret)."""
    kind, _, name = ref.partition(":")
    if kind == "env":
        value = os.environ.get(name)
        if value is None:
            raise SecretError(f"{ref}: environment variable {name} is not set")
        return value
    if kind == "file":
        return _read(Path(name), ref)
    if kind == "credential":
        base = os.environ.get("CREDENTIALS_DIRECTORY")
        if not base:
            raise SecretError(
                f"{ref}: CREDENTIALS_DIRECTORY is not set (run under systemd with LoadCredential=)"
            )
        return _read(Path(base) / name, ref)
    raise SecretError(f"{ref}: expected env:NAME, file:/path or credential:NAME")


def resolve_path(ref: str) -> Path:
    """A file holding the secret (SSH keys are passed to the library as a path)."""
    kind, _, name = ref.partition(":")
    if kind == "file":
        path = Path(name)
    elif kind == "credential":
        path = Path(os.environ.get("CREDENTIALS_DIRECTORY", "")) / name
    else:
        raise SecretError(f"{ref}: a key file is needed here: write file:/path or credential:NAME")
    if not path.is_file():
        raise SecretError(f"{ref}: no such file {path}")
    return path


def _read(path: Path, ref: str) -> str:
    try:
        return path.read_text().rstrip("\n")
    except OSError as e:
        raise SecretError(f"{ref}: cannot read {path}: {e.strerror}") from None
