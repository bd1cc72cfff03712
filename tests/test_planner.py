"""Planner scenarios: one rule per test, each with the situation that exercises it."""

from __future__ import annotations

import math
from dataclasses import replace
from datetime import timedelta

from powerpool.model import (
    Health,
    HoldKind,
    Plan,
    RecentAction,
    Snapshot,
    Tier,
    Window,
)
from powerpool.planner import needed, plan
from powerpool.planner.layout import settle
from tests.conftest import NOW, S, make_pool, obs, profile, snapshot


def moves(p: Plan) -> dict[str, S]:
    return {a.host: a.dst for a in p.actions}


def warm_after(p: Plan, snap: Snapshot) -> int:
    """Warm hosts once the plan's sleeps are applied (wakes not yet verified)."""
    m = moves(p)
    return sum(
        1 for o in snap.hosts if o.transition is None and o.state.warm and (o.name not in m or m[o.name].warm)
    )


def test_quiet_pool_parks_spares_but_keeps_needed_plus_one_warm() -> None:
    pool = make_pool(10, min_active=1)
    snap = snapshot(pool, load=100.0)  # 10 % of 10 hosts
    p = plan(pool, snap)
    assert p.needed == 1
    assert any(not d.warm for d in moves(p).values())
    assert warm_after(p, snap) >= p.needed + pool.warm
    layout = settle(pool, load=100.0)
    assert sum(1 for s in layout.values() if s.warm) == p.needed + pool.warm


def test_held_host_is_untouched_and_the_veto_says_so() -> None:
    pool = make_pool(6)
    held = obs("h05", S.ACTIVE, hold=HoldKind.AWAKE)
    p = plan(pool, snapshot(pool, 50.0, {"h05": held}))
    assert "h05" not in moves(p)
    assert any(v.host == "h05" and v.rule == "hold" for v in p.vetoes)
    asleep = obs("h04", S.OFF, hold=HoldKind.ASLEEP)
    p = plan(pool, snapshot(pool, 550.0, {"h04": asleep}))  # needs every host
    assert "h04" not in moves(p)


def test_excluded_and_failed_hosts_count_for_nothing_and_are_never_touched() -> None:
    pool = make_pool(4, min_active=1)
    pool = replace(pool, hosts=(replace(pool.hosts[0], excluded=True), *pool.hosts[1:]))
    snap = snapshot(pool, 150.0, {"h01": obs("h01", S.ACTIVE, health=Health.FAILED), "h02": S.SLEEP})
    p = plan(pool, snap)
    assert "h00" not in moves(p) and "h01" not in moves(p)
    # needed 2 + warm 1 = 3 warm; only h03 counts as warm, so h02 is woken
    assert moves(p) == {"h02": S.ACTIVE}


def test_stale_load_freezes_every_sleep_but_still_wakes() -> None:
    pool = make_pool(10)
    quiet = plan(pool, snapshot(pool, 100.0, age=600.0))
    assert not quiet.actions
    assert {v.rule for v in quiet.vetoes} == {"stale-load"}
    assert any("stale" in n for n in quiet.notes)
    states = {f"h{i:02d}": S.SLEEP for i in range(2, 10)}
    busy = plan(pool, snapshot(pool, 500.0, states, age=600.0))
    assert busy.actions and all(a.dst is S.ACTIVE for a in busy.actions)
    missing = plan(pool, snapshot(pool, None, states))
    assert all(a.dst.warm for a in missing.actions)


def test_load_jump_wakes_the_fastest_ready_spares_first() -> None:
    pool = make_pool(8)
    states = {
        "h02": S.OFF,
        "h03": S.UNPOWERED,
        "h04": S.SLEEP,
        "h05": S.DISK_STANDBY,
        "h06": S.HIBERNATE,
        "h07": S.OFF,
    }
    p = plan(pool, snapshot(pool, 300.0, states))  # needed 3 + warm 1 = 4: two short
    woken = {h for h, d in moves(p).items() if d is S.ACTIVE}
    assert woken == {"h05", "h04"}  # disk standby (12 s) and sleep (15 s), not off


def test_wakes_respect_the_rate_limit_and_say_so() -> None:
    pool = make_pool(8, wakes_per_minute=3)
    states = {f"h{i:02d}": S.SLEEP for i in range(1, 8)}
    recent = (RecentAction("h00", "wake", NOW - timedelta(seconds=20)),)
    p = plan(pool, snapshot(pool, 700.0, states, recent=recent))
    assert len(p.actions) == 2
    assert any(v.rule == "rate-limit" for v in p.vetoes)


