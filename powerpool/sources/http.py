"""Load over HTTP: a Prometheus instant query, or any JSON endpoint and a dotted field."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import aiohttp

from powerpool.reconcile import Reading


class _HttpSource:
    def __init__(self, timeout_s: float) -> None:
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.error = ""
        self._session: aiohttp.ClientSession | None = None  # made on the service's loop

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def _get(self, url: str, params: dict[str, str] | None = None) -> Any:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        try:
            async with self._session.get(url, params=params) as r:
                if r.status != 200:
                    self.error = f"{url}: HTTP {r.status}"
                    return None
                return await r.json(content_type=None)
        except (aiohttp.ClientError, TimeoutError, ValueError) as e:
            self.error = f"{url}: {type(e).__name__}: {e}"
            return None


class PrometheusSource(_HttpSource):
    """`/api/v1/query` with one scalar or one-series vector result; its sample time is
    when the load was observed."""

    def __init__(self, base_url: str, query: str, timeout_s: float = 5.0) -> None:
        super().__init__(timeout_s)
        self.url, self.query = base_url.rstrip("/") + "/api/v1/query", query

    async def read(self, now: datetime) -> Reading:
        body = await self._get(self.url, {"query": self.query})
        if body is None:
            return Reading(None, None)
        try:
            data = body["data"]
            result = data["result"]
            if data["resultType"] == "vector":
                if len(result) != 1:
                    self.error = f"query returned {len(result)} series; expected exactly one (use sum())"
                    return Reading(None, None)
                result = result[0]["value"]
            t, value = float(result[0]), float(result[1])
        except (KeyError, IndexError, TypeError, ValueError) as e:
            self.error = f"unexpected Prometheus answer ({type(e).__name__}: {e})"
            return Reading(None, None)
        if value != value:  # NaN: no data
            self.error = "the query returned NaN"
            return Reading(None, None)
        self.error = ""
        return Reading(value, datetime.fromtimestamp(t, UTC))


class HttpJsonSource(_HttpSource):
    """Any JSON endpoint; `field` is a dotted path to the number (and `observed_at`, an
    ISO time or unix seconds beside it, is used when present)."""

    def __init__(self, url: str, field: str | None, timeout_s: float = 5.0) -> None:
        super().__init__(timeout_s)
        self.url, self.path = url, (field or "value").split(".")

    async def read(self, now: datetime) -> Reading:
        body = await self._get(self.url)
        if body is None:
            return Reading(None, None)
        node, parent = body, body
        try:
            for key in self.path:
                parent, node = node, node[int(key) if isinstance(node, list) else key]
            value = float(node)
        except (KeyError, IndexError, TypeError, ValueError):
            self.error = f"{self.url}: no number at {'.'.join(self.path)}"
            return Reading(None, None)
        self.error = ""
        return Reading(value, _when(parent.get("observed_at") if isinstance(parent, dict) else None, now))


def _when(raw: object, now: datetime) -> datetime:
    if isinstance(raw, int | float):
        return datetime.fromtimestamp(raw, UTC)
    if isinstance(raw, str):
        try:
            t = datetime.fromisoformat(raw)
            return t if t.tzinfo else t.replace(tzinfo=UTC)
        except ValueError:
            pass
    return now
