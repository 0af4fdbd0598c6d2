"""The Prometheus export, read back as a scrape would: the check runner's figures, the
kernel's IPVS table under node_exporter's names and labels, the VRRP states side by side,
and the removal of series the configuration no longer has."""

from __future__ import annotations

from ipaddress import ip_address
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from hacontrol.ipvs.model import ForwardingMethod, RealServer, ServiceKey, Table, VirtualService
from hacontrol.ipvs.netlink import DestCounters, Snapshot, Stats
from hacontrol.metrics import IpvsCollector, Metrics, go_ip, parse_ip_vs_stats, service_labels
from hacontrol.runtime.events import (
    InstanceInfo,
    IpvsAvailability,
    IpvsTableDumped,
    RealServerHealthKnown,
    RealServerInfo,
    ReloadResult,
    Topology,
    VirtualServerInfo,
)
from healthcheck.policy import QuorumChanged
from healthcheck.runner import RunnerStats
from tests.ipvs_procfs import Sample, backend_samples, total_samples
from vrrp.events import FaultsChanged, InstanceStateChanged
from vrrp.types import Reason, State


def test_check_runner_figures_are_read_at_scrape_time() -> None:
    metrics = Metrics()
    stats = RunnerStats()
    metrics.watch_check_runner(stats)
    value = metrics.registry.get_sample_value
    assert value("hacontrol_check_attempts_total") == 0.0
    assert value("hacontrol_check_lateness_seconds_count") == 0.0

    # The runner counts after registration; the next scrape sees it.
    stats.attempts, stats.results, stats.crashes = 7, 6, 1
    stats.guard_timeouts, stats.callback_errors, stats.dispatcher_restarts = 2, 3, 4
    stats.in_flight = 5
    late = (0.0004, 0.003, 0.049, 0.050, 0.7, 12.0)
    stats.lateness.record(0.0)
    for seconds in late:
        stats.lateness.record(seconds)

    assert value("hacontrol_check_attempts_total") == 7
    assert value("hacontrol_check_results_total") == 6
    assert value("hacontrol_check_crashes_total") == 1
    assert value("hacontrol_check_guard_timeouts_total") == 2
    assert value("hacontrol_check_callback_errors_total") == 3
    assert value("hacontrol_check_dispatcher_restarts_total") == 4
    assert value("hacontrol_check_in_flight") == 5

    def bucket(le: str) -> float | None:
        return value("hacontrol_check_lateness_seconds_bucket", {"le": le})

    # Cumulative, upper edges exclusive as the 1 ms buckets are: 0.050 is not within 50 ms.
    assert bucket("0.001") == 2
    assert bucket("0.005") == 3
    assert bucket("0.05") == 4
    assert bucket("0.1") == 5
    assert bucket("1.0") == 6
    assert bucket("10.0") == 6  # 12 s is past the runner's last bucket
    assert bucket("+Inf") == 7
    assert value("hacontrol_check_lateness_seconds_count") == 7
    assert value("hacontrol_check_lateness_seconds_sum") == sum(late)


def test_check_runner_figures_render_in_the_text_format() -> None:
    metrics = Metrics()
    metrics.watch_check_runner(RunnerStats())
    text = generate_latest(metrics.registry).decode()
    assert "# TYPE hacontrol_check_crashes_total counter" in text
    assert "# TYPE hacontrol_check_lateness_seconds histogram" in text
    assert 'hacontrol_check_lateness_seconds_bucket{le="+Inf"} 0.0' in text


# ---- the kernel's IPVS table, as node_exporter exports it ---------------------------------

WEB = ServiceKey.of("tcp", "192.0.2.10", 80)
DNS6 = ServiceKey.of("udp", "2001:db8::10", 53)
MARK = ServiceKey.of_fwmark(7)


def rs(address: str, port: int, fwd: ForwardingMethod, weight: int) -> RealServer:
    return RealServer(ip_address(address), port, fwd, weight=weight)


