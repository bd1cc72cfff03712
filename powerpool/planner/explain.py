"""A plan as plain data: what `powerpool plan --json` prints, offline or live, and what
the service's /v1/plan returns. One shape, so a script reads both the same way."""

from __future__ import annotations

from typing import Any

from powerpool.model import Plan


def plan_json(pool: str, p: Plan) -> dict[str, Any]:
    return {
        "pool": pool,
        "demand_hosts": round(p.demand, 4),
        "forecast_hosts": round(p.forecast, 4),
        "needed": p.needed,
        "tiers": [
            {
                "name": t.name,
                "within_s": t.within_s,
                "required": t.required,
                "available": t.available,
                "short": t.short,
            }
            for t in p.tiers
        ],
        "actions": [
            {"host": a.host, "from": a.src.value, "to": a.dst.value, "kind": a.kind.value, "reason": a.reason}
            for a in p.actions
        ],
        "vetoes": [
            {"host": v.host, "from": v.src.value, "to": v.dst.value, "rule": v.rule, "reason": v.reason}
            for v in p.vetoes
        ],
        "notes": list(p.notes),
    }
