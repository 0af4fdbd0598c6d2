"""The YAML configuration: parsed, validated and frozen before anything runs.

Every error is reported at once with its file, line and key
(`hacontrol.yaml:14: vrrp_instances[0].priority: ...`), and nothing touches
the network or the kernel until the whole file is valid. Names follow
keepalived's keywords where keepalived has one (`virtual_ipaddresses`,
`unicast_peers`, `garp_master_delay`, `nopreempt`, `preempt_delay`, ...).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hacontrol.config_lvs import Frozen, IpvsSection, VirtualServerConfig
from hacontrol.iptypes import IPAddress, IPInterface
from hacontrol.yamlsrc import SourceIssue, load_yaml
from vrrp.types import AuthType, GarpSettings

# keepalived's defaults, so an imported config behaves the same.
DEFAULT_PRIORITY = 100
DEFAULT_ADVERT_INT = 1.0


class ConfigError(Exception):
    """The config file is not valid; `issues` lists every problem found."""

    def __init__(self, issues: Sequence[SourceIssue]) -> None:
        self.issues = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))


class VirtualIP(Frozen):
    """One VIP: `192.0.2.10/24`, or a mapping with a keepalived-style label."""

    address: IPInterface
    label: str | None = Field(default=None, min_length=1, max_length=15)

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"address": value}
        return value


class Authentication(Frozen):
    """VRRPv2 simple password (keepalived `auth_type PASS`), for interop only.

    It protects nothing on the wire (RFC 5798 §9 removed it for that reason),
    but a keepalived peer configured with it drops adverts that lack it.
    """

    auth_type: Literal["PASS"] = "PASS"
    auth_pass: str = Field(min_length=1)

    @field_validator("auth_pass")
    @classmethod
    def _eight_bytes(cls, value: str) -> str:
        if len(value.encode()) > 8:
            raise ValueError(
                "auth_pass is at most 8 bytes: VRRPv2 carries 8 (keepalived would "
                "silently truncate it, and the peers would then disagree)"
            )
        return value


class VrrpInstanceConfig(Frozen):
    name: str = Field(min_length=1, max_length=64)
    interface: str = Field(min_length=1, max_length=15)
    vrid: int = Field(ge=1, le=255, validation_alias="virtual_router_id")
    version: Literal[2, 3] | None = None  # default: 2 for IPv4 (keepalived's), 3 for IPv6
    priority: int = Field(default=DEFAULT_PRIORITY, ge=1, le=255)
    advert_int: float = Field(default=DEFAULT_ADVERT_INT, gt=0)
    virtual_ipaddresses: tuple[VirtualIP, ...] = Field(min_length=1)
    # keepalived's virtual_ipaddress_excluded: held by the master, never in adverts.
    virtual_ipaddresses_excluded: tuple[VirtualIP, ...] = Field(
        default=(),
        validation_alias=AliasChoices("virtual_ipaddresses_excluded", "virtual_ipaddress_excluded"),
    )
    preempt: bool = True
    nopreempt: bool | None = None
    preempt_delay: float = Field(default=0.0, ge=0, le=1000)
    accept: bool = False
    unicast_src_ip: IPAddress | None = None
    unicast_peers: tuple[IPAddress, ...] = ()
    # TTL / Hop Limit sent to unicast peers; unset: 255 (keepalived: 255 over IPv4, the
    # kernel's hop limit, 64, over IPv6; see the README).
    unicast_ttl: int | None = Field(default=None, ge=1, le=255)
    # keepalived's receive checks in unicast mode, off unless set: the TTL / Hop Limit of
    # unicast adverts, and that they come from a unicast peer (min/max_ttl imply it).
    min_ttl: int | None = Field(default=None, ge=0, le=255)
    max_ttl: int | None = Field(default=None, ge=0, le=255)
    check_unicast_src: bool = False
    authentication: Authentication | None = None
    garp_master_delay: float = Field(default=5.0, ge=0, le=3600)
    garp_master_repeat: int = Field(default=5, ge=1, le=255)
    garp_master_refresh: float = Field(default=0.0, ge=0, le=86400)
    garp_master_refresh_repeat: int = Field(default=1, ge=1, le=255)
    garp_lower_prio_repeat: int = Field(default=5, ge=0, le=255)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _consistent(self) -> VrrpInstanceConfig:
        families = {vip.address.version for vip in self.virtual_ipaddresses}
        if len(families) > 1:
            raise ValueError(
                "virtual_ipaddresses mixes IPv4 and IPv6: one VRRP instance announces "
                "one family (RFC 5798 §5.2.9); use two instances"
            )
        family = families.pop()
        advertised = {vip.address.ip for vip in self.virtual_ipaddresses}
        twice = [
            str(v.address) for v in self.virtual_ipaddresses_excluded if v.address.ip in advertised
        ]
        if twice:
            raise ValueError(
                f"{', '.join(twice)} in both virtual_ipaddresses and virtual_ipaddresses_excluded"
            )
        version = self.effective_version
        if family == 6 and version == 2:
            raise ValueError("VRRPv2 (RFC 3768) is IPv4 only: use version 3 for IPv6")
        if version == 2:
            if self.advert_int != int(self.advert_int) or not 1 <= self.advert_int <= 255:
                raise ValueError(
                    "advert_int for VRRPv2 is whole seconds 1-255 "
                    f"(got {self.advert_int}); use version 3 for sub-second intervals"
                )
        else:
            centis = round(self.advert_int * 100)
            if abs(centis - self.advert_int * 100) > 1e-6 or not 1 <= centis <= 4095:
                raise ValueError(
                    "advert_int for VRRPv3 is 0.01-40.95 s in steps of 0.01 s "
                    f"(got {self.advert_int})"
                )
            if self.authentication is not None:
                raise ValueError("authentication exists only in VRRPv2 (RFC 5798 §9 removed it)")
        for addr in (self.unicast_src_ip, *self.unicast_peers):
            if addr is not None and addr.version != family:
                raise ValueError(f"unicast address {addr} is not IPv{family} like the VIPs")
        if self.unicast_src_ip is not None and not self.unicast_peers:
            raise ValueError("unicast_src_ip is set but unicast_peers is empty")
        unicast_only = [
            key for key in ("unicast_ttl", "min_ttl", "max_ttl") if getattr(self, key) is not None
        ] + (["check_unicast_src"] if self.check_unicast_src else [])
        if unicast_only and not self.unicast_peers:
            raise ValueError(
                f"{', '.join(unicast_only)} apply to unicast mode only, and unicast_peers is "
                "empty (adverts to the multicast group always carry TTL 255)"
            )
        if self.min_ttl is not None and self.max_ttl is not None and self.min_ttl > self.max_ttl:
            raise ValueError(f"min_ttl {self.min_ttl} is above max_ttl {self.max_ttl}")
        # `preempt: true` is the default; only an explicit contradiction is an error.
        if (
            self.nopreempt is not None
            and self.nopreempt == self.preempt
            and "preempt" in self.model_fields_set
        ):
            raise ValueError("preempt and nopreempt contradict each other")
        if self.preempt_delay and not self.preempt_mode:
            raise ValueError("preempt_delay has no effect with nopreempt")
        return self

    @property
    def family(self) -> int:
        return self.virtual_ipaddresses[0].address.version

    @property
    def effective_version(self) -> int:
        if self.version is not None:
            return self.version
        return 3 if self.virtual_ipaddresses[0].address.version == 6 else 2

    @property
    def preempt_mode(self) -> bool:
        if self.nopreempt is not None:
            return not self.nopreempt
        return self.preempt

    @property
    def advert_int_centis(self) -> int:
        return round(self.advert_int * 100)

    @property
    def auth_type(self) -> AuthType:
        return AuthType.NONE if self.authentication is None else AuthType.SIMPLE

    @property
    def auth_data(self) -> bytes:
        return b"" if self.authentication is None else self.authentication.auth_pass.encode()

    @property
    def garp(self) -> GarpSettings:
        return GarpSettings(
            master_repeat=self.garp_master_repeat,
            master_delay=self.garp_master_delay,
            master_refresh=self.garp_master_refresh,
            master_refresh_repeat=self.garp_master_refresh_repeat,
            lower_prio_repeat=self.garp_lower_prio_repeat,
        )


class GlobalConfig(Frozen):
    router_id: str | None = None
    # Prometheus endpoint, "HOST:PORT"; None disables it.
    metrics_listen: str | None = "127.0.0.1:9650"

    @field_validator("metrics_listen")
    @classmethod
    def _host_port(cls, value: str | None) -> str | None:
        if value is None:
            return value
        host, sep, port = value.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"metrics_listen must be HOST:PORT, got {value!r}")
        return value

    @property
    def metrics_address(self) -> tuple[str, int] | None:
        if self.metrics_listen is None:
            return None
        host, _, port = self.metrics_listen.rpartition(":")
        return host.strip("[]"), int(port)


class Config(Frozen):
    global_: GlobalConfig = Field(default_factory=GlobalConfig, alias="global")
    vrrp_instances: tuple[VrrpInstanceConfig, ...] = ()
    virtual_servers: tuple[VirtualServerConfig, ...] = ()
    ipvs: IpvsSection = IpvsSection()

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    @model_validator(mode="after")
    def _unique(self) -> Config:
        names: set[str] = set()
        routers: dict[tuple[str, int, int], str] = {}
        problems: list[str] = []
        for inst in self.vrrp_instances:
            if inst.name in names:
                problems.append(f"vrrp instance name {inst.name!r} is used twice")
            names.add(inst.name)
            # RFC 5798 §7.3: a VRID is unique per LAN and family; two of ours
            # on one interface would answer each other's adverts.
            key = (inst.interface, inst.family, inst.vrid)
            if key in routers:
                problems.append(
                    f"instances {routers[key]!r} and {inst.name!r} both use vrid {inst.vrid} "
                    f"for IPv{inst.family} on {inst.interface}"
                )
            routers[key] = inst.name
        problems.extend(self._lvs_problems(names))
        if problems:
            raise ValueError("; ".join(problems))
        return self

    def _lvs_problems(self, vrrp_names: set[str]) -> list[str]:
        problems: list[str] = []
        sync = self.ipvs.sync_daemon
        if sync is not None and sync.vrrp_instance not in vrrp_names:
            problems.append(
                f"ipvs.sync_daemon.vrrp_instance {sync.vrrp_instance!r} is not a vrrp instance"
            )
        seen: set[str] = set()
        for vs in self.virtual_servers:
            name = vs.display_name
            if name in seen:
                problems.append(f"virtual server {name!r} is given twice")
            seen.add(name)
            family = vs.family if vs.address is None else vs.address.version
            servers: set[tuple[Any, Any]] = set()
            for rs in vs.real_servers:
                key = (rs.address, rs.port)
                if key in servers:
                    problems.append(f"{name}: real server {rs.address} port {rs.port} given twice")
                servers.add(key)
                forwarding = rs.forwarding or vs.forwarding
                # The kernel takes a real server of the other family only for
                # tunnelling (IPv4-in-IPv6 and back).
                if rs.address.version != family and forwarding != "TUN":
                    problems.append(
                        f"{name}: real server {rs.address} is IPv{rs.address.version} but the "
                        f"service is IPv{family} (only TUN forwarding can mix families)"
                    )
            if vs.sorry_server is not None and vs.sorry_server.address.version != family:
                problems.append(f"{name}: sorry_server is not IPv{family}")
        return problems


def parse_config(text: str, filename: str = "<config>") -> Config:
    """Validate `text`; raise ConfigError listing every problem with its line."""
    loaded = load_yaml(text, filename)
    if loaded.data is None and loaded.issues:
        raise ConfigError(loaded.issues)
    data = loaded.data if loaded.data is not None else {}
    issues = list(loaded.issues)
    if not isinstance(data, dict):
        issues.append(SourceIssue(filename, 1, (), "the top level must be a mapping"))
        raise ConfigError(issues)
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        failed = [tuple(e["loc"]) for e in errors]
        for err in errors:
            loc = tuple(err["loc"])
            if err["type"] == "too_short" and any(
                len(f) > len(loc) and f[: len(loc)] == loc for f in failed
            ):
                continue  # only short because an item failed: that item's error says why
            issues.append(
                SourceIssue(filename, loaded.line_of(loc), _clean_loc(loc), _message(err))
            )
        raise ConfigError(_sorted(issues)) from None
    # What the IPVS model refuses (a DR real server on another port, ...), named
    # by the layer that would refuse it. Imported here: hacontrol.lvs builds on
    # this module.
    from hacontrol.lvs import model_problems

    for index, message in model_problems(config):
        path = ("virtual_servers", index)
        issues.append(SourceIssue(filename, loaded.line_of(path), path, message))
    if issues:
        raise ConfigError(_sorted(issues))
    return config


def _sorted(issues: list[SourceIssue]) -> list[SourceIssue]:
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0))


def load_config(path: str | Path) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            [SourceIssue(str(path), None, (), f"cannot read: {exc.strerror}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([SourceIssue(str(path), None, (), f"not UTF-8: {exc}")]) from None
    return parse_config(text, str(path))


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # pydantic names union branches in paths ("function-after[...]", "str");
    # the operator only cares about the keys they wrote.
    return tuple(p for p in loc if isinstance(p, int) or "[" not in str(p))


def _message(err: Any) -> str:
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if err["type"] == "extra_forbidden":
        msg = "unknown key"
    elif err["type"] == "missing":
        msg = "required key is missing"
    return msg