def hand_made_snapshot() -> Snapshot:
    """Three services as a dump returns them: NAT with two real servers (one at weight 0),
    IPv6 DR, and a fwmark service."""
    nat, dr = ForwardingMethod.NAT, ForwardingMethod.DR
    web_a = rs("198.51.100.1", 8080, nat, 3)
    web_b = rs("198.51.100.2", 8080, nat, 0)
    dns = rs("2001:db8::5", 53, dr, 1)
    mark = rs("198.51.100.3", 0, dr, 2)
    table = Table.of(
        [
            VirtualService(WEB, scheduler="wrr", real_servers=(web_a, web_b)),
            VirtualService(DNS6, scheduler="rr", real_servers=(dns,)),
            VirtualService(MARK, scheduler="rr", real_servers=(mark,)),
        ]
    )
    return Snapshot(
        table,
        {
            WEB: Stats(conns=7, inpkts=70, outpkts=60, inbytes=7000, outbytes=60000, cps=1),
            DNS6: Stats(conns=4, inpkts=4, outpkts=0, inbytes=240, outbytes=0),
            MARK: Stats(conns=1, inpkts=3, outpkts=2, inbytes=180, outbytes=120),
        },
        {
            (WEB, web_a.key): DestCounters(2, 5, 0, Stats(7, 70, 60, 7000, 60000)),
            (WEB, web_b.key): DestCounters(),
            (DNS6, dns.key): DestCounters(0, 4, 0, Stats(4, 4, 0, 240, 0)),
            (MARK, mark.key): DestCounters(1, 0, 6, Stats(1, 3, 2, 180, 120)),
        },
    )


# What the kernel prints for that table (ip_vs_info_seq_show: "%s  %08X:%04X %s %s " per
# service, "  -> %08X:%04X      %-7s %-6d %-10d %-10d" per real server, IPv6 as [%pI6]).
PROC_NET_IP_VS = """\
IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  C000020A:0050 wrr 
  -> C6336401:1F90      Masq    3      2          5         
  -> C6336402:1F90      Masq    0      0          0         
UDP  [2001:0db8:0000:0000:0000:0000:0000:0010]:0035 rr 
  -> [2001:0db8:0000:0000:0000:0000:0000:0005]:0035      Route   1      0          4         
FWM  00000007 rr 
  -> C6336403:0000      Route   2      1          0         
"""  # noqa: W291 - the kernel's trailing blanks

PROC_NET_IP_VS_STATS = """\
   Total Incoming Outgoing         Incoming         Outgoing
   Conns  Packets  Packets            Bytes            Bytes
       C       4D       3E             1D74             EA78

 Conns/s   Pkts/s   Pkts/s          Bytes/s          Bytes/s
       1        2        0               80                0
"""


def samples(metrics: Metrics, prefix: str) -> dict[Sample, float]:
    out: dict[Sample, float] = {}
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name.startswith(prefix):
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def labels(**kw: str) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(kw.items()))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def ipvs_metrics(tmp_path: Path) -> tuple[Metrics, Clock]:
    stats = tmp_path / "ip_vs_stats"
    stats.write_text(PROC_NET_IP_VS_STATS)
    clock = Clock()
    return Metrics(ipvs=IpvsCollector(stats_path=stats, clock=clock)), clock


