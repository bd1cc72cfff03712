"""The Grafana dashboard in docs/ queries only metrics the service exports."""

from __future__ import annotations

import json
import re

from powerpool.metrics import Metrics
from tests.conftest import REPO

SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}


def exported() -> set[str]:
    names = set()
    for family in Metrics().registry.collect():
        names |= {family.name + s for s in SUFFIXES[family.type]}
    return names


def test_every_dashboard_query_names_an_exported_metric() -> None:
    dash = json.loads((REPO / "docs" / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    assert len(exprs) >= 10
    used = {m for e in exprs for m in re.findall(r"\bpowerpool_\w+", e)}
    assert used and not used - exported(), used - exported()
    assert any(v["name"] == "pool" for v in dash["templating"]["list"])