def test_per_pdu_concurrency_limits_operations_on_one_pdu() -> None:
    pool = make_pool(10, pdus=2, max_ops_per_pdu=1)
    busy = obs("h00", S.ACTIVE, to=S.SLEEP, started_ago=2.0)  # pdu0 already busy
    p = plan(pool, snapshot(pool, 100.0, {"h00": busy}))
    heavy = [a for a in p.actions if not (a.src.warm and a.dst.warm)]
    hosts_by_pdu = {a.host: int(a.host[1:]) % 2 for a in heavy}
    assert list(hosts_by_pdu.values()).count(0) == 0
    assert list(hosts_by_pdu.values()).count(1) == 1
    assert any(v.rule == "pdu-concurrency" for v in p.vetoes)


def test_short_idle_gaps_do_not_earn_deep_states() -> None:
    """A spare idle for less than off's break-even goes no deeper than sleep."""
    pool = make_pool(6, idle_before_sleep_s=60.0)
    br_off = pool.profiles["p"].break_even_s(S.OFF)
    br_sleep = pool.profiles["p"].break_even_s(S.SLEEP)
    assert br_sleep < 150 < br_off
    # every host was needed 150 s ago; the load has been low since
    hist = ((150.0, 600.0), (100.0, 100.0), (10.0, 100.0))
    p = plan(pool, snapshot(pool, 100.0, history=hist))
    deep = {d for d in moves(p).values() if not d.warm}
    assert deep and deep <= {S.DISK_STANDBY, S.SLEEP}
    # hours later, the same spares may go all the way down
    p = plan(pool, snapshot(pool, 100.0))
    assert S.UNPOWERED in moves(p).values()


def test_idle_before_sleep_and_min_uptime_are_vetoes_with_reasons() -> None:
    pool = make_pool(4, idle_before_sleep_s=600.0, min_uptime_s=900.0)
    hist = ((300.0, 400.0), (200.0, 100.0))  # quiet for only 5 minutes
    p = plan(pool, snapshot(pool, 100.0, history=hist))
    assert all(a.dst is S.FREQ_SCALED for a in p.actions)
    assert any(v.rule == "idle-before-sleep" for v in p.vetoes)
    fresh = {f"h{i:02d}": obs(f"h{i:02d}", S.ACTIVE, ago=300.0) for i in range(4)}
    p = plan(replace(pool, idle_before_sleep_s=60.0), snapshot(pool, 100.0, fresh))
    assert any(v.rule == "min-uptime" for v in p.vetoes)
    assert all(a.dst.warm for a in p.actions)


def test_min_uptime_counts_from_the_wake_in_either_warm_state() -> None:
    """A host woken 5 minutes ago may not sleep whether it now runs scaled down or not;
    one up for hours may, and identical hosts leave the young one serving instead."""
    pool = make_pool(4, idle_before_sleep_s=60.0, min_uptime_s=900.0, tiers=())
    young = {"h03": obs("h03", S.FREQ_SCALED, ago=300.0)}  # woken 5 min ago, scaled since
    # Of the three spares, the two most surplus have been idle long enough to sleep, the
    # third for only 30 s. Those two slots must go to hosts a sleep may take: the young
    # one serves instead (identical hosts), else it would waste a slot on a veto.
    hist = ((3000.0, 100.0), (600.0, 200.0), (30.0, 100.0))
    p = plan(pool, snapshot(pool, 100.0, young, history=hist))
    assert {h for h, d in moves(p).items() if not d.warm} == {"h01", "h02"}
    alone = {f"h{i:02d}": obs(f"h{i:02d}", S.FREQ_SCALED, ago=300.0) for i in range(4)}
    p = plan(pool, snapshot(pool, 100.0, alone))  # every host young: nothing may sleep
    assert not [a for a in p.actions if not a.dst.warm]
    assert any(v.rule == "min-uptime" and v.src is S.FREQ_SCALED for v in p.vetoes)


def test_min_dwell_holds_a_parked_host_in_its_state() -> None:
    pool = make_pool(4, min_dwell_s={S.DISK_STANDBY: 600.0})
    states = {"h03": obs("h03", S.DISK_STANDBY, ago=100.0)}
    p = plan(pool, snapshot(pool, 100.0, states))
    assert "h03" not in moves(p)
    assert any(v.host == "h03" and v.rule == "min-dwell" for v in p.vetoes)
    states = {"h03": obs("h03", S.DISK_STANDBY, ago=7200.0)}
    assert moves(plan(pool, snapshot(pool, 100.0, states))).get("h03") is S.UNPOWERED


