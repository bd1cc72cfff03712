"""The running service's local HTTP API, and the CLI's client for it.

The server listens on 127.0.0.1 only; every /v1 call needs the bearer token the service
writes to `<state dir>/api.token` (mode 0600), and `<state dir>/api.json` tells the CLI
where to call. /metrics needs no token (Prometheus scrapes it). Manual actions go through
`powerpool.manual`, the same guards and lock as the controller.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from aiohttp import web

from powerpool import manual, qualify
from powerpool.errors import PowerpoolError
from powerpool.journal.store import Store
from powerpool.metrics import measured, whole
from powerpool.model import HoldKind, PowerState
from powerpool.planner.explain import plan_json
from powerpool.service import Service

API_FILE, TOKEN_FILE = "api.json", "api.token"


# -- views shared by the API and the CLI's direct mode -----------------------------------


def status(svc: Service) -> dict[str, Any]:
    now = svc.now()
    pools = []
    for name, rt in svc.pools.items():
        pool, j = rt.bundle.pool, rt.journal
        hosts = []
        metered = measured(rt, now)
        for h in pool.hosts:
            o = j.state(h.name)
            prof = pool.profiles[h.profile]
            it = j.open.get(h.name)
            hosts.append(
                {
                    "host": h.name,
                    "state": o.state.value,
                    "since": o.since.isoformat(timespec="seconds"),
                    "moving_to": it.dst.value if it else None,
                    "watts": metered[h.name]
                    if h.name in metered
                    else (prof.watts(o.state) if prof.supports(o.state) else None),
                    "watts_source": "pdu" if h.name in metered else "profile",
                    "health": o.health.value,
                    "hold": None
                    if o.hold is None
                    else {
                        "kind": o.hold.kind.value,
                        "until": o.hold.until.isoformat(timespec="seconds") if o.hold.until else None,
                        "reason": o.hold.reason,
                        "who": o.hold.owner,
                    },
                }
            )
        plan = rt.controller.last_plan
        pools.append(
            {
                "pool": name,
                "acting": rt.acting and not rt.controller.dry_run,
                "load": j.load,
                "load_age_s": (now - j.load_at).total_seconds() if j.load_at else None,
                "power_w": svc.metrics.pool_watts(name),
                "power_source": "pdu" if whole(rt, metered) else "profile",
                "needed": plan.needed if plan else None,
                "tiers": [
                    {"tier": t.name, "required": t.required, "available": t.available} for t in plan.tiers
                ]
                if plan
                else [],
                "notes": list(plan.notes) if plan else [],
                "hosts": hosts,
            }
        )
    return {"now": now.isoformat(timespec="seconds"), "pools": pools}


def plan_view(svc: Service) -> dict[str, Any]:
    """Each pool's plan from its last tick (None before the first)."""
    return {
        name: None if rt.controller.last_plan is None else plan_json(name, rt.controller.last_plan)
        for name, rt in svc.pools.items()
    }


def journal_view(store: Store, host: str | None, since: datetime | None) -> list[dict[str, Any]]:
    return [
        {"at": e.at.isoformat(timespec="seconds"), "pool": e.pool, "host": e.host, "event": e.event,
         "detail": e.detail, "who": e.who}
        for e in store.audit(host, since)
    ]  # fmt: skip


# -- the server -----------------------------------------------------------------------


