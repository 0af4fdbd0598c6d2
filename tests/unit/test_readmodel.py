"""The read model fed with events, and the status table rendered from it."""

from __future__ import annotations

from ipaddress import IPv4Address

from hacontrol.runtime.events import (
    DesiredWeights,
    InstanceInfo,
    IpvsAvailability,
    OverridesChanged,
    RealServerInfo,
    ReconcileResult,
    ReloadResult,
    SyncDaemonRoleChanged,
    Topology,
    VirtualServerInfo,
    VrrpProcessChanged,
)
from hacontrol.runtime.readmodel import ReadModel, format_status, merge_counters
from healthcheck.policy import DrainFinished, DrainStarted, QuorumChanged
from healthcheck.state import RealServerDown, RealServerId, RealServerUp
from vrrp.events import (
    FaultsChanged,
    InstanceCounters,
    InstanceStateChanged,
    MasterChanged,
    PriorityChanged,
    VrrpCounters,
)
from vrrp.types import Reason, State


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


TOPOLOGY = Topology(
    instances=(
        InstanceInfo("VI_WEB", "eth0", 51, 4, 150),
        InstanceInfo("VI_GW", "eth1", 52, 4, 150),
    ),
    virtual_servers=(
        VirtualServerInfo(
            "web",
            "TCP 192.0.2.10:80",
            2,
            (
                RealServerInfo("198.51.100.11", 80, 1, 1),
                RealServerInfo("198.51.100.12", 80, 3, 1),
                RealServerInfo("198.51.100.13", 80, 1, 0),
            ),
        ),
    ),
    sync_daemon_instance="VI_WEB",
    config_path="/etc/hacontrol/hacontrol.yaml",
)


def model() -> tuple[ReadModel, Clock]:
    clock = Clock()
    m = ReadModel(clock)
    m.apply(TOPOLOGY)
    return m, clock


def test_configured_objects_are_listed_before_anything_happens() -> None:
    m, _ = model()
    snap = m.snapshot()
    assert [(i["name"], i["state"], i["priority"]) for i in snap["vrrp_instances"]] == [
        ("VI_WEB", "INIT", 150),
        ("VI_GW", "INIT", 150),
    ]
    (vs,) = snap["virtual_servers"]
    assert [(r["address"], r["health"]) for r in vs["real_servers"]] == [
        ("198.51.100.11", "pending"),
        ("198.51.100.12", "pending"),
        ("198.51.100.13", "alive"),  # no checks: alive, as keepalived treats it
    ]


def test_vrrp_events_fold_into_the_instance_view() -> None:
    m, clock = model()
    m.apply(
        InstanceStateChanged(
            "VI_WEB", "eth0", 51, State.INITIALIZE, State.BACKUP, Reason.STARTUP, 150, 150
        )
    )
    clock.now += 3.6
    m.apply(
        InstanceStateChanged(
            "VI_WEB", "eth0", 51, State.BACKUP, State.MASTER, Reason.MASTER_DOWN, 150, 150
        )
    )
    m.apply(MasterChanged("VI_WEB", IPv4Address("192.0.2.1"), 150, ours=True))
    m.apply(PriorityChanged("VI_WEB", 150, 120))
    m.apply(FaultsChanged("VI_GW", "eth1", ("no_such_interface",)))
    m.apply(
        VrrpCounters(
            {"VI_WEB": InstanceCounters(adverts_sent=7, adverts_received=3, intervals_missed=2)},
            {},
        )
    )
    snap = m.snapshot()
    web, gw = snap["vrrp_instances"]
    assert web["state"] == "MASTER" and web["reason"] == "master_down"
    assert web["since"] == clock.now
    assert (web["priority"], web["effective_priority"]) == (150, 120)
    assert web["master"] == "192.0.2.1" and web["master_is_us"]
    assert (web["adverts_sent"], web["adverts_received"]) == (7, 3)
    assert web["advert_intervals_missed"] == 2
    assert gw["faults"] == ["no_such_interface"]
    # Stepping down forgets that we were master.
    m.apply(
        InstanceStateChanged(
            "VI_WEB", "eth0", 51, State.MASTER, State.BACKUP, Reason.HIGHER_PRIORITY, 150, 120
        )
    )
    assert m.snapshot()["vrrp_instances"][0]["master"] is None