def test_tiers_keep_fast_states_filled() -> None:
    """warm 1, +2 within 60 s: after settling, exactly two spares rest in a <60 s state."""
    pool = make_pool(10, tiers=(Tier(60.0, hosts=2),))
    layout = settle(pool, load=100.0)
    prof = pool.profiles["p"]
    fast = [h for h, s in layout.items() if not s.warm and prof.ready_s[s] <= 60.0]
    assert sum(1 for s in layout.values() if s.warm) == 2
    assert len(fast) == 2
    assert list(layout.values()).count(S.UNPOWERED) == 6


def test_percent_tier_scales_with_demand() -> None:
    pool = make_pool(20, tiers=(Tier(600.0, percent=50),))
    layout = settle(pool, load=800.0)  # needed 8 -> 4 more within 10 min
    prof = pool.profiles["p"]
    within = [h for h, s in layout.items() if not s.warm and prof.ready_s[s] <= 600.0]
    warm = [h for h, s in layout.items() if s.warm]
    assert len(warm) == 9
    assert len(warm) + len(within) == 20  # unpowered (240 s) still counts within 10 min


def test_overdue_wake_counts_for_nothing_so_another_spare_is_woken() -> None:
    pool = make_pool(6, wake_margin_s=30.0)
    states = {f"h{i:02d}": S.SLEEP for i in range(2, 6)}
    on_time = obs("h02", S.SLEEP, to=S.ACTIVE, started_ago=10.0)
    p = plan(pool, snapshot(pool, 200.0, {**states, "h02": on_time}))  # needs 3 warm
    assert not [a for a in p.actions if a.dst is S.ACTIVE]  # h02 will do
    late = obs("h02", S.SLEEP, to=S.ACTIVE, started_ago=15.0 + 30.0 + 1.0)
    p = plan(pool, snapshot(pool, 200.0, {**states, "h02": late}))
    woken = [a.host for a in p.actions if a.dst is S.ACTIVE]
    assert len(woken) == 1 and woken[0] != "h02"


def test_breaker_stops_sleeps_and_wakes_the_whole_ladder() -> None:
    pool = make_pool(8, tiers=(Tier(60.0, hosts=2),), breaker_failures=2)
    states = {f"h{i:02d}": S.SLEEP for i in range(2, 8)}
    fails = tuple(RecentAction(f"h0{i}", "wake", NOW - timedelta(seconds=60), failed=True) for i in (6, 7))
    p = plan(pool, snapshot(pool, 100.0, states, recent=fails))
    assert all(a.dst is S.ACTIVE for a in p.actions)
    assert len(p.actions) == 2  # 1 needed + 1 warm + 2 tier -> all four warm
    assert any("breaker" in n for n in p.notes)
    calm = plan(pool, snapshot(pool, 100.0, states))
    assert not [a for a in calm.actions if a.dst is S.ACTIVE]


def test_schedule_window_prewakes_slow_hosts_before_it_opens() -> None:
    # Saturday 03:00 UTC; a window opening at 03:03 needs 5 warm hosts.
    win = Window("early shift", frozenset(range(7)), 3 * 60 + 3, 4 * 60, 5)
    pool = make_pool(8, windows=(win,))
    states = {f"h{i:02d}": S.UNPOWERED for i in range(2, 8)}  # 240 s to ready
    p = plan(pool, snapshot(pool, 50.0, states))
    assert len([a for a in p.actions if a.dst is S.ACTIVE]) == 3
    far = Window("later", frozenset(range(7)), 3 * 60 + 30, 4 * 60, 5)
    p = plan(replace(pool, windows=(far,)), snapshot(pool, 50.0, states))
    assert not [a for a in p.actions if a.dst is S.ACTIVE]


