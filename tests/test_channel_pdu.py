"""The SNMP PDU channel against snmpsim on loopback (a real agent, real UDP, real SNMPv3).

Every family is served from a data file built from its profile; the BSD-licensed APC
captures in tests/fixtures are served as recorded and with linked outlets. The LibreNMS
captures (GPL-3.0) are read from ../shared/snmprec when it exists, else those cases skip.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from powerpool.channels.pdu_profile import PduProfile
from powerpool.channels.snmp_pdu import PduChannel, PduTarget, Snmp
from powerpool.errors import AuthFailed, NoAnswer, Refused, TransitionTimeout
from powerpool.lab.snmp_agent import (
    EmulatedOutlet,
    SnmpAgent,
    V3User,
    parse_snmprec,
    pdu_records,
    render_snmprec,
)
from tests.rack import PROFILES, ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "snmprec"
SHARED = ROOT.parent / "shared" / "snmprec"
V3 = V3User("powerpool", "auth-key-1234", "priv-key-5678")
OFF_AT_START = {2, 5}
STUCK, SLOW = 7, 8

# capture -> (family, outlets recorded on); GPL ones come from ../shared only
CAPTURES = {
    "apc-7902b": (FIXTURES / "apc-7902b.snmprec", "apc-rpdu", {1, 2, 16}),
    "apc-8932": (FIXTURES / "apc-8932.snmprec", "apc-rpdu", {1, 13}),
    "apc_masterswitch2": (SHARED / "apc/apc_masterswitch2.snmprec", "apc-spdu", {1, 4, 6, 7, 8}),
    "apc_ap8959eu3": (SHARED / "apc/apc_ap8959eu3.snmprec", "apc-spdu", set(range(1, 25)) - {23}),
    "apc_ap7900b": (SHARED / "apc/apc_ap7900b.snmprec", "apc-spdu", set(range(1, 9))),
    "eatonpdu_2": (SHARED / "eaton/eatonpdu_2.snmprec", "eaton-epdu", set(range(1, 25))),
    "raritan-pdu_px3": (SHARED / "raritan/raritan-pdu_px3.snmprec", "raritan-px2", set(range(1, 25))),
}


def capture(name: str) -> tuple[Path, str, set[int]]:
    """A capture's (path, family, outlets recorded on); skips where the file is absent."""
    path, family, on = CAPTURES[name]
    if not path.exists():
        pytest.skip(f"{path} (GPL-3.0 LibreNMS capture) is only in ../shared")
    return path, family, on


def family_outlets() -> list[EmulatedOutlet]:
    out = [
        EmulatedOutlet(n, "off" if n in OFF_AT_START else "on", name=f"srv-{n:02d}", watts_on=100 + n)
        for n in range(1, 7)
    ]
    out.append(EmulatedOutlet(STUCK, "on", name="stuck", stuck=True))
    out.append(EmulatedOutlet(SLOW, "on", name="slow", lag_s=0.6))
    return out


def raritan_with_digits() -> dict[str, str]:
    """A PX3 whose outlet 1 reports active power with one decimal digit (1013 = 101.3 W),
    outlet 2 with none, and outlet 3 with no digits row at all."""
    raritan = PROFILES["raritan-px2"]
    outlets = [
        EmulatedOutlet(1, "on", watts_on=1013),
        EmulatedOutlet(2, "on", watts_on=57),
        EmulatedOutlet(3, "on"),
    ]
    records = pdu_records(raritan, outlets)
    assert raritan.watts is not None and raritan.watts.decimals is not None
    for n, digits in ((1, 1), (2, 0)):
        records[raritan.oid(raritan.watts.decimals, n)] = f"66|{digits}"
    return records


def daisy_chain(profile: PduProfile) -> dict[str, str]:
    """Two linked units behind one agent: unit A's outlets 1-3 on, unit B's 1-3 off, with
    their own names, so a command to B's outlet 2 can only land on B's row."""
    a = [EmulatedOutlet(n, "on", name=f"a-{n}", watts_on=100 + n) for n in (1, 2, 3)]
    b = [EmulatedOutlet(n, "off", name=f"b-{n}", watts_off=0) for n in (1, 2, 3)]
    return pdu_records(profile, b, pdu_records(profile, a), unit=2)


