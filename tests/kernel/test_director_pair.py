"""The product end to end: a hacontrol director pair under faults, with live traffic.

One lab for the whole module (tests/kernel/lab.py): a client, two directors running
`hacontrol run` (VRRP with VI_LAN and VI_IN in one sync group, HTTP checks, IPVS, the
kernel's sync daemon following VRRP), three real servers, a DR and a NAT virtual service.
Each test runs one scenario of the fault matrix against the running pair while the client
keeps long-lived connections (a message every 10 ms) and opens new short ones, and
asserts what must hold, not how fast:

- `hacontrol restart` on the master moves nothing: no failover, no loss, nothing flushed;
- no established connection is lost in a failover while the sync daemon ran (kill -9,
  the LAN link alone down, for NAT too: the sync group moves the inside gateway VIP with
  the LAN VIPs, both links down, a rolling upgrade (the backup's daemon restarted, then
  the master's: a SIGTERM handover followed by a daemon restart), the sync daemon
  stopped by hand and restarted by hacontrol, a split brain that heals);
- afterwards exactly one director holds the VIPs and both IPVS tables equal the desired
  table (`converged`);
- `ipvsadm -C` on the master is repaired;
- a killed real server loses its own connections and nobody else's, goes to weight 0 and
  comes back.

Left out here (each daemon start costs a minute or more under emulation), measured in
benchmarks/director_pair.py: SIGTERM and a later start, the backup's restart alone, a
real server that stalls, kill -9 during a reload, and keepalived.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.kernel.conftest import require_tool
from tests.kernel.lab import (
    DIRECTORS,
    VIPS,
    HacontrolDirector,
    Lab,
    LabOptions,
    ScenarioResult,
    desired_table,
    lab_running,
    restore,
    run_scenario,
)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    for tool in ("ip", "bridge", "ipvsadm"):
        require_tool(tool)
    # The shipped two-process model (VRRP in its own process): `hacontrol restart` keeps
    # that process running, which is what makes a daemon restart hitless here, where an
    # interpreter start costs tens of seconds of imports under software emulation.
    options = LabOptions(impl="hacontrol")
    with lab_running(tmp_path_factory.mktemp("lab"), options) as lab:
        yield lab


@pytest.fixture
def pair(lab: Lab) -> Iterator[Lab]:
    """The running lab; after a test (passed or not) the pair is back in its steady state."""
    yield lab
    restore(lab)


def explain(lab: Lab, result: ScenarioResult) -> str:
    logs = "\n".join(
        f"--- {d} ({lab.directors[d].kind}) log tail:\n{lab.directors[d].log_tail(40)}"
        for d in DIRECTORS
    )
    return f"{result.to_json()}\n{logs}"


def assert_no_loss(lab: Lab, result: ScenarioResult) -> None:
    for service, sr in result.services.items():
        assert sr.established > 0, (service, explain(lab, result))
        assert sr.lost == 0, (service, sr.lost_detail, explain(lab, result))
    assert result.converged, explain(lab, result)


def test_real_server_killed_loses_only_its_connections(pair: Lab) -> None:
    result = run_scenario(pair, "rs_kill")
    kill, back = result.steps
    # Weight 0 (inhibit_on_failure) on both directors, then back to its weight.
    assert kill.converged_s is not None, explain(pair, result)
    assert back.converged_s is not None and result.converged, explain(pair, result)
    for service, sr in result.services.items():
        # rr spreads the long connections over the three servers: rs2 had some.
        assert sr.lost_expected > 0, (service, explain(pair, result))
        assert sr.lost == sr.lost_expected, (service, sr.lost_detail, explain(pair, result))


def test_ipvsadm_flush_on_the_master_is_repaired(pair: Lab) -> None:
    result = run_scenario(pair, "tamper")
    (step,) = result.steps
    # Repaired by the reconciler: one VIP holder and both tables as desired again. (The
    # established connections through the master die: with expire_nodest_conn=1 the kernel
    # expires a connection whose real server left the table at its next packet.)
    assert step.converged_s is not None and result.converged, explain(pair, result)
    assert result.max_vip_holders == 1, explain(pair, result)


def test_master_lan_link_down_and_up(pair: Lab) -> None:
    """The LAN link alone: VI_LAN goes FAULT on d1 and the sync group takes VI_IN with it,
    so NAT replies (routed to the gateway VIP) reach d2, which has the connections."""
    result = run_scenario(pair, "link")
    down, _up = result.steps
    assert set(result.services) == {"dr", "nat"}
    # d2 held every VIP, the inside gateway too (the sync group), with the master syncd.
    assert down.takeover_s is not None, explain(pair, result)
    assert_no_loss(pair, result)


def test_master_links_down_and_up(pair: Lab) -> None:
    result = run_scenario(pair, "links")
    down, _up = result.steps
    assert down.takeover_s is not None, explain(pair, result)
    assert_no_loss(pair, result)


def test_sync_daemon_stopped_by_hand_then_failover(pair: Lab) -> None:
    result = run_scenario(pair, "syncd_stop")
    stop = result.steps[0]
    assert any("running again" in n for n in stop.notes), explain(pair, result)
    # Connections opened after the stop reached d2 through the restarted sync daemon.
    assert_no_loss(pair, result)


def test_split_brain_heals_to_one_master(pair: Lab) -> None:
    result = run_scenario(pair, "split")
    cut, _heal = result.steps
    assert cut.takeover_s is not None, explain(pair, result)  # d2 became master too
    assert result.max_vip_holders == 2, explain(pair, result)  # a real split brain
    assert result.converged, explain(pair, result)  # one master again, tables as desired
    for service, sr in result.services.items():
        before = [d for d in sr.lost_detail if " before via " in d]
        assert not before, (service, before, explain(pair, result))


def test_master_daemon_restart_in_place_moves_nothing(pair: Lab) -> None:
    """`hacontrol restart` on the master: the daemon executes itself again while its VRRP
    process goes on advertising, so nothing moves: d2 never takes a VIP, d1's VIPs, table
    and master sync daemon stay throughout, and no connection is lost."""
    assert pair.observer is not None
    d1 = pair.directors["d1"]
    assert isinstance(d1, HacontrolDirector)
    vrrp_pid = (d1.status() or {}).get("vrrp_process", {}).get("pid")
    result = run_scenario(pair, "restart")
    (step,) = result.steps
    assert step.converged_s is not None, explain(pair, result)
    assert_no_loss(pair, result)
    during = pair.observer.since(step.at)
    assert during, explain(pair, result)
    assert all(s.sole_holder(VIPS) == "d1" for s in during), explain(pair, result)
    assert all("master" in s.views["d1"].sync for s in during), explain(pair, result)
    during = [s for s in during if not s.views["d1"].error]
    assert all(s.views["d1"].table == desired_table() for s in during), explain(pair, result)
    after = (d1.status() or {}).get("vrrp_process", {}).get("pid")
    assert vrrp_pid is not None and after == vrrp_pid, (vrrp_pid, after)  # kept, not restarted


def test_master_kill9(pair: Lab) -> None:
    result = run_scenario(pair, "kill9")
    kill, _start = result.steps
    assert kill.takeover_s is not None, explain(pair, result)
    assert_no_loss(pair, result)


def test_rolling_upgrade(pair: Lab) -> None:
    """A rolling upgrade: the backup's daemon is restarted (SIGTERM, start), then the
    master's: its SIGTERM hands over (priority 0), and the restarted daemon adopts its
    table (nothing flushed) and takes the VIPs back (preempt)."""
    assert pair.observer is not None
    result = run_scenario(pair, "rolling")
    backup, master = result.steps
    assert backup.converged_s is not None, explain(pair, result)
    assert master.converged_s is not None, explain(pair, result)
    assert_no_loss(pair, result)
    # d2 never took a VIP while its own daemon restarted...
    during = [s for s in pair.observer.since(backup.at) if s.t < master.at]
    assert during and not any(s.views["d2"].vips & set(VIPS) for s in during), explain(pair, result)
    # ...d2 held them while d1 was away (a handover happened, not a blink)...
    during = pair.observer.since(master.at)
    assert any(s.sole_holder(VIPS) == "d2" for s in during), explain(pair, result)
    # ...and d1's table stayed whole throughout: a restart does not flush IPVS.
    during = [s for s in during if not s.views["d1"].error]
    assert all(s.views["d1"].table == desired_table() for s in during), explain(pair, result)