def test_rising_trend_wakes_slow_hosts_early() -> None:
    pool = make_pool(10, allowed=(S.ACTIVE, S.OFF), trend_window_s=600.0)
    states = {f"h{i:02d}": S.OFF for i in range(4, 10)}
    flat = ((600.0, 300.0), (300.0, 300.0), (10.0, 300.0))
    p = plan(pool, snapshot(pool, 300.0, states, history=flat))  # 3 needed + 1 warm: ok
    assert not [a for a in p.actions if a.dst is S.ACTIVE]
    ramp = ((600.0, 0.0), (300.0, 150.0), (10.0, 300.0))  # +0.3 hosts/min, off takes 3 min
    p = plan(pool, snapshot(pool, 300.0, states, history=ramp))
    assert [a for a in p.actions if a.dst is S.ACTIVE], p.notes


def test_failure_domains_spread_the_warm_hosts() -> None:
    pool = make_pool(8, racks=2, min_active=2)
    layout = settle(pool, load=100.0)
    warm = sorted(h for h, s in layout.items() if s.warm)
    racks = {int(h[1:]) % 2 for h in warm}
    assert racks == {0, 1}, warm


def test_failure_domain_guard_refuses_a_sleep_that_would_strand_the_pool() -> None:
    """If losing a rack would leave less ready than is being served, deep sleep is refused."""
    pool = make_pool(4, racks=2, min_active=2, warm=0, allowed=(S.ACTIVE, S.UNPOWERED))
    # h00,h02 in rack r0 serve; h01,h03 in rack r1. Ladder has no tiers -> horizon 0.
    p = plan(pool, snapshot(pool, 150.0))
    assert moves(p) == {}
    assert any(v.rule == "failure-domain" for v in p.vetoes), p.vetoes


def test_serving_hosts_are_unscaled_when_load_rises() -> None:
    pool = make_pool(4)
    states = {f"h{i:02d}": S.FREQ_SCALED for i in range(4)}
    p = plan(pool, snapshot(pool, 250.0, states))
    assert list(moves(p).values()).count(S.ACTIVE) == 3


def test_efficient_hosts_serve_and_wear_is_spread() -> None:
    thrifty = profile("thrifty", active_peak=300.0)
    hungry = profile("hungry", active_peak=600.0)
    pool = make_pool(4)
    hosts = tuple(replace(h, profile="hungry" if i < 2 else "thrifty") for i, h in enumerate(pool.hosts))
    pool = replace(pool, hosts=hosts, profiles={"thrifty": thrifty, "hungry": hungry}, min_active=1)
    layout = settle(pool, load=100.0)
    assert layout["h02"] is S.ACTIVE or layout["h03"] is S.ACTIVE
    pool = make_pool(6)
    states = {f"h{i:02d}": obs(f"h{i:02d}", S.SLEEP, wakes=10 - i) for i in range(1, 6)}
    p = plan(pool, snapshot(pool, 100.0, states))
    assert moves(p) == {"h05": S.ACTIVE}  # fewest wakes so far


def test_needed_follows_target_utilisation() -> None:
    pool = make_pool(10, target_utilisation=0.7, min_active=0)
    assert needed(pool, 0.0) == 0
    assert needed(pool, 0.7) == 1
    assert needed(pool, 0.71) == 2
    assert needed(pool, 7.0) == math.ceil(7.0 / 0.7)


def test_missing_observations_are_noted_not_guessed() -> None:
    pool = make_pool(3)
    snap = snapshot(pool, 100.0)
    p = plan(pool, replace(snap, hosts=snap.hosts[:2]))
    assert "h02" not in moves(p)
    assert any("no observation" in n for n in p.notes)


def test_peak_hold_is_the_safety_knob() -> None:
    """The load's swing within peak_hold is provisioned for; without it, only the load."""
    hist = ((240.0, 500.0), (180.0, 200.0), (120.0, 200.0), (10.0, 200.0))
    states = {f"h{i:02d}": S.SLEEP for i in range(3, 10)}
    relaxed = make_pool(10, peak_hold_s=0.0)
    assert not [
        a for a in plan(relaxed, snapshot(relaxed, 200.0, states, history=hist)).actions if a.dst is S.ACTIVE
    ]
    careful = make_pool(10, peak_hold_s=300.0)
    p = plan(careful, snapshot(careful, 200.0, states, history=hist))
    # 5 hosts for 60 s, then 2 for 180 s: mean 2.75, standard deviation 1.3 -> demand
    # 2 + 1.3 needs 4 hosts, + the warm spare = 5 warm; 3 are, so 2 are woken
    assert p.tiers[0].required == 5
    assert len([a for a in p.actions if a.dst is S.ACTIVE]) == 2
    calm = ((250.0, 200.0), (100.0, 200.0), (10.0, 200.0))
    calm_p = plan(careful, snapshot(careful, 200.0, states, history=calm))
    assert calm_p.needed == 2 and calm_p.tiers[0].required == 3  # no swing: needed + the warm spare
    jumpy = ((250.0, 100.0), (200.0, 300.0), (100.0, 200.0), (10.0, 200.0))
    careful_p = plan(careful, snapshot(careful, 200.0, states, history=jumpy))
    assert careful_p.needed == 2  # what the demand needs now ...
    assert careful_p.tiers[0].required == 4  # ... + a swing of 0.75 hosts (one more) + the warm spare