def _files() -> dict[str, str]:
    files = {f"fam-{f}": render_snmprec(pdu_records(p, family_outlets())) for f, p in PROFILES.items()}
    files |= {f"v3-{f}": text for f, text in files.items()}  # outlet state is per data file
    slow = [EmulatedOutlet(n, "on", lag_s=0.4) for n in (1, 2)]
    files |= {f"ops-{k}": render_snmprec(pdu_records(PROFILES["apc-rpdu2"], slow)) for k in (1, 2)}
    files["raritan-digits"] = render_snmprec(raritan_with_digits())
    for family in ("sentry3", "sentry4", "raritan-px2"):
        files[f"chain-{family}"] = render_snmprec(daisy_chain(PROFILES[family]))
    for name, (path, family, on) in CAPTURES.items():
        if not path.exists():
            continue
        text = path.read_text()
        files[f"raw-{name}"] = text
        count = max(on | {16 if "7902" in name else 24})
        outlets = [EmulatedOutlet(n, "on" if n in on else "off") for n in range(1, count + 1)]
        files[f"lab-{name}"] = render_snmprec(pdu_records(PROFILES[family], outlets, parse_snmprec(text)))
    return files


@pytest.fixture(scope="module")
def agent() -> Iterator[SnmpAgent]:
    with SnmpAgent(_files(), v3=V3) as a:
        yield a


def v2c(agent: SnmpAgent, community: str, **kw: object) -> PduTarget:
    kw.setdefault("settle_s", 0.05)
    return PduTarget(
        "pdu-t", *agent.address, version="2c", read_community=community, write_community=community, **kw
    )  # type: ignore[arg-type]


def v3(agent: SnmpAgent, context: str, **kw: object) -> PduTarget:
    args = {"user": V3.user, "auth_key": V3.auth_key, "priv_key": V3.priv_key, "settle_s": 0.05, **kw}
    return PduTarget(
        "pdu-t",
        *agent.address,
        version="3",
        context=context,
        auth_protocol="sha256",
        priv_protocol="aes128",
        **args,
    )  # type: ignore[arg-type]


def run(coro_fn, timeout_s: float = 0.5, retries: int = 1):  # type: ignore[no-untyped-def]
    async def main():  # type: ignore[no-untyped-def]
        async with Snmp(timeout_s=timeout_s, retries=retries) as snmp:
            return await coro_fn(snmp)

    return asyncio.run(main())


@pytest.mark.parametrize("family", sorted(PROFILES))
@pytest.mark.parametrize("version", ["2c", "3"])
def test_every_family_detected_switched_and_verified(agent: SnmpAgent, family: str, version: str) -> None:
    target = v2c(agent, f"fam-{family}") if version == "2c" else v3(agent, f"v3-fam-{family}")

    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(snmp, target, poll_s=0.05)
        assert (await ch.detect(PROFILES)).family == family  # probing picks it among same-vendor families
        listed = {o.number: o for o in await ch.outlets()}
        assert {n: o.state for n, o in listed.items() if n <= 6} == {
            n: ("off" if n in OFF_AT_START else "on") for n in range(1, 7)
        }
        assert (PROFILES[family].watts is not None) == (listed[1].watts == 101)
        off = await ch.switch(1, "off")
        assert (off.reached, off.noop) == ("off", False)
        assert await ch.state(1) == "off"
        if PROFILES[family].watts is not None:
            assert await ch.watts(1) == 0
        assert (await ch.switch(1, "off")).noop  # idempotent: nothing sent
        assert (await ch.switch(2, "on")).reached == "on"
        assert await ch.state(2) == "on"
        assert await ch.state(3) == "on"  # the others untouched

    run(scenario)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_recorded_outlet_states_read_back_from_unmodified_captures(agent: SnmpAgent, name: str) -> None:
    _, family, on = capture(name)

    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(snmp, v2c(agent, f"raw-{name}"))
        assert (await ch.detect(PROFILES)).family == family
        outlets = await ch.outlets()
        assert {o.number for o in outlets if o.state == "on"} == on
        assert all(o.state == "off" for o in outlets if o.number not in on)

    run(scenario)


@pytest.mark.parametrize("name", sorted(CAPTURES))
def test_capture_derived_agent_switches(agent: SnmpAgent, name: str) -> None:
    _, family, on = capture(name)
    first_on = min(on)

    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(snmp, v2c(agent, f"lab-{name}"), poll_s=0.05)
        assert (await ch.detect(PROFILES)).family == family
        assert (await ch.switch(first_on, "off")).reached == "off"
        assert (await ch.switch(first_on, "on")).reached == "on"

    run(scenario)


