"""The LVS half of the config: `virtual_servers:` and `ipvs:`.

keepalived's `virtual_server` / `real_server` blocks become YAML mappings
with the same words (`lb_algo` is `scheduler`, `lb_kind` is `forwarding`,
`persistence_timeout`, `quorum`, `hysteresis`, `sorry_server`,
`inhibit_on_failure`, `alpha`, `omega`, `uthreshold`, `lthreshold`), and
`lvs_sync_daemon` becomes `ipvs.sync_daemon`. Checks come from
healthcheck/config.py.

As in keepalived ("the virtual server setting is the default for real servers, and the
real server setting is the default for checkers"), the checker keywords `delay_loop`,
`connect_timeout`, `retry`, `delay_before_retry`, `warmup`, `alpha` and `virtualhost`
may be set on a virtual server or a real server: a check that does not set one takes its
real server's, else its virtual server's, else its own default.

`virtual_server_groups` (keepalived's virtual_server_group) name sets of addresses (one,
a range `192.0.2.1-10` / `192.0.2.250-192.0.2.255`, or a prefix `192.0.2.8/29`) with a
port, and fwmarks; a virtual server with `group:` is one IPVS service per member, all
with the same real servers and checks (one checker per real server, as keepalived).
"""

from __future__ import annotations

from collections.abc import Iterator
from ipaddress import IPv4Address, IPv6Address, ip_address, ip_network
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hacontrol.iptypes import IPAddress
from hacontrol.ipvs.model import PERSISTENCE_ENGINES, SCHEDULERS
from healthcheck.config import (
    CheckConfig,
    DnsCheck,
    FileCheck,
    HttpCheck,
    HttpsCheck,
    IcmpCheck,
    ScriptCheck,
    SmtpCheck,
    TcpCheck,
    UdpCheck,
    Warmup,
)

Port = Annotated[int, Field(ge=1, le=65535)]
Weight = Annotated[int, Field(ge=0, le=65535)]
# Lists are taken where tuples are declared (strict validation alone takes only tuples).
Argv = Annotated[tuple[Annotated[str, Field(min_length=1)], ...], Field(strict=False)]


class Frozen(BaseModel):
    """Every config section: immutable once validated, unknown keys are errors.

    Strict types: a quoted "150" is not a priority, 51 is not a name, "yes" is not a
    boolean (YAML's unquoted yes/no/true/false are), 2.0 is not a whole number, and no
    float field takes .inf or .nan. Addresses are written as strings (iptypes.py) and a
    tuple field takes a list.
    """

    model_config = ConfigDict(
        frozen=True, extra="forbid", str_strip_whitespace=True, strict=True, allow_inf_nan=False
    )


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


# Checker keywords a virtual server or real server may set for its checks (keepalived).
INHERITED_CHECK_KEYS = (
    "delay_loop",
    "connect_timeout",
    "retry",
    "delay_before_retry",
    "warmup",
    "alpha",
    "virtualhost",
)
_CHECK_FIELDS: dict[str, frozenset[str]] = {
    str(model.model_fields["type"].default): frozenset(model.model_fields)
    for model in (
        TcpCheck,
        HttpCheck,
        HttpsCheck,
        ScriptCheck,
        UdpCheck,
        DnsCheck,
        SmtpCheck,
        IcmpCheck,
        FileCheck,
    )
}
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]


def _inherited(raw: dict[Any, Any]) -> dict[str, Any]:
    return {k: raw[k] for k in INHERITED_CHECK_KEYS if k in raw}


def _pass_down(items: Any, values: dict[str, Any], accepts: Any) -> Any:
    """`items` (raw mappings, maybe a generator) with `values` filled in where unset.

    Copies, never changes, the raw items: YAML aliases may share them."""
    if not values or not isinstance(items, (list, tuple, Iterator)):
        return items

    def each() -> Iterator[Any]:
        for item in items:
            if isinstance(item, dict):
                missing = {k: v for k, v in values.items() if k not in item and accepts(item, k)}
                if missing:
                    item = {**item, **missing}
            yield item

    return each() if isinstance(items, Iterator) else tuple(each())


