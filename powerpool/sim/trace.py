"""Load traces for the simulator: read, check, scale.

Three formats: the canonical CSV (`t_s,load`), a CSV with an ISO 8601 `timestamp` column
and a value column, and a Prometheus range-query JSON export. Missing values are skipped
and counted; gaps (more than 3 steps without a sample) are reported and replayed as
stale load, so the planner freezes sleeps across them as it would live.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import statistics
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from powerpool.errors import NO_VALUE, ConfigError, Problem


@dataclass
class Trace:
    name: str
    t: list[float]  # seconds from the start, ascending
    load: list[float]  # in the trace's own unit
    step: float  # median sampling interval
    notes: list[str] = field(default_factory=list)

    @property
    def duration(self) -> float:
        return self.t[-1] - self.t[0] + self.step

    def scaled(self, factor: float) -> Trace:
        return Trace(self.name, list(self.t), [v * factor for v in self.load], self.step, list(self.notes))

    def gaps(self) -> list[tuple[float, float]]:
        """(start, length) of every stretch longer than 3 steps without a sample."""
        return [(a, b - a) for a, b in itertools.pairwise(self.t) if b - a > 3 * self.step]


def _bad(path: Path, key: str, value: object, expected: str) -> ConfigError:
    return ConfigError([Problem(str(path), key, value, expected)])


def _number(text: str) -> float | None:
    try:
        v = float(text)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) and v >= 0 else None


def _finish(path: Path, times: list[float], values: list[float], skipped: int) -> Trace:
    if len(times) < 2:
        raise _bad(path, "", NO_VALUE, "expected at least two samples with a value")
    pairs = sorted(zip(times, values, strict=True))
    t0 = pairs[0][0]
    t = [a - t0 for a, _ in pairs]
    steps = [b - a for a, b in itertools.pairwise(t) if b > a]
    trace = Trace(path.stem, t, [v for _, v in pairs], statistics.median(steps) if steps else 1.0)
    if skipped:
        trace.notes.append(f"{skipped} sample(s) without a usable value were skipped")
    gaps = trace.gaps()
    if gaps:
        total = sum(g for _, g in gaps)
        trace.notes.append(
            f"{len(gaps)} gap(s) longer than 3 steps ({total / 3600:.1f} h in all): replayed as stale load"
        )
    return trace


def _read_csv(path: Path, column: str | None) -> Trace:
    with path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise _bad(path, "", NO_VALUE, "expected a header line and samples")
    header = list(rows[0])
    if "t_s" in header:
        time_key, parse_time = "t_s", _number
    elif "timestamp" in header:
        time_key, parse_time = "timestamp", _iso
    else:
        raise _bad(path, "header", header, "expected a t_s or a timestamp column")
    value_key = column or ("load" if "load" in header else next((h for h in header if h != time_key), ""))
    if value_key not in header:
        raise _bad(path, "--column", value_key, f"no such column; the file has {', '.join(header)}")
    times, values, skipped = [], [], 0
    for i, row in enumerate(rows, start=2):
        t = parse_time(row.get(time_key) or "")
        if t is None:
            raise _bad(path, f"line {i}.{time_key}", row.get(time_key), "expected a time")
        v = _number(row.get(value_key) or "")
        if v is None:
            skipped += 1
            continue
        times.append(t)
        values.append(v)
    return _finish(path, times, values, skipped)


def _iso(text: str) -> float | None:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _read_prometheus(path: Path) -> Trace:
    try:
        data: Any = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise _bad(path, "", NO_VALUE, f"not valid JSON: {e}") from None
    result = data.get("data", {}).get("result") if isinstance(data, dict) else None
    if not isinstance(result, list) or not result:
        raise _bad(path, "data.result", NO_VALUE, "expected a Prometheus range-query result (matrix)")
    summed: dict[float, float] = {}
    skipped = 0
    for series in result:
        for pair in series.get("values", []):
            v = _number(pair[1]) if isinstance(pair, list) and len(pair) == 2 else None
            if v is None:
                skipped += 1
                continue
            summed[float(pair[0])] = summed.get(float(pair[0]), 0.0) + v
    trace = _finish(path, list(summed), list(summed.values()), skipped)
    if len(result) > 1:
        trace.notes.append(f"{len(result)} series were summed")
    return trace


def read_trace(path: Path, column: str | None = None) -> Trace:
    """Read any supported format; ConfigError says what is wrong and where."""
    if not path.is_file():
        raise _bad(path, "", NO_VALUE, "file not found")
    if path.suffix.lower() == ".json":
        return _read_prometheus(path)
    return _read_csv(path, column)