def test_pending_readback_is_in_transition_not_a_result(agent: SnmpAgent) -> None:
    async def scenario(snmp: Snmp) -> float:
        ch = PduChannel(snmp, v2c(agent, "fam-eaton-epdu"), PROFILES["eaton-epdu"], poll_s=0.05)
        t0 = time.monotonic()
        await ch.switch(SLOW, "off", deadline_s=5)
        return time.monotonic() - t0

    assert run(scenario) >= 0.6  # verified only once the lagging outlet read off


@pytest.mark.parametrize("max_ops", [1, 2])
def test_max_ops_bounds_outlets_switching_at_once_on_one_pdu(agent: SnmpAgent, max_ops: int) -> None:
    """With max_ops=1 the second outlet's SET waits until the first one reads off: relays
    closing together draw inrush current, so the limit spans the whole verified switch."""

    async def scenario(snmp: Snmp) -> float:
        target = v2c(agent, f"ops-{max_ops}", max_ops=max_ops)
        ch = PduChannel(snmp, target, PROFILES["apc-rpdu2"], poll_s=0.05)
        sets: list[float] = []
        original = snmp.set_int

        async def spy(*args: object) -> None:
            sets.append(time.monotonic())
            await original(*args)  # type: ignore[arg-type]

        snmp.set_int = spy  # type: ignore[method-assign]
        results = await asyncio.gather(ch.switch(1, "off"), ch.switch(2, "off"))
        assert [r.reached for r in results] == ["off", "off"]
        return sets[1] - sets[0]

    gap = run(scenario)
    assert gap >= 0.4 if max_ops == 1 else gap < 0.3


def test_cycle_goes_through_off_and_ends_on(agent: SnmpAgent) -> None:
    async def scenario(snmp: Snmp) -> tuple[str, list[str]]:
        ch = PduChannel(snmp, v2c(agent, "fam-apc-rpdu2", settle_s=5.0), PROFILES["apc-rpdu2"], poll_s=0.05)
        seen: list[str] = []
        original = ch.state

        async def spy(n: int) -> str:
            s = await original(n)
            seen.append(s)
            return s

        ch.state = spy  # type: ignore[method-assign]
        out = await ch.switch(3, "cycle", deadline_s=10)
        return out.reached, seen

    reached, seen = run(scenario)
    assert reached == "on" and "off" in seen and seen[-1] == "on"


def test_outlet_that_never_reaches_the_goal_is_a_timeout_not_a_success(agent: SnmpAgent) -> None:
    async def scenario(snmp: Snmp) -> str:
        ch = PduChannel(snmp, v2c(agent, "fam-vertiv-v5"), PROFILES["vertiv-v5"], poll_s=0.05)
        with pytest.raises(TransitionTimeout, match="not verified within 1 s"):
            await ch.switch(STUCK, "off", deadline_s=1.0)
        return await ch.state(STUCK)

    assert run(scenario) != "off"  # still pending: never reported as done


def test_commands_to_one_outlet_are_spaced_by_the_settle_time(agent: SnmpAgent) -> None:
    async def scenario(snmp: Snmp) -> float:
        ch = PduChannel(
            snmp, v2c(agent, "fam-cyberpower-epdu", settle_s=0.8), PROFILES["cyberpower-epdu"], poll_s=0.05
        )
        await ch.switch(4, "off")
        t0 = time.monotonic()
        await ch.switch(4, "on")  # PSU hold-up: an off pulse shorter than this may not reset the host
        return time.monotonic() - t0

    assert run(scenario) >= 0.75


def test_wrong_community_is_no_answer_within_the_timeout(agent: SnmpAgent) -> None:
    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(snmp, v2c(agent, "not-the-community"), PROFILES["apc-rpdu"])
        with pytest.raises(NoAnswer, match="community is wrong"):
            await ch.switch(1, "off")

    t0 = time.monotonic()
    run(scenario, timeout_s=0.3, retries=1)
    assert time.monotonic() - t0 < 3