def test_health_weights_quorum_and_drains() -> None:
    m, clock = model()
    rs11 = RealServerId("web", "198.51.100.11", 80)
    rs12 = RealServerId("web", "198.51.100.12", 80)
    m.apply(RealServerUp(rs11, 1, "ok"))
    clock.now += 1
    m.apply(RealServerDown(rs12, "connection refused"))
    m.apply(QuorumChanged("web", False, 1, 2, "lost"))
    m.apply(DesiredWeights({"web": (("198.51.100.11", 80, 1), ("198.51.100.13", 80, 1))}))
    vs = m.snapshot()["virtual_servers"][0]
    assert vs["quorum_up"] is False
    by = {r["address"]: r for r in vs["real_servers"]}
    assert by["198.51.100.11"]["health"] == "up" and by["198.51.100.11"]["weight"] == 1
    assert by["198.51.100.12"]["health"] == "down"
    assert by["198.51.100.12"]["reason"] == "connection refused"
    assert by["198.51.100.12"]["weight"] is None  # removed from the table
    assert by["198.51.100.12"]["since"] == clock.now
    # A server that left the config drains visibly, then disappears.
    gone = RealServerId("web", "198.51.100.99", 80)
    m.apply(DrainStarted(gone))
    assert any(
        r["address"] == "198.51.100.99" and r["health"] == "draining"
        for r in m.snapshot()["virtual_servers"][0]["real_servers"]
    )
    m.apply(DrainFinished(gone, "connections"))
    assert all(
        r["address"] != "198.51.100.99" for r in m.snapshot()["virtual_servers"][0]["real_servers"]
    )


def test_overrides_ipvs_sync_reconcile_and_reload() -> None:
    m, _ = model()
    m.apply(OverridesChanged(frozenset({("web", "198.51.100.11", 80)}), frozenset({"VI_GW"})))
    m.apply(IpvsAvailability(False, "module ip_vs not loaded; modprobe failed"))
    m.apply(SyncDaemonRoleChanged("master", "VI_WEB"))
    m.apply(ReconcileResult("sync_daemon", False, 0, 0, 0.01, 10.0, (), "ENODEV", 2.0))
    m.apply(ReloadResult("rejected", rejected=("a.yaml:3: x: bad",)))
    m.apply(VrrpProcessChanged("started", 4242))
    m.apply(VrrpProcessChanged("exited", None, "killed by signal 9"))
    m.apply(VrrpProcessChanged("started", 4243, "restart"))
    snap = m.snapshot()
    by = {r["address"]: r for r in snap["virtual_servers"][0]["real_servers"]}
    assert by["198.51.100.11"]["health"] == "drained"
    assert [i["stepped_down"] for i in snap["vrrp_instances"]] == [False, True]
    assert snap["ipvs"] == {
        "available": False,
        "detail": "module ip_vs not loaded; modprobe failed",
    }
    assert snap["sync_daemon"] == {"vrrp_instance": "VI_WEB", "role": "master"}
    assert snap["reconcile"]["sync_daemon"]["error"] == "ENODEV"
    assert snap["last_reload"]["rejected"] == ["a.yaml:3: x: bad"]
    assert snap["vrrp_process"] == {"pid": 4243, "restarts": 1}


def test_reload_keeps_what_is_known_of_unchanged_objects() -> None:
    m, _ = model()
    m.apply(RealServerDown(RealServerId("web", "198.51.100.12", 80), "timeout"))
    m.apply(QuorumChanged("web", True, 3, 2, "gained"))
    m.apply(TOPOLOGY)  # the same topology again (a reload that kept it)
    vs = m.snapshot()["virtual_servers"][0]
    assert vs["quorum_up"] is True
    assert [r["health"] for r in vs["real_servers"]] == ["pending", "down", "alive"]


def test_counters_merge_and_the_table_renders() -> None:
    m, clock = model()
    m.apply(
        InstanceStateChanged(
            "VI_WEB", "eth0", 51, State.BACKUP, State.MASTER, Reason.PREEMPT, 150, 150
        )
    )
    m.apply(MasterChanged("VI_GW", IPv4Address("192.0.2.2"), 200, ours=False))
    m.apply(RealServerUp(RealServerId("web", "198.51.100.11", 80), 1, "ok"))
    m.apply(DesiredWeights({"web": (("198.51.100.11", 80, 1),)}))
    clock.now += 30
    snap = m.snapshot()
    merge_counters(snap, {("web", "198.51.100.11", 80): (12, 40)})
    text = format_status(snap)
    assert "VI_WEB  eth0   51    MASTER" in text
    assert "192.0.2.2 (prio 200)" in text
    assert "30s ago  preempt" in text
    assert "198.51.100.11:80  up       1       12          40         30s ago  ok" in text
    assert "TCP 192.0.2.10:80 (web)  quorum - (need 2)" in text