def test_ipvs_table_is_exported_as_node_exporter_reads_proc(tmp_path: Path) -> None:
    metrics, clock = ipvs_metrics(tmp_path)
    assert samples(metrics, "node_ipvs") == {}, "nothing before the first dump"
    metrics.on_ipvs_table(IpvsTableDumped(hand_made_snapshot(), at=clock.now - 2.5))

    backends = samples(metrics, "node_ipvs_backend_")
    # The same samples node_exporter derives from the kernel's text for the same table...
    assert backends == backend_samples(PROC_NET_IP_VS)
    # ...which are, spelled out:
    web_a = labels(
        local_address="192.0.2.10",
        local_port="80",
        remote_address="198.51.100.1",
        remote_port="8080",
        proto="TCP",
        local_mark="",
    )
    dns = labels(
        local_address="2001:db8::10",
        local_port="53",
        remote_address="2001:db8::5",
        remote_port="53",
        proto="UDP",
        local_mark="",
    )
    mark = labels(
        local_address="",
        local_port="0",
        remote_address="198.51.100.3",
        remote_port="0",
        proto="FWM",
        local_mark="00000007",
    )
    assert backends[("node_ipvs_backend_connections_active", web_a)] == 2
    assert backends[("node_ipvs_backend_connections_inactive", web_a)] == 5
    assert backends[("node_ipvs_backend_weight", web_a)] == 3
    assert backends[("node_ipvs_backend_connections_inactive", dns)] == 4
    assert backends[("node_ipvs_backend_weight", mark)] == 2
    assert backends[("node_ipvs_backend_connections_active", mark)] == 1
    assert len(backends) == 3 * 4

    # The host totals, from /proc/net/ip_vs_stats as node_exporter reads them.
    totals = samples(metrics, "node_ipvs_").items() - backends.items()
    assert dict(totals) == total_samples(PROC_NET_IP_VS_STATS)
    assert dict(totals)[("node_ipvs_outgoing_bytes_total", ())] == 60024

    ours = samples(metrics, "hacontrol_ipvs_")
    assert ours[("hacontrol_ipvs_snapshot_age_seconds", ())] == 2.5
    assert ours[("hacontrol_ipvs_backend_connections_total", web_a)] == 7
    assert ours[("hacontrol_ipvs_backend_incoming_packets_total", web_a)] == 70
    assert ours[("hacontrol_ipvs_backend_outgoing_packets_total", web_a)] == 60
    assert ours[("hacontrol_ipvs_backend_incoming_bytes_total", web_a)] == 7000
    assert ours[("hacontrol_ipvs_backend_outgoing_bytes_total", web_a)] == 60000
    assert ours[("hacontrol_ipvs_backend_connections_persistent", mark)] == 6
    web = labels(local_address="192.0.2.10", local_port="80", proto="TCP", local_mark="")
    fwm = labels(local_address="", local_port="0", proto="FWM", local_mark="00000007")
    assert ours[("hacontrol_ipvs_service_connections_total", web)] == 7
    assert ours[("hacontrol_ipvs_service_outgoing_bytes_total", web)] == 60000
    assert ours[("hacontrol_ipvs_service_incoming_bytes_total", fwm)] == 180
    # 4 real servers x (5 counters + persistent), 3 services x 5 counters, the age.
    assert len(ours) == 4 * 6 + 3 * 5 + 1

    # Scraped later: the same dump, older.
    clock.now += 10
    assert (
        samples(metrics, "hacontrol_ipvs_snapshot")[("hacontrol_ipvs_snapshot_age_seconds", ())]
        == 12.5
    )


def test_ipvs_figures_go_when_ipvs_does(tmp_path: Path) -> None:
    metrics, clock = ipvs_metrics(tmp_path)
    value = metrics.registry.get_sample_value
    assert value("hacontrol_ipvs_available") is None, "no IPVS in use yet: nothing to miss"
    metrics.on_ipvs_availability(IpvsAvailability(True))
    assert value("hacontrol_ipvs_available") == 1
    metrics.on_ipvs_table(IpvsTableDumped(hand_made_snapshot(), at=clock.now))
    assert samples(metrics, "node_ipvs_backend_weight")
    metrics.on_ipvs_availability(IpvsAvailability(False, "modprobe ip_vs failed"))
    assert samples(metrics, "node_ipvs") == {} == samples(metrics, "hacontrol_ipvs_snapshot")
    assert metrics.registry.get_sample_value("hacontrol_ipvs_available") == 0


def test_ipvs_totals_need_the_stats_file(tmp_path: Path) -> None:
    metrics = Metrics(ipvs=IpvsCollector(stats_path=tmp_path / "absent"))
    metrics.on_ipvs_table(IpvsTableDumped(hand_made_snapshot(), at=0.0))
    assert ("node_ipvs_connections_total", ()) not in samples(metrics, "node_ipvs")
    assert samples(metrics, "node_ipvs_backend_weight"), "the table does not need it"
    with pytest.raises(ValueError, match="3 fields on the totals line, expected 5"):
        parse_ip_vs_stats("a\nb\n1 2 3\nc")
    with pytest.raises(ValueError, match="too short"):
        parse_ip_vs_stats("a\nb\n")


def test_addresses_print_as_go_prints_them() -> None:
    assert go_ip(ip_address("::ffff:198.51.100.9")) == "198.51.100.9"
    assert go_ip(ip_address("2001:db8:0:1:0:0:0:1")) == "2001:db8:0:1::1"
    assert go_ip(ip_address("2001:db8:0:1:1:1:1:1")) == "2001:db8:0:1:1:1:1:1"
    assert service_labels(ServiceKey.of("sctp", "192.0.2.1", 3868))[2] == "SCTP"
    assert service_labels(ServiceKey.of_fwmark(0xABCDEF01))[3] == "ABCDEF01"


# ---- VRRP, virtual servers, reloads ------------------------------------------------------


def state_event(
    name: str, new: State, vrid: int = 51, interface: str = "eth0", family: str = "ipv4"
) -> InstanceStateChanged:
    return InstanceStateChanged(
        name, interface, vrid, State.BACKUP, new, Reason.STARTUP, 100, 100, family
    )