def _check_accepts(item: dict[Any, Any], key: str) -> bool:
    return key in _CHECK_FIELDS.get(str(item.get("type")), frozenset())


class _CheckDefaults(Frozen):
    """Defaults for the checks below (keepalived: virtual server, then real server)."""

    delay_loop: Seconds | None = None
    connect_timeout: Seconds | None = None
    retry: Annotated[int, Field(ge=0, le=100)] | None = None
    delay_before_retry: Seconds | None = None
    warmup: Warmup | None = None
    virtualhost: str | None = None


class RealServerConfig(_CheckDefaults):
    address: IPAddress
    # None: the virtual server's port; 0 only in an all-ports (port 0) service
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    weight: Weight = 1
    forwarding: Literal["DR", "TUN", "NAT"] | None = None  # None: the virtual server's
    tunnel_type: Literal["ipip", "gue", "gre"] = "ipip"
    tunnel_port: Annotated[int, Field(ge=0, le=65535)] = 0
    tunnel_checksum: Literal["nocsum", "csum", "remcsum"] = "nocsum"
    uthreshold: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    lthreshold: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    inhibit_on_failure: bool | None = None  # None: the virtual server's
    alpha: bool | None = None  # None: the virtual server's
    notify_up: Argv | None = None
    notify_down: Argv | None = None
    checks: tuple[CheckConfig, ...] = Field(default=(), strict=False)

    _upper_forwarding = field_validator("forwarding", mode="before")(_upper)

    @model_validator(mode="before")
    @classmethod
    def _defaults_to_checks(cls, value: Any) -> Any:
        if isinstance(value, dict) and "checks" in value:
            value = {
                **value,
                "checks": _pass_down(value["checks"], _inherited(value), _check_accepts),
            }
        return value

    @model_validator(mode="after")
    def _thresholds(self) -> RealServerConfig:
        if self.uthreshold and self.lthreshold > self.uthreshold:
            raise ValueError("lthreshold is above uthreshold (the kernel refuses it: ERANGE)")
        return self


class SorryServerConfig(Frozen):
    address: IPAddress
    port: Port | None = None
    weight: Weight = 1
    # keepalived's sorry_server_inhibit: keep it at weight 0 instead of removed
    inhibit: bool = False
    # keepalived's sorry_server_lvs_method; None: the virtual server's
    forwarding: Literal["DR", "TUN", "NAT"] | None = None

    _upper_forwarding = field_validator("forwarding", mode="before")(_upper)


class GroupMember(Frozen):
    """One line of a virtual_server_group: addresses with a port, or a fwmark."""

    address: str | None = None  # one address, a range A-B / A.B.C.D-E, or a prefix A/N
    port: Annotated[int, Field(ge=0, le=65535)] | None = None  # None or 0: all ports
    fwmark: Annotated[int, Field(ge=1, le=2**32 - 1)] | None = None
    family: Literal[4, 6] = 4  # for fwmark members only

    @model_validator(mode="after")
    def _one_kind(self) -> GroupMember:
        if (self.address is None) == (self.fwmark is None):
            raise ValueError("a group member has an address (and port) or a fwmark")
        if self.fwmark is not None and self.port is not None:
            raise ValueError("a fwmark member has no port")
        if self.address is not None:
            count = len(group_addresses(self.address))
            if count > MAX_GROUP_ADDRESSES:
                raise ValueError(
                    f"{self.address} is {count} addresses; at most {MAX_GROUP_ADDRESSES}"
                )
        return self

    def addresses(self) -> list[IPv4Address | IPv6Address]:
        return [] if self.address is None else group_addresses(self.address)


MAX_GROUP_ADDRESSES = 65536