def test_dead_pdu_is_no_answer(agent: SnmpAgent) -> None:
    from powerpool.lab.snmp_agent import free_udp_port

    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(
            snmp,
            PduTarget(
                "dead", "127.0.0.1", free_udp_port(), version="2c", read_community="x", write_community="x"
            ),
        )
        with pytest.raises(NoAnswer, match="no answer"):
            await ch.detect(PROFILES)

    run(scenario, timeout_s=0.2, retries=0)


@pytest.mark.parametrize("field", ["auth_key", "user"])
def test_wrong_v3_credentials_are_fatal_auth_errors(agent: SnmpAgent, field: str) -> None:
    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(snmp, v3(agent, "fam-apc-rpdu", **{field: "wrong-value-123"}), PROFILES["apc-rpdu"])
        with pytest.raises(AuthFailed):
            await ch.state(1)

    run(scenario)


def test_no_such_instance_is_refused_not_success(agent: SnmpAgent) -> None:
    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(snmp, v2c(agent, "fam-sentry4"), PROFILES["sentry4"])
        with pytest.raises(Refused, match="no object"):
            await ch.switch(99, "off")  # no outlet 99: noSuchInstance, never "done"

    run(scenario)


def test_set_on_a_read_only_capture_object_is_refused(agent: SnmpAgent) -> None:
    """snmpsim answers a SET of a static record with errorStatus 0 and a noSuchInstance
    varbind: the channel must see through that."""

    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(snmp, v2c(agent, "raw-apc-7902b"), PROFILES["apc-rpdu"])
        with pytest.raises(Refused):
            await ch.switch(3, "on")
        assert await ch.state(3) == "off"

    run(scenario)


def test_meter_readings_are_scaled_by_the_decimal_digits_the_pdu_reports(agent: SnmpAgent) -> None:
    """Raritan gives each sensor reading's decimal digits in a separate column; a meter
    read without them would be 10x off on an outlet that reports one digit."""

    async def scenario(snmp: Snmp) -> None:
        ch = PduChannel(snmp, v2c(agent, "raritan-digits"), PROFILES["raritan-px2"])
        assert await ch.meters() == {1: pytest.approx(101.3), 2: 57.0, 3: 150.0}
        assert await ch.watts(1) == pytest.approx(101.3)
        assert await ch.watts(3) == 150.0  # no digits row: the reading as it is
        assert {o.number: o.watts for o in await ch.outlets()}[1] == pytest.approx(101.3)

    run(scenario)


@pytest.mark.parametrize("family", ["sentry3", "sentry4", "raritan-px2"])
def test_each_unit_of_a_daisy_chain_is_its_own_pdu(agent: SnmpAgent, family: str) -> None:
    """Sentry towers B, C... and Raritan linked PDUs answer on the master's address; a
    policy names each unit as a PDU of its own (unit = 2 for B) and reaches only its rows."""

    async def scenario(snmp: Snmp) -> None:
        tower_a = PduChannel(snmp, v2c(agent, f"chain-{family}"), PROFILES[family], poll_s=0.05)
        tower_b = PduChannel(snmp, v2c(agent, f"chain-{family}", unit=2), PROFILES[family], poll_s=0.05)
        assert {(o.number, o.name, o.state) for o in await tower_b.outlets()} == {
            (n, f"b-{n}" if PROFILES[family].name else None, "off") for n in (1, 2, 3)
        }
        assert (await tower_b.switch(2, "on")).reached == "on"
        assert [await tower_b.state(n) for n in (1, 2, 3)] == ["off", "on", "off"]
        assert [await tower_a.state(n) for n in (1, 2, 3)] == ["on", "on", "on"]  # untouched
        assert (await tower_a.switch(2, "off")).reached == "off"
        assert await tower_b.state(2) == "on"  # and the other way round

    run(scenario)


def test_profiles_keep_write_and_read_values_apart() -> None:
    rpdu2: PduProfile = PROFILES["apc-rpdu2"]
    assert rpdu2.on.value == 1 and rpdu2.state.on == [2]  # write 1 = on, read 1 = off
    eaton = PROFILES["eaton-epdu"]
    assert eaton.oid(eaton.off, 5) == "1.3.6.1.4.1.534.6.6.7.6.6.1.3.0.5"  # .3 is OFF, strapping index 0
    managed = PROFILES["eaton-managed"]
    assert (
        managed.oid(managed.state, 1).endswith(".3.0")
        and managed.number(managed.state, managed.oid(managed.state, 1)) == 1
    )
