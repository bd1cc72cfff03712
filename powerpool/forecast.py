"""Demand over the wake horizon: pure functions of recent history and the time.

A slow state is only safe to use if the pool can see demand coming for as long as that
state takes to wake. Three cheap signals cover what a controller can know without a
model: how much the load has been swinging (the next swing is likely as large), the
recent trend (a ramp keeps ramping), and the operator's schedule windows.
"""

from __future__ import annotations

import functools
import math
import weakref
from collections.abc import Sequence
from datetime import datetime, timedelta

from powerpool.model import Pool, Window


def peak_since(history: Sequence[tuple[float, float]], since: float) -> float:
    """Largest value at or after `since` (history is (t, value), oldest first)."""
    best = 0.0
    for t, v in reversed(history):
        if t < since:
            break
        if v > best:
            best = v
    return best


def trend_per_s(history: Sequence[tuple[float, float]], since: float) -> float:
    """Least-squares slope of the samples at or after `since`, in value per second."""
    n = 0
    st = sv = stt = stv = 0.0
    for t, v in reversed(history):
        if t < since:
            break
        n += 1
        st += t
        sv += v
        stt += t * t
        stv += t * v
    if n < 3:
        return 0.0
    den = n * stt - st * st
    if den <= 0.0:
        return 0.0
    return (n * stv - st * sv) / den


MARGIN_SIGMAS = 1.0  # how many standard deviations of the recent swing are kept warm


def swing(history: Sequence[tuple[float, float]], since: float, now: float = 0.0) -> float:
    """Standard deviation of the load over [since, now], each sample weighted by how long
    it held (the last one until `now`; the one before `since` from `since` on).

    Weighting by time keeps the figure the same whatever the sampling rate, and whether
    a run of equal readings was kept as two samples or as every one of them."""
    n = len(history)
    i = n
    while i > 0 and history[i - 1][0] > since:
        i -= 1
    total = s1 = s2 = 0.0
    for j in range(max(0, i - 1), n):
        a = history[j][0] if history[j][0] > since else since
        b = history[j + 1][0] if j + 1 < n else now
        if b > a:
            w, v = b - a, history[j][1]
            total += w
            s1 += w * v
            s2 += w * v * v
    if total <= 0.0:
        return 0.0
    mean = s1 / total
    return math.sqrt(max(0.0, s2 / total - mean * mean))


def swing_margin(history: Sequence[tuple[float, float]], since: float) -> float:
    """The warm margin above the current load: MARGIN_SIGMAS x the swing since `since`.

    Noisy load needs room for its next swing, calm load hardly any. A recent peak
    raises the swing for as long as it stays in the window, so a burst that just
    happened is still provisioned for, without holding the peak itself: on noisy
    load that would keep the top of every swing warm."""
    return MARGIN_SIGMAS * swing(history, since)


def rises_within(
    history: Sequence[tuple[float, float]], since: float, horizons: Sequence[float]
) -> list[float]:
    """For each horizon h (ascending): the largest rise from a sample at or after `since`
    to a later one at most h seconds after it (0 when there is none).

    A burst that took h seconds to build is what a host h seconds from ready must be
    there for. Only where readings change matters, so the answer is kept until a new
    value arrives or an old one leaves the window: most ticks only look it up."""
    lo = len(history)
    while lo > 0 and history[lo - 1][0] >= since:
        lo -= 1
    # A run of equal readings matters only at its ends: its last sample as the start of a
    # rise (the latest), its first as the end of one (the earliest). The first run in the
    # window starts rises only, the last one ends them only.
    ts: list[float] = []
    vs: list[float] = []
    end = len(history) - 1
    for k in range(lo, end + 1):
        t, v = history[k]
        if vs and v == vs[-1] and (k == end or history[k + 1][1] == v):
            continue  # inside a run, or the end of the last one
        if len(vs) == 1 and v == vs[0]:
            ts[0] = t  # the first run: keep its latest sample
            continue
        ts.append(t)
        vs.append(v)
    t0 = ts[0] if ts else 0.0
    return list(_rises(tuple(t - t0 for t in ts), tuple(vs), tuple(horizons)))


