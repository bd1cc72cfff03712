"""Load sources: where a pool's load comes from. Each reports a value and when it was
observed, so a stale or silent source freezes sleeps (the planner checks the age)."""

from __future__ import annotations

from collections.abc import Callable

from powerpool.config.schema import LoadSpec
from powerpool.reconcile import LoadSource, Reading
from powerpool.sources.file import FileSource
from powerpool.sources.http import HttpJsonSource, PrometheusSource
from powerpool.sources.ssh import SshLoadSource

__all__ = ["FileSource", "HttpJsonSource", "PrometheusSource", "Reading", "SshLoadSource", "build"]


def build(spec: LoadSpec, ssh_source: Callable[[], LoadSource] | None = None) -> LoadSource:
    """The source a policy's [load] table describes (the ssh one needs the pool's hosts)."""
    if spec.source == "prometheus":
        assert spec.url and spec.query  # the schema requires them
        return PrometheusSource(spec.url, spec.query, spec.timeout)
    if spec.source == "http":
        assert spec.url
        return HttpJsonSource(spec.url, spec.field, spec.timeout)
    if spec.source == "file":
        assert spec.path
        return FileSource(spec.path)
    if ssh_source is None:
        raise ValueError("load.source = 'ssh' needs the pool's SSH settings")
    return ssh_source()
