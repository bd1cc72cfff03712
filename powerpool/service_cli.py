"""`powerpool run` and the manual commands that work with it (status, wake, sleep, hold,
release, journal).

A manual command talks to the running service over its local API; when no service runs
on the state dir, it takes the pools' leases itself and acts directly, through the same
guards (`powerpool.manual`). Every command has `--json`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import click
from rich.progress import Progress
from rich.table import Table

from powerpool import manual, qualify
from powerpool.api import ApiClient, ApiServer, journal_view, status
from powerpool.cliutil import HARDWARE, JSON, err, friendly, load, out
from powerpool.config import Loaded
from powerpool.config.types import parse_duration
from powerpool.errors import ConfigError
from powerpool.journal.store import StateDirBusy
from powerpool.model import HoldKind, PowerState
from powerpool.planner import plan as make_plan
from powerpool.reconcile import close_finished, close_overdue
from powerpool.service import Service

log = logging.getLogger("powerpool")
STATE_DIR = click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=lambda: os.environ.get("POWERPOOL_STATE_DIR", "/var/lib/powerpool"),
    show_default="$POWERPOOL_STATE_DIR or /var/lib/powerpool",
    help="Where the journal, the API address and its token live.",
)
POLICIES = click.option(
    "--policies",
    type=click.Path(path_type=Path, exists=True),
    default=Path("policies"),
    show_default=True,
    help="Folder (or file) of pool policies.",
)


def FILES(fn: Callable[..., Any]) -> Callable[..., Any]:
    """--policies, --hardware and --state-dir: where a command finds the pools and the journal."""
    return POLICIES(HARDWARE(STATE_DIR(fn)))


def who_am_i() -> str:
    return os.environ.get("SUDO_USER") or os.environ.get("USER") or f"uid {os.getuid()}"


class JsonLog(logging.Formatter):
    def format(self, r: logging.LogRecord) -> str:
        return json.dumps(
            {"at": datetime.fromtimestamp(r.created).astimezone().isoformat(timespec="milliseconds"),
             "level": r.levelname.lower(), "logger": r.name, "msg": r.getMessage()}
        )  # fmt: skip


def setup_logging(fmt: str, level: int = logging.INFO) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonLog() if fmt == "json" else logging.Formatter("%(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("powerpool")
    root.handlers[:] = [handler]
    root.setLevel(level)


def pdu_dir(loaded_from: Path, hardware: Path | None) -> Path:
    """PDU families beside the server profiles, else the ones powerpool ships."""
    for base in (hardware, loaded_from.resolve().parent / "hardware", Path("hardware")):
        if base is not None and (base / "pdus").is_dir():
            return base / "pdus"
    return Path(__file__).resolve().parent.parent / "hardware" / "pdus"


# -- run ------------------------------------------------------------------------------


async def serve(
    svc: Service,
    reload: Callable[[], Loaded] | None = None,
    api_port: int = 0,
    until: Callable[[], bool] | None = None,
) -> None:
    """Run the service until SIGTERM/SIGINT (or `until()` says so); SIGHUP reloads."""
    await svc.open()
    api = ApiServer(svc, api_port)
    url = await api.start()
    log.info("controller %s: %d pool(s), API and /metrics on %s%s", svc.holder, len(svc.pools), url,
             " (DRY RUN: observing and planning only)" if svc.dry_run else "")  # fmt: skip
    sched = svc.schedule()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if reload is not None:
        loop.add_signal_handler(signal.SIGHUP, lambda: _reload(svc, reload))
    try:
        sched.start()
        for name in svc.pools:
            await svc.tick(name)  # the first tick now, not one interval later
        while not stop.is_set() and not (until and until()):
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
        log.info("stopping: finishing in-flight verifications")
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
            loop.remove_signal_handler(sig)
        await api.stop()
        await svc.close()


def _reload(svc: Service, reload: Callable[[], Loaded]) -> None:
    """Swap in re-read policies; a bad one is rejected and the old ones kept."""
    try:
        loaded = reload()
    except ConfigError as e:
        for p in e.problems:
            log.error("reload rejected: %s", p)
        log.error("reload rejected: keeping the running policies")
        return
    for name, rt in svc.pools.items():
        new = loaded.policies.get(name)
        if new is None or {h.name for h in new.pool.hosts} != set(rt.controller.hosts):
            log.warning("pool %s: removed or its host list changed; restart to apply", name)
            continue
        rt.bundle, rt.controller.pool, rt.journal.pool = new, new.pool, new.pool
        log.info("pool %s: policy reloaded", name)


@click.command()
@FILES
@click.option("--dry-run", is_flag=True, help="Observe and log the plans; send no command.")
@click.option("--api-port", type=int, default=0, show_default="any free port", help="Local API port.")
@click.option("--log-format", type=click.Choice(["text", "json"]), default="text", show_default=True)
@friendly
def run(
    policies: Path, hardware: Path | None, state_dir: Path, dry_run: bool, api_port: int, log_format: str
) -> None:
    """Run the controller for every pool until SIGTERM.

    Each pool ticks on its policy's interval: observe (load, host states) -> plan ->
    guard -> journal intent -> act -> verify -> journal outcome. Start with --dry-run to
    see what it would do. SIGHUP re-reads the policies (a bad one is rejected, the old
    kept); SIGTERM lets in-flight verifications finish. A second `run` on the same state
    dir refuses to act while the first holds the pools' leases.

    \b
    Example:
      powerpool run --policies /etc/powerpool/policies --state-dir /var/lib/powerpool
    """
    setup_logging(log_format)
    loaded = load((policies,), hardware)
    svc = Service(loaded, state_dir, pdu_dir(policies, hardware), dry_run=dry_run)
    try:
        asyncio.run(serve(svc, lambda: load((policies,), hardware), api_port))
    except StateDirBusy as e:
        err.print(f"[red]refusing to act:[/red] {e}")
        sys.exit(1)


# -- manual commands -------------------------------------------------------------------


def _act(
    state_dir: Path,
    policies: Path,
    hardware: Path | None,
    remote: Callable[[ApiClient], Any],
    local: Callable[[Service], Awaitable[Any]],
    look: bool = False,
) -> Any:
    """Through the running service if there is one, else directly (taking the leases;
    `look` first probes hosts the journal does not know, as the service does)."""
    client = ApiClient.connect(state_dir)
    if client is not None:
        return remote(client)
    loaded = load((policies,), hardware)

    async def direct() -> Any:
        svc = Service(loaded, state_dir, pdu_dir(policies, hardware), role="cli")
        await svc.open(look=look)
        try:
            for rt in svc.pools.values():  # the guards judge on a fresh reading, as a tick does
                reading = await rt.source.read(svc.now())
                rt.journal.record_load(reading.value, reading.observed_at)
                rt.controller.last_plan = make_plan(rt.bundle.pool, rt.journal.snapshot(svc.now()))
            return await local(svc)
        finally:
            await svc.close()

    try:
        return asyncio.run(direct())
    except StateDirBusy as e:
        client = _api_soon(state_dir)  # a service that is starting: its API comes up shortly
        if client is not None:
            return remote(client)
        err.print(f"[red]refused:[/red] {e}")
        sys.exit(1)


def _api_soon(state_dir: Path, wait_s: float = 15.0) -> ApiClient | None:
    end = time.monotonic() + wait_s
    while time.monotonic() < end:
        client = ApiClient.connect(state_dir)
        if client is not None:
            return client
        time.sleep(0.2)
    return None


async def _wait_local(svc: Service) -> None:
    """Close the started transitions as the tick would, until none is open."""

    def moving() -> int:
        return sum(len(rt.journal.open) for rt in svc.pools.values())

    with Progress(console=err, transient=True) as bar:
        total = moving()
        task = bar.add_task("verifying", total=total)
        while moving():
            await asyncio.sleep(0.2)
            for rt in svc.pools.values():
                close_finished(rt.controller, svc.now())
                close_overdue(rt.controller, svc.now())
            bar.update(task, completed=total - moving())


def _rows(st: dict[str, Any], hosts: list[str]) -> dict[str, Any]:
    """The status rows of these hosts."""
    return {h["host"]: h for p in st["pools"] for h in p["hosts"] if h["host"] in hosts}


def _wait_remote(client: ApiClient, hosts: list[str], timeout_s: float = 900.0) -> dict[str, Any]:
    """Poll the service until the hosts' transitions are verified or failed."""
    end = time.monotonic() + timeout_s
    with Progress(console=err, transient=True) as bar:
        task = bar.add_task("verifying", total=len(hosts))
        while True:
            rows = _rows(client.call("GET", "/v1/status"), hosts)
            moving = [h for h, r in rows.items() if r["moving_to"]]
            bar.update(task, completed=len(hosts) - len(moving))
            if not moving or time.monotonic() > end:
                return rows
            time.sleep(0.5)


