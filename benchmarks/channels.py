"""Channel fan-out: 200 outlets on 10 emulated PDUs (per-PDU limit 1) switched and
verified, against one outlet; 200 SSH readiness probes against one.

Targets: outlets <= 25x one outlet (the serial bound per PDU is 20x; a sequential tool
takes 200x); SSH probes < 10x one probe. Everything runs on loopback: snmpsim for the
PDUs, asyncssh servers for the hosts, the real pysnmp and paramiko clients.

    PYTHONPATH=. python -m benchmarks.channels
"""

from __future__ import annotations

import asyncio
import multiprocessing
import statistics
import tempfile
import time
from multiprocessing.synchronize import Event
from pathlib import Path

import asyncssh

from powerpool.channels.pdu_profile import load_pdu_profiles
from powerpool.channels.snmp_pdu import PduChannel, PduTarget, Snmp
from powerpool.channels.ssh import SshChannel, SshTarget
from powerpool.lab.host import EmulatedHost, new_key, save_key, write_known_hosts
from powerpool.lab.snmp_agent import EmulatedOutlet, SnmpAgent, pdu_records, render_snmprec

ROOT = Path(__file__).resolve().parent.parent
PDUS, PER_PDU, HOSTS = 10, 20, 200
RELAY_LAG_S = 0.2  # a switched outlet that takes 0.2 s to read back its new state


def bench_pdus(lag_s: float = 0.0) -> tuple[float, float]:
    """Median time to switch one outlet, and time to switch all 200 at once.

    With `lag_s` the emulated outlet reads pending for that long after a SET, as a real
    relay does; without it every request costs only the agent's and client's CPU, so on
    a small machine the fan-out measures CPU, not concurrency.
    """
    prof = load_pdu_profiles(ROOT / "hardware" / "pdus")["apc-rpdu2"]
    outlets = [EmulatedOutlet(n, "on", lag_s=lag_s) for n in range(1, PER_PDU + 1)]
    files = {f"pdu{i}": render_snmprec(pdu_records(prof, outlets)) for i in range(PDUS + 1)}
    with SnmpAgent(files) as agent:

        def target(i: int) -> PduTarget:
            c = f"pdu{i}"
            return PduTarget(c, *agent.address, version="2c", read_community=c, write_community=c, max_ops=1)

        async def run() -> tuple[float, float]:
            async with Snmp(timeout_s=1.0, retries=1) as snmp:
                single = PduChannel(snmp, target(PDUS), prof, poll_s=0.05)
                await single.state(1)  # warm the agent's index for this file
                ones = []
                for n in range(1, 6):
                    t0 = time.perf_counter()
                    await single.switch(n, "off")
                    ones.append(time.perf_counter() - t0)
                chans = [PduChannel(snmp, target(i), prof, poll_s=0.05) for i in range(PDUS)]
                for ch in chans:
                    await ch.state(1)
                t0 = time.perf_counter()
                results = await asyncio.gather(
                    *(ch.switch(n, "off") for ch in chans for n in range(1, PER_PDU + 1))
                )
                many = time.perf_counter() - t0
                assert all(r.reached == "off" and not r.noop for r in results)
                return statistics.median(ones), many

        return asyncio.run(run())


def _serve_hosts(tmp: Path, ready: Event, stop: Event) -> None:
    """The emulated hosts, in their own process: 200 real machines would each answer on
    their own CPU, so the hosts must not share the client's interpreter lock."""

    async def serve() -> None:
        auth = asyncssh.import_authorized_keys((tmp / "id.pub").read_text())
        host_key = new_key()
        hosts = [
            EmulatedHost(f"h{i}", f"02:00:00:00:{i // 256:02x}:{i % 256:02x}", host_key, auth)
            for i in range(HOSTS)
        ]
        for h in hosts:
            await h.listen()
        write_known_hosts(tmp / "known_hosts", hosts)
        (tmp / "ports").write_text(" ".join(str(h.port) for h in hosts))
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        for h in hosts:
            await h.silence()

    asyncio.run(serve())


def bench_ssh() -> list[tuple[float, float, float]]:
    ctx = multiprocessing.get_context("fork")
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        client = new_key()
        key = save_key(client, tmp / "id")
        (tmp / "id.pub").write_bytes(client.export_public_key("openssh"))
        ready, stop = ctx.Event(), ctx.Event()
        child = ctx.Process(target=_serve_hosts, args=(tmp, ready, stop), daemon=True)
        child.start()
        try:
            if not ready.wait(120):
                raise RuntimeError("the emulated hosts did not start within 120 s")
            ports = [int(p) for p in (tmp / "ports").read_text().split()]
            kh = tmp / "known_hosts"
            targets = [
                SshTarget(f"h{i}", "127.0.0.1", "powerpool", key, kh, port) for i, port in enumerate(ports)
            ]
            return asyncio.run(_probe(targets))
        finally:
            stop.set()
            child.join(30)


async def _probe(targets: list[SshTarget]) -> list[tuple[float, float, float]]:
    """(one probe, all probes, client CPU per probe in the fan-out) on first contact, then
    on kept connections. The CPU figure is the floor: the client's threads share one
    interpreter lock, so 200 probes never take less than 200 x that."""
    ch = SshChannel(max_parallel=64)

    async def one(cold: bool) -> float:
        times = []
        for t in targets[:5]:
            if cold:
                ch.connections.close()
            t0 = time.perf_counter()
            await ch.readiness(t)
            times.append(time.perf_counter() - t0)
        return statistics.median(times)

    async def fan_out() -> tuple[float, float]:
        t0, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(ch.readiness(t) for t in targets))
        return time.perf_counter() - t0, (time.process_time() - cpu) / len(targets)

    try:
        cold = await one(cold=True)
        ch.connections.close()
        cold_all = await fan_out()  # leaves a connection kept per host
        return [(cold, *cold_all), (await one(cold=False), *await fan_out())]
    finally:
        ch.close()


def main() -> None:
    print(f"channels: {PDUS * PER_PDU} outlets on {PDUS} PDUs (limit 1 each) switched+verified")
    for lag in (0.0, RELAY_LAG_S):
        one, many = bench_pdus(lag)
        what = f"relay {lag:g} s" if lag else "instant relay"
        print(
            f"  {what}: one outlet {one * 1000:.1f} ms, all {many:.2f} s -> "
            f"{many / one:.1f}x one (target <= 25x)"
        )
    print(f"channels: {HOSTS} SSH readiness probes (paramiko, 64 threads)")
    for what, (one, many, cpu) in zip(("first contact", "kept connections"), bench_ssh(), strict=True):
        print(
            f"  {what}: one probe {one * 1000:.1f} ms, all {many:.2f} s -> "
            f"{many / one:.1f}x one (target < 10x); client CPU {cpu * 1000:.1f} ms a probe"
        )


if __name__ == "__main__":
    main()
