"""A file holding the current load as one number; observed when the file last changed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from powerpool.reconcile import Reading


class FileSource:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.error = ""  # why the last read gave nothing, for logs and status

    async def read(self, now: datetime) -> Reading:
        try:
            text = self.path.read_text()
            mtime = self.path.stat().st_mtime
        except OSError as e:
            self.error = f"{self.path}: {e.strerror or e}"
            return Reading(None, None)
        try:
            value = float(text.split()[0])
        except (IndexError, ValueError):
            self.error = f"{self.path}: expected a number, found {text.strip()[:40]!r}"
            return Reading(None, None)
        self.error = ""
        return Reading(value, datetime.fromtimestamp(mtime, UTC))