class ApiServer:
    def __init__(self, svc: Service, port: int = 0) -> None:
        self.svc, self.port = svc, port
        self.token = secrets.token_urlsafe(32)
        app = web.Application(middlewares=[self._guard])
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/v1/status", self._status)
        app.router.add_get("/v1/plan", self._plan)
        app.router.add_get("/v1/journal", self._journal)
        app.router.add_post("/v1/wake", self._wake)
        app.router.add_post("/v1/sleep", self._sleep)
        app.router.add_post("/v1/hold", self._hold)
        app.router.add_post("/v1/release", self._release)
        app.router.add_post("/v1/qualify", self._qualify)
        app.router.add_get("/v1/qualify", self._qualification)
        self.qualifying: dict[str, tuple[qualify.Qualification, asyncio.Task[qualify.Qualification]]] = {}
        self.runner = web.AppRunner(app, access_log=None)

    async def start(self) -> str:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.port)
        await site.start()
        port = self.runner.addresses[0][1]
        self.url = f"http://127.0.0.1:{port}"
        d = self.svc.state_dir
        token = d / TOKEN_FILE
        token.touch(mode=0o600)
        os.chmod(token, 0o600)
        token.write_text(self.token)
        (d / API_FILE).write_text(json.dumps({"url": self.url, "pid": os.getpid()}))
        return self.url

    async def stop(self) -> None:
        (self.svc.state_dir / API_FILE).unlink(missing_ok=True)
        await self.runner.cleanup()
        running = [t for _, t in self.qualifying.values() if not t.done()]
        if running:  # a round trip in flight: let it finish, as the fleet's verifications do
            _, pending = await asyncio.wait(running, timeout=60.0)
            for t in pending:
                t.cancel()

    @web.middleware
    async def _guard(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path.startswith("/v1/") and request.headers.get("Authorization") != f"Bearer {self.token}":
            return self._json({"error": "missing or wrong token (read it from the state dir)"}, 401)
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except manual.Refusal as e:
            return self._json({"error": str(e), "host": e.host, "rule": e.rule, "detail": e.detail}, 409)
        except (PowerpoolError, KeyError, ValueError, TypeError) as e:
            return self._json({"error": f"{type(e).__name__}: {e}"}, 400)

    @staticmethod
    def _json(body: Any, code: int = 200) -> web.Response:
        return web.json_response(body, status=code)

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=self.svc.metrics.render(), content_type="text/plain", charset="utf-8")

    async def _status(self, request: web.Request) -> web.Response:
        return self._json(status(self.svc))

    async def _plan(self, request: web.Request) -> web.Response:
        return self._json(plan_view(self.svc))

    async def _journal(self, request: web.Request) -> web.Response:
        since = request.query.get("since")
        when = datetime.fromisoformat(since) if since else None
        return self._json(journal_view(self.svc.store, request.query.get("host"), when))

    async def _wake(self, request: web.Request) -> web.Response:
        b = await request.json()
        who, reason, force = b["who"], b.get("reason", ""), bool(b.get("force"))
        hold_s = float(b.get("hold_s", manual.DEFAULT_HOLD_S))
        if b.get("pool"):
            return self._json(await manual.wake_n(self.svc, b["pool"], int(b["n"]), who, reason))
        started = [
            await manual.move(self.svc, h, PowerState.ACTIVE, who, reason, force, hold_s) for h in b["hosts"]
        ]
        return self._json(started)

    async def _sleep(self, request: web.Request) -> web.Response:
        b = await request.json()
        hold_s = float(b.get("hold_s", manual.DEFAULT_HOLD_S))
        out = await manual.move(
            self.svc,
            b["host"],
            PowerState(b["to"]),
            b["who"],
            b.get("reason", ""),
            bool(b.get("force")),
            hold_s,
        )
        return self._json(out)

    async def _hold(self, request: web.Request) -> web.Response:
        b = await request.json()
        await manual.hold(self.svc, b["host"], HoldKind(b["kind"]), b.get("hold_s"), b["reason"], b["who"])
        return self._json({"host": b["host"], "hold": b["kind"]})

    async def _release(self, request: web.Request) -> web.Response:
        b = await request.json()
        await manual.release(self.svc, b["host"], b["who"])
        return self._json({"host": b["host"], "released": True})

    async def _qualify(self, request: web.Request) -> web.Response:
        b = await request.json()
        host, who = b["host"], b["who"]
        if host in self.qualifying and not self.qualifying[host][1].done():
            raise manual.Refusal(host, "one qualification at a time", "already being qualified")
        q = await qualify.prepare(self.svc, host, [PowerState(s) for s in b.get("states", [])], who)
        self.qualifying[host] = (q, qualify.spawn(self.svc, q, who))
        return self._json(q.view())

    async def _qualification(self, request: web.Request) -> web.Response:
        host = request.query["host"]
        if host not in self.qualifying:
            return self._json({"error": f"no qualification of {host} since the service started"}, 404)
        return self._json(self.qualifying[host][0].view())


# -- the client -----------------------------------------------------------------------


class ApiClient:
    """Talks to a running service; `connect` returns None when none runs there."""

    def __init__(self, url: str, token: str) -> None:
        self.url, self.token = url, token

    @classmethod
    def connect(cls, state_dir: Path) -> ApiClient | None:
        try:
            info = json.loads((state_dir / API_FILE).read_text())
            token = (state_dir / TOKEN_FILE).read_text().strip()
        except (OSError, ValueError):
            return None
        client = cls(info["url"], token)
        try:
            client.call("GET", "/v1/status")
        except OSError:
            return None  # a stale file from a service that died
        return client

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            answer = json.loads(e.read() or b"{}")
            if e.code == 409:
                raise manual.Refusal(answer["host"], answer["rule"], answer["detail"]) from None
            raise PowerpoolError(answer.get("error", f"HTTP {e.code}")) from None
