"""What node_exporter's ipvs collector makes of /proc/net/ip_vs and /proc/net/ip_vs_stats,
written from its source (collector/ipvs_linux.go over prometheus/procfs ipvs.go) so tests
can hold hacontrol's export to it: the same names, label values and values.

procfs reads a service line "TCP  C000020A:0050 wrr " (or "[2001:0db8:...]:0050" for
IPv6, "FWM  00000007 rr " for a fwmark service), then the real-server lines under it
"  -> C6336401:1F90      Masq    3      2          5", parsing the address as hex (IPv4) or
Go's net.ParseIP of the 39-character IPv6 form, printed back by net.IP.String(). It reads
only TCP, UDP and FWM service lines; SCTP is accepted here too (procfs would file an SCTP
service's real servers under the service before it).
"""

from __future__ import annotations

import ipaddress

Sample = tuple[str, tuple[tuple[str, str], ...]]  # (metric name, sorted labels)

LABELS = ("local_address", "local_port", "remote_address", "remote_port", "proto", "local_mark")


def _go_ip_string(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    # net.IP.String(): a 16-byte IPv4-mapped address prints as dotted IPv4.
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    return ip.compressed


def _parse_ip_port(text: str) -> tuple[str, int]:
    if len(text) == 13:  # "C0000201:0050"
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(
            bytes.fromhex(text[0:8])
        )
    elif len(text) == 46:  # "[2001:0db8:0000:...:0001]:0050"
        ip = ipaddress.IPv6Address(text[1:40])
    else:
        raise ValueError(f"unexpected IP:Port {text!r}")
    return _go_ip_string(ip), int(text[-4:], 16)


def backend_samples(proc_net_ip_vs: str) -> dict[Sample, float]:
    """node_ipvs_backend_{connections_active,connections_inactive,weight} samples."""
    sums: dict[tuple[str, ...], list[int]] = {}
    proto = local_mark = local_address = ""
    local_port = 0
    for line in proc_net_ip_vs.splitlines():
        fields = line.split()
        if not fields:
            continue
        if fields[0] in ("IP", "Prot") or fields[1] == "RemoteAddress:Port":
            continue
        if fields[0] in ("TCP", "UDP", "SCTP"):
            proto, local_mark = fields[0], ""
            local_address, local_port = _parse_ip_port(fields[1])
        elif fields[0] == "FWM":
            proto, local_mark, local_address, local_port = "FWM", fields[1], "", 0
        elif fields[0] == "->":
            remote_address, remote_port = _parse_ip_port(fields[1])
            key = (
                local_address,
                str(local_port),
                remote_address,
                str(remote_port),
                proto,
                local_mark,
            )
            row = sums.setdefault(key, [0, 0, 0])
            row[0] += int(fields[4])
            row[1] += int(fields[5])
            row[2] += int(fields[3])
    out: dict[Sample, float] = {}
    for key, (active, inactive, weight) in sums.items():
        labels = tuple(sorted(zip(LABELS, key, strict=True)))
        out[("node_ipvs_backend_connections_active", labels)] = float(active)
        out[("node_ipvs_backend_connections_inactive", labels)] = float(inactive)
        out[("node_ipvs_backend_weight", labels)] = float(weight)
    return out


def total_samples(proc_net_ip_vs_stats: str) -> dict[Sample, float]:
    """node_ipvs_{connections,incoming_packets,...}_total from /proc/net/ip_vs_stats."""
    lines = proc_net_ip_vs_stats.split("\n", 3)
    fields = lines[2].split()
    names = ("connections", "incoming_packets", "outgoing_packets", "incoming_bytes")
    names += ("outgoing_bytes",)
    return {
        (f"node_ipvs_{name}_total", ()): float(int(value, 16))
        for name, value in zip(names, fields, strict=True)
    }