def group_addresses(text: str) -> list[IPv4Address | IPv6Address]:
    """keepalived's VIP range forms: `192.0.2.1-10` (last part), `A-B`, `A/N`; or one."""
    try:
        if "/" in text:
            net = ip_network(text, strict=False)
            if net.num_addresses > MAX_GROUP_ADDRESSES:
                return [net.network_address] * (MAX_GROUP_ADDRESSES + 1)
            return list(net)
        if "-" not in text:
            return [ip_address(text)]
        first_text, last_text = text.split("-", 1)
        first = ip_address(first_text)
        if ("." in last_text and first.version == 4) or (":" in last_text and first.version == 6):
            last = ip_address(last_text)
        else:
            # The last part only: a decimal byte for IPv4, a hex group for IPv6.
            if first.version == 4:
                head = str(first).rsplit(".", 1)[0]
                last = ip_address(f"{head}.{int(last_text, 10)}")
            else:
                value = int(last_text, 16)
                if not 0 <= value <= 0xFFFF:
                    raise ValueError(last_text)
                last = ip_address((int(first) & ~0xFFFF) | value)
    except ValueError:
        raise ValueError(
            f"{text!r} is not an address, a range (192.0.2.1-10) or a prefix (192.0.2.8/29)"
        ) from None
    if last.version != first.version or int(last) < int(first):
        raise ValueError(f"range {text!r} ends before it starts")
    count = int(last) - int(first) + 1
    if count > MAX_GROUP_ADDRESSES:
        return [first] * (MAX_GROUP_ADDRESSES + 1)
    return [ip_address(int(first) + i) for i in range(count)]


class VirtualServerGroupConfig(Frozen):
    """keepalived's virtual_server_group NAME { members }."""

    name: str = Field(min_length=1, max_length=64)
    members: tuple[GroupMember, ...] = Field(min_length=1, strict=False)


class VirtualServerConfig(_CheckDefaults):
    name: str | None = Field(default=None, min_length=1, max_length=64)
    group: str | None = Field(default=None, min_length=1, max_length=64)  # virtual_server_group
    address: IPAddress | None = None
    port: Annotated[int, Field(ge=0, le=65535)] | None = None
    protocol: Literal["TCP", "UDP", "SCTP"] = "TCP"
    fwmark: Annotated[int, Field(ge=1, le=2**32 - 1)] | None = None
    family: Literal[4, 6] = 4  # for fwmark services only
    scheduler: str = "wlc"  # ipvsadm's default
    sched_flags: tuple[str, ...] = Field(default=(), strict=False)
    ops: bool = False  # one-packet scheduling
    forwarding: Literal["DR", "TUN", "NAT"] = "DR"  # ipvsadm's default (gatewaying)
    persistence_timeout: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    persistence_granularity: str | None = None  # IPv4 netmask, or IPv6 prefix length
    persistence_engine: str | None = None
    quorum: Annotated[int, Field(ge=1)] = 1
    hysteresis: Annotated[int, Field(ge=0)] = 0
    quorum_up: Argv | None = None
    quorum_down: Argv | None = None
    sorry_server: SorryServerConfig | None = None
    inhibit_on_failure: bool = False
    alpha: bool = False
    omega: bool = False
    # keepalived's ha_suspend: the checks run only while this director holds the
    # service's address (it is VRRP master for it); a backup does not probe.
    ha_suspend: bool = False
    drain_timeout: Annotated[float, Field(ge=0, le=86400)] = 300.0
    real_servers: tuple[RealServerConfig, ...] = Field(default=(), strict=False)

    _upper_protocol = field_validator("protocol", "forwarding", mode="before")(_upper)

    @field_validator("scheduler")
    @classmethod
    def _known_scheduler(cls, value: str) -> str:
        if value not in SCHEDULERS:
            raise ValueError(f"unknown scheduler {value!r}; one of {', '.join(sorted(SCHEDULERS))}")
        return value

    @field_validator("persistence_engine")
    @classmethod
    def _known_engine(cls, value: str | None) -> str | None:
        if value is not None and value not in PERSISTENCE_ENGINES:
            raise ValueError(f"unknown persistence engine {value!r} (known: sip)")
        return value

    @model_validator(mode="before")
    @classmethod
    def _defaults_to_real_servers(cls, value: Any) -> Any:
        if isinstance(value, dict) and "real_servers" in value:
            values = _inherited(value)
            value = {
                **value,
                "real_servers": _pass_down(value["real_servers"], values, lambda _i, _k: True),
            }
        return value

    @model_validator(mode="after")
    def _key(self) -> VirtualServerConfig:
        if self.group is not None:
            if self.address is not None or self.port is not None or self.fwmark is not None:
                raise ValueError("a virtual server of a group has no address, port or fwmark")
        elif self.fwmark is None:
            if self.address is None or self.port is None:
                raise ValueError("a virtual server needs address and port, or fwmark, or group")
            if self.port == 0 and self.persistence_timeout is None:
                raise ValueError(
                    "port 0 (all ports) needs persistence_timeout, as in ipvsadm and keepalived"
                )
        elif self.address is not None or self.port is not None:
            raise ValueError("a fwmark virtual server has no address or port")
        if self.hysteresis >= self.quorum and self.hysteresis:
            raise ValueError("hysteresis must be below quorum")
        return self

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
        if self.group is not None:
            return f"{self.protocol} group {self.group}"
        if self.fwmark is not None:
            return f"FWM {self.fwmark}" + (" IPv6" if self.family == 6 else "")
        addr = f"[{self.address}]" if getattr(self.address, "version", 4) == 6 else self.address
        return f"{self.protocol} {addr}:{self.port}"