def _refused(fn: Callable[..., Any]) -> Callable[..., Any]:
    """A guard's refusal exits 1 with the rule named."""

    def wrapper(*a: Any, **kw: Any) -> Any:
        try:
            return fn(*a, **kw)
        except manual.Refusal as e:
            err.print(f"[red]refused:[/red] {e}", soft_wrap=True)
            sys.exit(1)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def _duration(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except ValueError as e:
        raise click.BadParameter(f"{value!r}: {e}") from None


FOR = click.option("--for", "hold_s", callback=_duration, metavar="DURATION",
                   help='How long the host stays held, e.g. "2h" (manual wake/sleep: 1h).')  # fmt: skip
REASON = click.option("--reason", default="", help="Why: kept in the journal and shown in status.")
FORCE = click.option("--force", is_flag=True, help="Act on a held, excluded or failed host (journaled).")


async def _status(svc: Service) -> Any:
    return status(svc)


@click.command("status")
@click.argument("pool", required=False)
@FILES
@JSON
@friendly
@_refused
def status_cmd(
    pool: str | None, policies: Path, hardware: Path | None, state_dir: Path, as_json: bool
) -> None:
    """Hosts, states, holds and the reserve of every pool (or one).

    \b
    Example:
      powerpool status web --state-dir /var/lib/powerpool
    """

    st = _act(state_dir, policies, hardware, lambda c: c.call("GET", "/v1/status"), _status)
    pools = [p for p in st["pools"] if pool in (None, p["pool"])]
    if as_json:
        out.print_json(json.dumps({"now": st["now"], "pools": pools}))
        return
    for p in pools:
        table = Table(
            title=f"pool {p['pool']}" + ("" if p["acting"] else " (not acting)"), title_justify="left"
        )
        for col in ("host", "state", "since", "watts", "health", "hold"):
            table.add_column(col)
        for h in p["hosts"]:
            state = h["state"] + (f" -> {h['moving_to']}" if h["moving_to"] else "")
            hold = h["hold"]
            held = (
                f"{hold['kind']} until {hold['until'] or 'released'} ({hold['who']}: {hold['reason']})"
                if hold
                else ""
            )
            watts = "" if h["watts"] is None else f"{h['watts']:.0f}"
            table.add_row(h["host"], state, h["since"][11:19], watts, h["health"], held)
        out.print(table)
        tiers = ", ".join(f"{t['tier']} {t['available']:g}/{t['required']:g}" for t in p["tiers"])
        source = "PDU meters" if p["power_source"] == "pdu" else "profile estimate"
        out.print(f"power {p['power_w']:.0f} W ({source}); needed {p['needed']}; reserve have/need: {tiers}")
        for n in p["notes"]:
            out.print(f"  note: {n}")


def _manual(
    state_dir: Path, policies: Path, hardware: Path | None, hosts: list[str], body: dict[str, Any],
    path: str, local: Callable[[Service], Awaitable[Any]], as_json: bool,
) -> None:  # fmt: skip
    def remote(c: ApiClient) -> Any:
        c.call("POST", path, body)
        return _wait_remote(c, hosts)

    async def direct(svc: Service) -> Any:
        await local(svc)
        await _wait_local(svc)
        return _rows(status(svc), hosts)

    rows = _act(state_dir, policies, hardware, remote, direct, look=True)
    if as_json:
        out.print_json(json.dumps(rows))
        return
    for h in hosts:
        r = rows.get(h, {})
        out.print(f"{h}: {r.get('state', '?')} ({r.get('health', '?')})")


@click.command()
@click.argument("hosts", nargs=-1)
@click.option("--pool", help="Wake N hosts of this pool (the fastest to come back).")
@click.option("-n", "count", type=int, default=1, show_default=True, help="With --pool: how many.")
@FOR
@REASON
@FORCE
@FILES
@JSON
@friendly
@_refused
def wake(hosts: tuple[str, ...], pool: str | None, count: int, hold_s: float | None, reason: str, force: bool,
         policies: Path, hardware: Path | None, state_dir: Path, as_json: bool) -> None:  # fmt: skip
    """Wake hosts by name, or N hosts of a pool, and wait until each is verified ready.

    The host is then held awake (--for, default 1h) so the controller does not put it
    back down at once. Held, excluded and failed hosts need --force.

    \b
    Examples:
      powerpool wake web07 web08
      powerpool wake --pool web -n 3 --reason "release at 14:00"
    """
    if not hosts and not pool:
        raise click.UsageError("name hosts, or --pool P -n N")
    who = who_am_i()
    hs = manual.DEFAULT_HOLD_S if hold_s is None else hold_s
    if pool:
        body: dict[str, Any] = {"pool": pool, "n": count, "who": who, "reason": reason}

        def remote(c: ApiClient) -> Any:
            started = c.call("POST", "/v1/wake", body)
            return _wait_remote(c, [s["host"] for s in started if "to" in s])

        async def local(svc: Service) -> Any:
            started = await manual.wake_n(svc, pool, count, who, reason)
            await _wait_local(svc)
            return started

        rows = _act(state_dir, policies, hardware, remote, local, look=True)
        out.print_json(json.dumps(rows)) if as_json else out.print(rows)
        return
    body = {"hosts": list(hosts), "who": who, "reason": reason, "force": force, "hold_s": hs}

    async def direct(svc: Service) -> Any:
        for h in hosts:
            await manual.move(svc, h, PowerState.ACTIVE, who, reason, force, hs)

    _manual(state_dir, policies, hardware, list(hosts), body, "/v1/wake", direct, as_json)


@click.command()
@click.argument("host")
@click.option("--to", "to", required=True, type=click.Choice([s.value for s in PowerState][1:]),
              help="The state to put the host in.")  # fmt: skip
@FOR
@REASON
@FORCE
@FILES
@JSON
@friendly
@_refused
def sleep(host: str, to: str, hold_s: float | None, reason: str, force: bool, policies: Path,
          hardware: Path | None, state_dir: Path, as_json: bool) -> None:  # fmt: skip
    """Put one host into a power state and wait until it is verified there.

    Refused when it would leave the pool's warm floor (needed + warm) short, force or
    not. The host is then held asleep (--for, default 1h).

    \b
    Example:
      powerpool sleep web09 --to sleep --reason "not needed tonight"
    """
    who = who_am_i()
    hs = manual.DEFAULT_HOLD_S if hold_s is None else hold_s
    body = {"host": host, "to": to, "who": who, "reason": reason, "force": force, "hold_s": hs}

    async def direct(svc: Service) -> Any:
        await manual.move(svc, host, PowerState(to), who, reason, force, hs)

    _manual(state_dir, policies, hardware, [host], body, "/v1/sleep", direct, as_json)


@click.command()
@click.argument("host")
@click.option("--awake", "kind", flag_value="awake", help="Keep it warm.")
@click.option("--asleep", "kind", flag_value="asleep", help="Keep it parked.")
@click.option("--exclude", "kind", flag_value="excluded", help="Keep automation away entirely.")
@FOR
@click.option("--reason", required=True, help="Why (required: it is shown to everyone).")
@FILES
@friendly
@_refused
def hold(
    host: str, kind: str | None, hold_s: float | None, reason: str, policies: Path, hardware: Path | None,
    state_dir: Path,
) -> None:  # fmt: skip
    """Pin a host: automation will not touch it until the hold ends or is released.

    \b
    Example:
      powerpool hold web03 --exclude --for 2h --reason "firmware update"
    """
    if kind is None:
        raise click.UsageError("choose --awake, --asleep or --exclude")
    who = who_am_i()
    body = {"host": host, "kind": kind, "hold_s": hold_s, "reason": reason, "who": who}

    async def local(svc: Service) -> Any:
        await manual.hold(svc, host, HoldKind(kind), hold_s, reason, who)

    _act(state_dir, policies, hardware, lambda c: c.call("POST", "/v1/hold", body), local)
    until = f" for {timedelta(seconds=hold_s)}" if hold_s else " until released"
    out.print(f"{host}: held {kind}{until}")


@click.command()
@click.argument("host")
@FILES
@friendly
@_refused
def release(host: str, policies: Path, hardware: Path | None, state_dir: Path) -> None:
    """End a host's hold, and clear its failed/quarantined mark once it is fixed."""
    who = who_am_i()
    body = {"host": host, "who": who}

    async def local(svc: Service) -> Any:
        await manual.release(svc, host, who)

    _act(state_dir, policies, hardware, lambda c: c.call("POST", "/v1/release", body), local)
    out.print(f"{host}: released")


@click.command("journal")
@click.option("--host", help="Only this host.")
@click.option("--since", callback=_duration, metavar="DURATION", help='Only the last DURATION, e.g. "1h".')
@FILES
@JSON
@friendly
def journal_cmd(host: str | None, since: float | None, policies: Path, hardware: Path | None, state_dir: Path,
                as_json: bool) -> None:  # fmt: skip
    """The audit log: every intent, outcome, hold and observation, with who and why."""
    from powerpool.journal.store import Store
    from powerpool.service import JOURNAL_FILE

    path = state_dir / JOURNAL_FILE
    if not path.exists():
        raise click.UsageError(f"no journal at {path} (is --state-dir right?)")
    store = Store(path)
    when = datetime.now().astimezone() - timedelta(seconds=since) if since else None
    entries = journal_view(store, host, when)
    store.close()
    if as_json:
        out.print_json(json.dumps(entries))
        return
    table = Table("at", "pool", "host", "event", "detail", "who")
    for e in entries:
        table.add_row(*(str(e[k] or "") for k in ("at", "pool", "host", "event", "detail", "who")))
    out.print(table)


PARKED = [s.value for s in PowerState if not s.warm]


@click.command("qualify")
@click.argument("host")
@click.option("--to", "states", multiple=True, type=click.Choice(PARKED),
              help="A parked state to try (repeatable); default: every one the pool uses.")  # fmt: skip
@FILES
@JSON
@friendly
@_refused
def qualify_cmd(host: str, states: tuple[str, ...], policies: Path, hardware: Path | None, state_dir: Path,
                as_json: bool) -> None:  # fmt: skip
    """Enrol a host: one supervised round trip per parked state, measured.

    Through the exact channels the controller uses, journaled like any transition, the
    host goes down into each state and is woken again; the measured enter and ready
    times are compared with its hardware profile. It is held excluded meanwhile. A host
    that fails is marked failed (not enrolled) until you fix it and `release` it. Exit
    1 when it failed.

    \b
    Examples:
      powerpool qualify web07                   every state the pool parks hosts in
      powerpool qualify web07 --to sleep --to off
    """
    who = who_am_i()
    body = {"host": host, "states": list(states), "who": who}

    def remote(c: ApiClient) -> Any:
        view = c.call("POST", "/v1/qualify", body)
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"qualifying {host}", total=len(view["legs"]))
            while not view["done"]:
                time.sleep(0.5)
                view = c.call("GET", f"/v1/qualify?host={host}")
                bar.update(task, completed=sum(leg["ok"] for leg in view["legs"]))
        return view

    async def local(svc: Service) -> Any:
        with Progress(console=err, transient=True) as bar:
            task = bar.add_task(f"qualifying {host}", total=None)

            def step(q: qualify.Qualification) -> None:
                bar.update(task, total=len(q.legs), completed=sum(leg.ok for leg in q.legs))

            q = await qualify.qualify(svc, host, [PowerState(s) for s in states], who, step)
        return q.view()

    view = _act(state_dir, policies, hardware, remote, local, look=True)
    if as_json:
        out.print_json(json.dumps(view))
    else:
        table = Table("state", "enter (measured / profile)", "ready (measured / profile)", "result",
                      title=f"{host} ({view['pool']})", title_justify="left")  # fmt: skip
        for leg in view["legs"]:
            enter = "" if leg["profile_enter_s"] is None else (
                f"{_secs(leg['enter_s'])} / {leg['profile_enter_s']:g} s")  # fmt: skip
            ready = f"{_secs(leg['ready_s'])} / {leg['profile_ready_s']:g} s"
            table.add_row(leg["state"], enter, ready, ("ok: " if leg["ok"] else "") + leg["detail"])
        out.print(table)
        if view["passed"]:
            out.print(f"[green]{host} is enrolled[/green]: every round trip was verified")
    if not view["passed"]:
        err.print(f"[red]{host} is NOT enrolled:[/red] {view['error']}; it is marked failed until you fix "
                  f"it and run `powerpool release {host}`", soft_wrap=True)  # fmt: skip
        sys.exit(1)


def _secs(v: float | None) -> str:
    return "-" if v is None else f"{v:.1f} s"


COMMANDS = (run, status_cmd, wake, sleep, hold, release, journal_cmd, qualify_cmd)