def test_domain_guard_does_not_freeze_parking_when_no_domain_loss_is_coverable() -> None:
    """At high load neither rack could carry the pool alone: spares still park."""
    pool = make_pool(10, racks=2, min_active=1, tiers=(), allowed=(S.ACTIVE, S.UNPOWERED))
    p = plan(pool, snapshot(pool, 700.0))  # needed 7 + warm 1 of 10 hosts
    assert list(moves(p).values()).count(S.UNPOWERED) == 2
    assert not [v for v in p.vetoes if v.rule == "failure-domain"]


def test_recent_bursts_keep_spares_in_a_lighter_sleep_and_wake_nobody() -> None:
    """A 4-host ramp over two minutes, each step only +1: the warm margin reads the swing
    (one host more), but parking keeps room for the whole ramp within the slower rungs'
    horizons."""
    pool = make_pool(10, peak_hold_s=600.0, trend_window_s=0.0, idle_before_sleep_s=60.0)
    ramp = ((590.0, 100.0), (150.0, 100.0), (120.0, 200.0), (90.0, 300.0), (60.0, 400.0), (30.0, 500.0))
    flat = ((590.0, 500.0), (30.0, 500.0))  # idle long enough, in both, to earn unpowered
    p = plan(pool, snapshot(pool, 500.0, history=ramp))
    # 1 host for 470 s, then 2, 3, 4, 5 for 30 s each: a swing of 1.1 -> 7 needed + the warm spare
    assert p.tiers[0].required == 8
    parked = {h: d for h, d in moves(p).items() if not d.warm}
    assert len(parked) == 2 and set(parked.values()) <= {S.DISK_STANDBY, S.SLEEP}
    calm = plan(pool, snapshot(pool, 500.0, history=flat))
    assert S.UNPOWERED in moves(calm).values()  # without the ramp they go all the way down
    # Spares already deep are not woken for it: only parking looks at bursts.
    deep = {f"h{i:02d}": S.UNPOWERED for i in range(8, 10)}  # the 8 warm the margin asks for stay
    wakes = [a for a in plan(pool, snapshot(pool, 500.0, deep, history=ramp)).actions if not a.src.warm]
    assert not wakes


def test_a_plan_depends_on_its_snapshot_alone_even_when_nothing_was_carried_out() -> None:
    """The planner keeps its pass over the hosts while the journal hands out the same
    observations. A dry run plans the same snapshot again (its moves were never carried
    out), and a host mid-wake is worth less as its deadline passes, observation unchanged."""
    pool = make_pool(8)
    states = {"h02": S.OFF, "h03": S.UNPOWERED, "h04": S.SLEEP, "h05": S.DISK_STANDBY}
    snap = snapshot(pool, 300.0, {**states, "h06": S.HIBERNATE, "h07": S.OFF})
    first = plan(pool, snap)
    assert {h for h, d in moves(first).items() if d is S.ACTIVE} == {"h05", "h04"}
    assert plan(pool, snap) == first  # not "h04 and h05 are already on their way"
    quiet = snapshot(pool, 100.0)  # all at rest, spares to park
    assert plan(pool, quiet) == plan(pool, quiet)

    waking = {f"h{i:02d}": S.SLEEP for i in range(3, 6)}
    waking["h02"] = obs("h02", S.SLEEP, to=S.ACTIVE, started_ago=10.0)
    pool = make_pool(6)
    snap = snapshot(pool, 200.0, waking)
    on_time = plan(pool, snap)
    assert not [a for a in on_time.actions if a.dst is S.ACTIVE]
    later = replace(snap, now=snap.now + timedelta(seconds=60.0))  # the same observations
    woken = [a.host for a in plan(pool, later).actions if a.dst is S.ACTIVE]
    assert len(woken) == 1 and woken[0] != "h02"  # the wake is overdue now