class TimeoutsConfig(Frozen):
    """`ipvsadm --set tcp tcpfin udp`; 0 leaves the kernel's value unchanged."""

    tcp: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    tcpfin: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    udp: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0


class SysctlsConfig(Frozen):
    """net.ipv4.vs.* the daemon sets; None leaves the kernel's value alone."""

    # 1: a removed real server's connections are expired at once, so clients
    # reconnect to a live one instead of timing out.
    expire_nodest_conn: Literal[0, 1] | None = 1
    # 1: persistence templates of a quiescent (weight 0) server expire, so
    # persistent clients move off it.
    expire_quiescent_template: Literal[0, 1] | None = 1
    conntrack: Literal[0, 1] | None = None
    conn_reuse_mode: Literal[0, 1, 2, 3] | None = None
    sync_version: Literal[0, 1] | None = None


class SyncDaemonSection(Frozen):
    """keepalived's `lvs_sync_daemon INTERFACE VRRP_INSTANCE [id N] ...`."""

    interface: str = Field(min_length=1, max_length=15)
    # The VRRP instance whose state it follows, or (hacontrol) a sync group: master while
    # the group is MASTER. Exactly one of the two.
    vrrp_instance: str | None = Field(default=None, min_length=1)
    vrrp_sync_group: str | None = Field(default=None, min_length=1)
    syncid: Annotated[int, Field(ge=0, le=255)] = 0
    maxlen: Annotated[int, Field(ge=0, le=65535)] = 0  # 0: the kernel's default
    group: IPAddress | None = None  # multicast group; None: 224.0.0.81 (the kernel's)
    port: Port = 8848
    ttl: Annotated[int, Field(ge=1, le=255)] = 1

    @model_validator(mode="after")
    def _one_leader(self) -> SyncDaemonSection:
        if (self.vrrp_instance is None) == (self.vrrp_sync_group is None):
            raise ValueError("give exactly one of vrrp_instance and vrrp_sync_group")
        return self

    @property
    def follows(self) -> str:
        """What the role follows, for status and logs: `NAME` or `group NAME`."""
        if self.vrrp_sync_group is not None:
            return f"group {self.vrrp_sync_group}"
        assert self.vrrp_instance is not None
        return self.vrrp_instance


class IpvsSection(Frozen):
    timeouts: TimeoutsConfig = TimeoutsConfig()
    sysctls: SysctlsConfig = SysctlsConfig()
    sync_daemon: SyncDaemonSection | None = None
    reconcile_interval: Annotated[float, Field(ge=0.1, le=3600)] = 5.0
    # Delete services in the kernel that the config does not name. Off by
    # default: another tool's services are not ours to remove.
    purge_unowned: bool = False