def topology(instances: tuple[str, ...], servers: dict[str, tuple[str, ...]]) -> Topology:
    return Topology(
        instances=tuple(InstanceInfo(n, "eth0", 51, 2, 100) for n in instances),
        virtual_servers=tuple(
            VirtualServerInfo(
                vs,
                f"TCP 192.0.2.10:{80 + i}",
                1,
                tuple(RealServerInfo(a.split(":")[0], int(a.split(":")[1]), 1, 1) for a in rss),
            )
            for i, (vs, rss) in enumerate(servers.items())
        ),
    )


def test_vrrp_state_names_the_virtual_router_and_follows_its_identity() -> None:
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    metrics.on_topology(topology(("VI_1", "VI_6"), {}))
    metrics.on_state_change(state_event("VI_1", State.MASTER))
    metrics.on_state_change(state_event("VI_6", State.BACKUP, family="ipv6"))
    v1 = {"vrrp_instance": "VI_1", "vrid": "51", "interface": "eth0", "family": "ipv4"}
    v6 = {**v1, "vrrp_instance": "VI_6", "family": "ipv6"}
    assert value("hacontrol_vrrp_state", v1) == 2
    assert value("hacontrol_vrrp_state", v6) == 1
    # Reloaded with another VRID: restarted, and only the new virtual router is reported.
    metrics.on_state_change(state_event("VI_1", State.INITIALIZE))
    metrics.on_state_change(state_event("VI_1", State.BACKUP, vrid=52))
    assert value("hacontrol_vrrp_state", v1) is None
    assert value("hacontrol_vrrp_state", {**v1, "vrid": "52"}) == 1


def test_series_of_what_the_config_dropped_are_removed() -> None:
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    metrics.on_topology(topology(("VI_1", "VI_2"), {"web": ("198.51.100.1:80",)}))
    for name in ("VI_1", "VI_2"):
        metrics.on_state_change(state_event(name, State.BACKUP))
    metrics.on_faults(FaultsChanged("VI_2", "eth0", ("link_down",)))
    metrics.on_health_known(RealServerHealthKnown("web", "198.51.100.1", 80, False, 1, "x"))
    web1 = {"virtual_server": "web", "real_server": "198.51.100.1:80"}
    assert value("hacontrol_real_server_up", web1) == 0
    assert value("hacontrol_real_server_drained", web1) == 0, "a value, not a missing series"
    # A virtual server that starts with quorum has it until the policy says otherwise.
    assert value("hacontrol_virtual_server_quorum_up", {"virtual_server": "web"}) == 1

    # Reload: VI_2 and web's only real server are gone, "api" arrives without quorum.
    metrics.on_quorum(QuorumChanged("api", False, 0, 1, "initial"))
    metrics.on_topology(topology(("VI_1",), {"web": (), "api": ("198.51.100.7:80",)}))
    # The removed instance's last words (INIT) come after the new topology.
    metrics.on_state_change(state_event("VI_2", State.INITIALIZE))
    assert value("hacontrol_real_server_up", web1) is None, "no real server down for ever"
    assert value("hacontrol_real_server_drained", web1) is None
    vi2 = {"vrrp_instance": "VI_2", "vrid": "51", "interface": "eth0", "family": "ipv4"}
    assert value("hacontrol_vrrp_state", vi2) is None, "no director without master for ever"
    assert value("hacontrol_vrrp_fault", {"vrrp_instance": "VI_2", "reason": "link_down"}) is None
    assert value("hacontrol_vrrp_state", {**vi2, "vrrp_instance": "VI_1"}) == 1
    assert value("hacontrol_virtual_server_quorum_up", {"virtual_server": "api"}) == 0
    assert value("hacontrol_virtual_server_quorum_up", {"virtual_server": "web"}) == 1
    metrics.on_topology(topology(("VI_1",), {"api": ("198.51.100.7:80",)}))
    assert value("hacontrol_virtual_server_quorum_up", {"virtual_server": "web"}) is None


def test_last_reload_success_follows_the_reloads() -> None:
    metrics = Metrics()
    value = metrics.registry.get_sample_value
    assert value("hacontrol_config_last_reload_successful") == 1
    metrics.on_reload(ReloadResult("rejected", rejected=("x.yaml:3: vrid: bad",)))
    assert value("hacontrol_config_last_reload_successful") == 0
    assert value("hacontrol_config_reloads_total", {"result": "rejected"}) == 1
    metrics.on_reload(ReloadResult("unchanged"))
    assert value("hacontrol_config_last_reload_successful") == 1
