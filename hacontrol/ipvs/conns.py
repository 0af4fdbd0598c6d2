"""The IPVS connection table: parse /proc/net/ip_vs_conn, print it like `ipvsadm -Lnc`.

The kernel's format (net/netfilter/ipvs/ip_vs_conn.c, ip_vs_conn_seq_show):

    Pro FromIP   FPrt ToIP     TPrt DestIP   DPrt State       Expires PEName PEData
    TCP C0000201 DDAE C0000201 0050 C6336402 1F90 SYN_RECV         59
    TCP 2001:0db8:0000:0000:0000:0000:0000:0001 DC30 ... 1F90 SYN_RECV         59

IPv4 addresses are 8 hex digits (host order of ntohl, i.e. the dotted quad read
left to right), IPv6 ones are %pI6 (eight full groups with colons), ports are
4 hex digits, "Expires" is whole seconds, and a connection with persistence
engine data ends with " <pe name> <pe data>". The destination may be of
another family than the client and virtual address (IPv4 service, IPv6 tunnel
destination), so each address is read on its own.

Templates (persistence) appear as ordinary lines with state NONE; fwmark
templates have protocol "IP".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv6Address
from pathlib import Path

IPVS_CONN_FILE = Path("/proc/net/ip_vs_conn")

IPAddress = IPv4Address | IPv6Address


class ConnTableError(Exception):
    """A line of the connection table could not be parsed."""

    def __init__(self, line_no: int, line: str, reason: str) -> None:
        self.line_no = line_no
        self.line = line
        self.reason = reason
        super().__init__(f"ip_vs_conn line {line_no}: {reason}: {line!r}")


@dataclass(frozen=True, slots=True)
class Connection:
    """One entry of the IPVS connection table (a connection or a template)."""

    protocol: str  # "TCP", "UDP", "SCTP", "IP" (fwmark template), ...
    client: IPAddress
    client_port: int
    virtual: IPAddress
    virtual_port: int
    destination: IPAddress
    destination_port: int
    state: str  # "ESTABLISHED", "SYN_RECV", "FIN_WAIT", "UDP", "NONE", ...
    expires: int  # seconds until the entry expires
    pe_name: str | None = None  # persistence engine ("sip"), when one is bound
    pe_data: str | None = None


def _address(text: str) -> IPAddress:
    if ":" in text:
        return IPv6Address(text)
    if len(text) != 8:
        raise ValueError(f"bad IPv4 field {text!r}")
    return IPv4Address(int(text, 16))


def _port(text: str) -> int:
    if len(text) != 4:
        raise ValueError(f"bad port field {text!r}")
    return int(text, 16)


def parse_line(line: str, line_no: int = 0) -> Connection:
    parts = line.split()
    if len(parts) not in (9, 11):
        raise ConnTableError(line_no, line, f"expected 9 or 11 fields, got {len(parts)}")
    try:
        return Connection(
            protocol=parts[0],
            client=_address(parts[1]),
            client_port=_port(parts[2]),
            virtual=_address(parts[3]),
            virtual_port=_port(parts[4]),
            destination=_address(parts[5]),
            destination_port=_port(parts[6]),
            state=parts[7],
            expires=int(parts[8]),
            pe_name=parts[9] if len(parts) == 11 else None,
            pe_data=parts[10] if len(parts) == 11 else None,
        )
    except ValueError as e:
        raise ConnTableError(line_no, line, str(e)) from None


def parse_connections(text: str) -> list[Connection]:
    """Every entry of a /proc/net/ip_vs_conn dump, in the kernel's order."""
    conns = []
    for line_no, line in enumerate(text.splitlines(), start=1):
        if line_no == 1 and line.startswith("Pro "):
            continue
        if not line.strip():
            continue
        conns.append(parse_line(line, line_no))
    return conns


def read_connections(path: Path = IPVS_CONN_FILE) -> list[Connection]:
    """The connection table of this process's network namespace.

    Raises FileNotFoundError when ip_vs is not loaded (no such proc file).
    """
    return parse_connections(path.read_text())


def _endpoint(address: IPAddress, port: int) -> str:
    # ipvsadm's addrport_to_anyname() with -n: brackets around IPv6.
    if address.version == 6:
        return f"[{address}]:{port}"
    return f"{address}:{port}"


def _expire(seconds: int) -> str:
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


def format_connections(conns: Sequence[Connection], persistent: bool = False) -> str:
    """Exactly what `ipvsadm -Lnc` prints (`--persistent-conn` adds the pe columns).

    ipvsadm 1.31: header "pro expire %-11s %-18s %-18s %s", then per entry
    "%-3s %-6s %-11s %-18s %-18s %s" with expire as MM:SS.
    """
    out = ["IPVS connection entries\n"]
    if persistent:
        out.append(
            f"pro expire {'state':<11} {'source':<18} {'virtual':<18} {'destination':<18}"
            f" {'pe name':<16} pe_data\n"
        )
    else:
        out.append(f"pro expire {'state':<11} {'source':<18} {'virtual':<18} destination\n")
    for c in conns:
        source = _endpoint(c.client, c.client_port)
        virtual = _endpoint(c.virtual, c.virtual_port)
        dest = _endpoint(c.destination, c.destination_port)
        head = f"{c.protocol:<3} {_expire(c.expires):<6} {c.state:<11} {source:<18} {virtual:<18}"
        if persistent and c.pe_name is not None:
            out.append(f"{head} {dest:<16} {c.pe_name:<18} {c.pe_data}\n")
        else:
            out.append(f"{head} {dest}\n")
    return "".join(out)