@functools.lru_cache(maxsize=256)
def _rises(ts: tuple[float, ...], vs: tuple[float, ...], horizons: tuple[float, ...]) -> tuple[float, ...]:
    """rises_within on a compressed history: per horizon, one pass with the window's
    minimum kept in a monotonic stack."""
    # The largest rise of all bounds every horizon: once one reaches it, the rest do too.
    top, low = 0.0, math.inf
    for v in vs:
        if v - low > top:
            top = v - low
        if v < low:
            low = v
    out: list[float] = []
    best = 0.0
    for h in horizons:
        if best < top and h > 0:
            mins: list[int] = []  # indices of rising values: mins[head] is the window's minimum
            head = 0
            for j, t in enumerate(ts):
                while head < len(mins) and ts[mins[head]] < t - h:
                    head += 1
                v = vs[j]
                if head < len(mins) and v - vs[mins[head]] > best:
                    best = v - vs[mins[head]]
                while len(mins) > head and vs[mins[-1]] >= v:
                    mins.pop()
                mins.append(j)
        out.append(best)
    return tuple(out)


def forecast(
    history: Sequence[tuple[float, float]],
    now: float,
    current: float,
    horizons: Sequence[float],
    trend_window_s: float,
    margin: float = 0.0,
) -> list[float]:
    """Demand to provision for at each horizon (seconds ahead, ascending).

    F(h) = current + max(margin, rising trend x h): the current load, plus room for the
    swing recent history shows (`margin`, from `swing_margin`, which the caller computes
    once and uses for sleeps too) or for a ramp that keeps ramping for h, whichever is
    larger. It never decreases with h.
    """
    slope = max(0.0, trend_per_s(history, now - trend_window_s))
    return [current + max(margin, slope * h) for h in horizons]


def _in_window(w: Window, local: datetime) -> bool:
    minute = local.hour * 60 + local.minute
    if w.start_min < w.end_min:
        return local.weekday() in w.days and w.start_min <= minute < w.end_min
    # Crosses midnight: the part after midnight belongs to the previous day's window.
    if minute >= w.start_min:
        return local.weekday() in w.days
    return minute < w.end_min and (local.weekday() - 1) % 7 in w.days


def window_floors(pool: Pool, now: datetime, horizons: Sequence[float]) -> list[int]:
    """For each horizon h: the most warm hosts any schedule window asks for between now
    and now + h. A window counts if it is open now or opens within h, so slow hosts are
    woken early enough for it. One pass per plan serves every horizon.

    The answer only changes at a minute boundary (a window opens or closes) or when a
    window's start comes within some horizon, so it is kept until the first of those."""
    if not pool.windows:
        return [0] * len(horizons)
    ts = now.timestamp()
    key = tuple(horizons)
    kept = _FLOORS.get(pool)
    if kept is not None and kept[0] <= ts < kept[1] and kept[2] == key:
        return list(kept[3])
    local = now.astimezone(pool.tz)
    midnight = local.replace(hour=0, minute=0, second=0, microsecond=0)
    out = [0] * len(horizons)
    until = (ts // 60.0 + 1.0) * 60.0  # zones are whole minutes off UTC: windows flip on these
    for w in pool.windows:
        opens_in = 0.0 if _in_window(w, local) else math.inf
        d = 0
        while opens_in == math.inf and d < 8:
            day = midnight + timedelta(days=d)
            start = day + timedelta(minutes=w.start_min)
            if day.weekday() in w.days and start > local:
                opens_in = (start - local).total_seconds()
            d += 1
        for i, h in enumerate(horizons):
            if opens_in <= h:
                if w.min_warm > out[i]:
                    out[i] = w.min_warm
            elif opens_in != math.inf:
                until = min(until, ts + opens_in - h)  # it comes within h then
    _FLOORS[pool] = (ts, until, key, tuple(out))
    return out


_FLOORS: weakref.WeakKeyDictionary[Pool, tuple[float, float, tuple[float, ...], tuple[int, ...]]] = (
    weakref.WeakKeyDictionary()
)


def window_floor(pool: Pool, now: datetime, horizon_s: float) -> int:
    """window_floors for a single horizon."""
    return window_floors(pool, now, [horizon_s])[0]
