"""The LVS half of the config: `virtual_servers:` and `ipvs:`.

keepalived's `virtual_server` / `real_server` blocks become YAML mappings
with the same words (`lb_algo` is `scheduler`, `lb_kind` is `forwarding`,
`persistence_timeout`, `quorum`, `hysteresis`, `sorry_server`,
`inhibit_on_failure`, `alpha`, `omega`, `uthreshold`, `lthreshold`), and
`lvs_sync_daemon` becomes `ipvs.sync_daemon`. Checks come from
healthcheck/config.py.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hacontrol.iptypes import IPAddress
from hacontrol.ipvs.model import PERSISTENCE_ENGINES, SCHEDULERS
from healthcheck.config import CheckConfig

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


class RealServerConfig(Frozen):
    address: IPAddress
    port: Port | None = None  # None: the virtual server's port
    weight: Weight = 1
    forwarding: Literal["DR", "TUN", "NAT"] | None = None  # None: the virtual server's
    tunnel_type: Literal["ipip", "gue", "gre"] = "ipip"
    tunnel_port: Annotated[int, Field(ge=0, le=65535)] = 0
    tunnel_checksum: Literal["nocsum", "csum", "remcsum"] = "nocsum"
    uthreshold: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    lthreshold: Annotated[int, Field(ge=0, le=2**31 - 1)] = 0
    inhibit_on_failure: bool | None = None  # None: the virtual server's
    notify_up: Argv | None = None
    notify_down: Argv | None = None
    checks: tuple[CheckConfig, ...] = Field(default=(), strict=False)

    _upper_forwarding = field_validator("forwarding", mode="before")(_upper)

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


class VirtualServerConfig(Frozen):
    name: str | None = Field(default=None, min_length=1, max_length=64)
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

    @model_validator(mode="after")
    def _key(self) -> VirtualServerConfig:
        if self.fwmark is None:
            if self.address is None or self.port is None:
                raise ValueError("a virtual server needs address and port, or fwmark")
            if self.port == 0:
                raise ValueError("port 0 is only for fwmark services")
        elif self.address is not None or self.port is not None:
            raise ValueError("a fwmark virtual server has no address or port")
        if self.hysteresis >= self.quorum and self.hysteresis:
            raise ValueError("hysteresis must be below quorum")
        return self

    @property
    def display_name(self) -> str:
        if self.name:
            return self.name
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
