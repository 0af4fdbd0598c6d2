"""The YAML configuration: parsed, validated and frozen before anything runs.

Every error is reported at once with its file, line and key
(`hacontrol.yaml:14: vrrp_instances[0].priority: ...`), and nothing touches
the network or the kernel until the whole file is valid. Names follow
keepalived's keywords where keepalived has one (`virtual_ipaddresses`,
`unicast_peers`, `garp_master_delay`, `nopreempt`, `preempt_delay`, ...).
"""

from __future__ import annotations

import contextlib
import gc
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from hacontrol.config_checks import ERROR_CHECKS, NOTHING_TO_DO, WARNING_CHECKS, findings
from hacontrol.config_hints import (
    KEEPALIVED_SPELLINGS,
    did_you_mean,
    model_at,
    unknown_key_message,
)
from hacontrol.config_lvs import (
    Frozen,
    IpvsSection,
    VirtualServerConfig,
    VirtualServerGroupConfig,
)
from hacontrol.config_track import (
    DEFAULT_NOTIFY_TIMEOUT,
    ScriptArgv,
    SyncGroupConfig,
    TrackFileConfig,
    TrackFileRef,
    TrackInterfaceRef,
    TrackProcessConfig,
    TrackProcessRef,
    TrackScriptRef,
    VrrpScriptConfig,
    one_word_name,
    script_argv,
)
from hacontrol.iptypes import IPAddress, IPInterface, IPNetwork
from hacontrol.yamlinclude import IncludedYaml, resolve_includes
from hacontrol.yamlsrc import LoadedYaml, SourceIssue, load_yaml, read_yaml_file
from vrrp.types import AuthType, GarpSettings
from vrrp.vmac import default_vmac_name, vmac_name_problem

# keepalived's defaults, so an imported config behaves the same.
DEFAULT_PRIORITY = 100
DEFAULT_ADVERT_INT = 1.0
# Lines kept for a notify FIFO whose reader is absent or slow (keepalived leaves them in
# the pipe, 64 KiB: about as many lines).
DEFAULT_NOTIFY_FIFO_BUFFER = 1024


def _fifo_path(value: str | None) -> str | None:
    if value is None:
        return value
    if not value.startswith("/"):
        raise ValueError(f"a FIFO is an absolute path, got {value!r}")
    if "\0" in value or len(value) > 4095:
        raise ValueError("not a usable path (NUL byte, or longer than PATH_MAX)")
    return value


class ConfigError(Exception):
    """The config file is not valid; `issues` lists every problem found."""

    def __init__(self, issues: Sequence[SourceIssue]) -> None:
        self.issues = list(issues)  # errors, and any warnings found with them
        super().__init__("\n".join(str(i) for i in self.issues))

    @property
    def errors(self) -> list[SourceIssue]:
        return [i for i in self.issues if i.severity == "error"]


IfName = Annotated[str, Field(min_length=1, max_length=15)]
Scope = Literal["global", "site", "link", "host", "nowhere"]  # ip-address(8)'s names
UINT32_MAX = 2**32 - 1


class VirtualIP(Frozen):
    """One VIP: `192.0.2.10/24`, or a mapping with keepalived's per-address options
    (`ADDRESS [dev IF] [scope S] [brd B] [label L] [no_track]`)."""

    address: IPInterface
    label: str | None = Field(default=None, min_length=1, max_length=15)
    # Another interface than the instance's (the inside gateway address of a NAT pair).
    dev: IfName | None = None
    scope: Scope | None = None
    brd: IPAddress | None = None
    # Neither repaired when deleted by hand nor its dev tracked (keepalived's meaning).
    no_track: bool = False

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        if isinstance(value, str):
            return {"address": value}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VirtualIP:
        if self.brd is not None and (self.address.version != 4 or self.brd.version != 4):
            raise ValueError("brd (a broadcast address) is for IPv4 addresses only")
        return self


class VirtualRouteConfig(Frozen):
    """keepalived's virtual_routes entry, as `ip route add` takes it: held by the master.

    `to: default` is 0.0.0.0/0 (::/0 with an IPv6 `via` or `src`, or `inet6: true`).
    """

    to: IPNetwork
    via: IPAddress | None = Field(default=None, validation_alias=AliasChoices("via", "gw"))
    dev: IfName | None = None
    src: IPAddress | None = None
    metric: int | None = Field(
        default=None,
        ge=0,
        le=UINT32_MAX,
        validation_alias=AliasChoices("metric", "preference", "priority"),
    )
    table: int | None = Field(default=None, ge=1, le=UINT32_MAX)
    scope: Scope | None = None
    type: Literal["unicast", "blackhole", "unreachable", "prohibit"] = "unicast"
    inet6: bool = False  # keepalived's keyword to make `default` IPv6
    no_track: bool = False

    model_config = ConfigDict(populate_by_name=True)

    @model_validator(mode="before")
    @classmethod
    def _default_route(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("to") == "default":
            hints = [value.get(k) for k in ("via", "gw", "src")]
            six = value.get("inet6") is True or any(isinstance(h, str) and ":" in h for h in hints)
            return {**value, "to": "::/0" if six else "0.0.0.0/0"}
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VirtualRouteConfig:
        for key in ("via", "src"):
            address = getattr(self, key)
            if address is not None and address.version != self.to.version:
                raise ValueError(f"{key} {address} is not IPv{self.to.version} like {self.to}")
        if self.inet6 and self.to.version != 6:
            raise ValueError(f"inet6 is set but {self.to} is IPv4")
        if self.type != "unicast" and self.via is not None:
            raise ValueError(f"a {self.type} route has no gateway (via)")
        return self


class VirtualRuleConfig(Frozen):
    """keepalived's virtual_rules entry, as `ip rule add` takes it: held by the master.

    A rule with neither `from` nor `to` is IPv4 unless `inet6: true` (keepalived's rule).
    Without a `priority` keepalived gives one (16384, then 16383, ... per family, in file
    order) and warns; so does hacontrol.
    """

    from_: IPNetwork | None = Field(default=None, alias="from")
    to: IPNetwork | None = None
    table: int = Field(ge=1, le=UINT32_MAX)
    priority: int | None = Field(
        default=None,
        ge=1,
        le=UINT32_MAX,
        validation_alias=AliasChoices("priority", "preference", "pref"),
    )
    fwmark: int | str | None = None  # MARK or "MARK/MASK", decimal or 0x hex
    inet6: bool = False
    no_track: bool = False

    model_config = ConfigDict(populate_by_name=True)

    @field_validator("fwmark")
    @classmethod
    def _fwmark(cls, value: int | str | None) -> int | str | None:
        if value is not None:
            _parse_fwmark(value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> VirtualRuleConfig:
        versions = {n.version for n in (self.from_, self.to) if n is not None}
        if len(versions) > 1:
            raise ValueError(f"from {self.from_} and to {self.to} are of different families")
        if self.inet6 and versions == {4}:
            raise ValueError("inet6 is set but the rule's prefixes are IPv4")
        return self

    @property
    def family(self) -> int:
        for network in (self.from_, self.to):
            if network is not None:
                return network.version
        return 6 if self.inet6 else 4

    @property
    def fwmark_and_mask(self) -> tuple[int | None, int | None]:
        return _parse_fwmark(self.fwmark) if self.fwmark is not None else (None, None)


def _parse_fwmark(value: int | str) -> tuple[int, int | None]:
    """`7`, `"0x7"` or `"0x7/0xff"` -> (mark, mask or None); ValueError says why not."""
    if isinstance(value, int):
        mark, mask = value, None
    else:
        text, _, mask_text = value.partition("/")
        try:
            mark = int(text, 0)
            mask = int(mask_text, 0) if mask_text else None
        except ValueError:
            raise ValueError(f"fwmark {value!r} is not MARK or MARK/MASK (numbers)") from None
    for number in (mark, mask):
        if number is not None and not 0 <= number <= UINT32_MAX:
            raise ValueError(f"fwmark {value!r}: marks and masks are 0..{UINT32_MAX}")
    return mark, mask


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
    virtual_ipaddresses: tuple[VirtualIP, ...] = Field(min_length=1, strict=False)
    # keepalived's virtual_ipaddress_excluded: held by the master, never in adverts.
    virtual_ipaddresses_excluded: tuple[VirtualIP, ...] = Field(
        default=(),
        strict=False,
        validation_alias=AliasChoices("virtual_ipaddresses_excluded", "virtual_ipaddress_excluded"),
    )
    # keepalived's start hint: BACKUP keeps even an address owner from taking over at once;
    # MASTER (not the owner) waits like a backup but always preempts (nopreempt is cleared).
    state: Literal["MASTER", "BACKUP"] | None = None
    preempt: bool = True
    nopreempt: bool | None = None
    preempt_delay: float = Field(default=0.0, ge=0, le=1000)
    accept: bool = False
    unicast_src_ip: IPAddress | None = None
    unicast_peers: tuple[IPAddress, ...] = Field(default=(), strict=False)
    # TTL / Hop Limit sent to unicast peers; unset: 255 (keepalived: 255 over IPv4, the
    # kernel's hop limit, 64, over IPv6; see the README).
    unicast_ttl: int | None = Field(default=None, ge=1, le=255)
    # keepalived's receive checks in unicast mode, off unless set: the TTL / Hop Limit of
    # unicast adverts, and that they come from a unicast peer (min/max_ttl imply it).
    min_ttl: int | None = Field(default=None, ge=0, le=255)
    max_ttl: int | None = Field(default=None, ge=0, le=255)
    check_unicast_src: bool = False
    # keepalived's use_vmac [NAME]: true for the default name vrrp.<VRID>, or the name.
    use_vmac: bool | str = False
    vmac_xmit_base: bool = False
    virtual_routes: tuple[VirtualRouteConfig, ...] = Field(default=(), strict=False)
    virtual_rules: tuple[VirtualRuleConfig, ...] = Field(default=(), strict=False)
    authentication: Authentication | None = None
    garp_master_delay: float = Field(default=5.0, ge=0, le=3600)
    garp_master_repeat: int = Field(default=5, ge=1, le=255)
    garp_master_refresh: float = Field(default=0.0, ge=0, le=86400)
    garp_master_refresh_repeat: int = Field(default=1, ge=1, le=255)
    garp_lower_prio_repeat: int = Field(default=5, ge=0, le=255)
    # keepalived's tracking (hacontrol/config_track.py, vrrp/track.py): items whose state
    # moves the priority (a weight) or holds the instance in FAULT (weight 0).
    track_interface: tuple[TrackInterfaceRef, ...] = Field(default=(), strict=False)
    track_script: tuple[TrackScriptRef, ...] = Field(default=(), strict=False)
    track_file: tuple[TrackFileRef, ...] = Field(default=(), strict=False)
    track_process: tuple[TrackProcessRef, ...] = Field(default=(), strict=False)
    # keepalived's dont_track_primary: its own interface going down is not a FAULT.
    dont_track_primary: bool = False
    # keepalived's notify scripts (hacontrol/notify_plan.py says which run when). Each is
    # exec'd without a shell, one at a time in the order the transitions happened.
    notify_master: ScriptArgv | None = None
    notify_backup: ScriptArgv | None = None
    notify_fault: ScriptArgv | None = None
    notify_stop: ScriptArgv | None = None
    # Removed by a reload: true (or a script, run too) says DELETED instead of FAULT.
    notify_deleted: bool | ScriptArgv = False
    # Every transition, with INSTANCE NAME STATE PRIORITY appended to its arguments.
    notify: ScriptArgv | None = None
    notify_timeout: float = Field(default=DEFAULT_NOTIFY_TIMEOUT, gt=0, le=3600)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    _script_argv = field_validator(
        "notify_master", "notify_backup", "notify_fault", "notify_stop", "notify", mode="before"
    )(script_argv)

    @field_validator("notify_deleted", mode="before")
    @classmethod
    def _deleted(cls, value: Any) -> Any:
        if isinstance(value, bool | list | tuple):
            return value
        if isinstance(value, str):
            return script_argv(value)
        raise ValueError(
            f"true, false, or a script (a list: the program and its arguments), not {value!r}"
        )

    @field_validator("name")
    @classmethod
    def _one_word(cls, value: str) -> str:
        return one_word_name("an instance", value)

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
        if isinstance(self.use_vmac, str):
            problem = vmac_name_problem(self.use_vmac)
            if problem is not None:
                raise ValueError(f"use_vmac: {problem}")
            if self.use_vmac == self.interface:
                raise ValueError("use_vmac names the VMAC like the instance's own interface")
        if self.vmac_xmit_base and not self.vmac_name:
            raise ValueError("vmac_xmit_base applies to use_vmac only")
        if self.vmac_name and self.unicast_peers and not self.vmac_xmit_base:
            raise ValueError(
                "use_vmac with unicast_peers needs vmac_xmit_base (keepalived's rule: "
                "unicast adverts cannot go out of the VMAC)"
            )
        return self

    @property
    def vmac_name(self) -> str | None:
        """The VMAC's interface name, or None without use_vmac."""
        if self.use_vmac is True:
            return default_vmac_name(self.vrid)
        return self.use_vmac or None

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
        if self.state == "MASTER":
            return True  # keepalived: "nopreempt will not work with initial state MASTER"
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
    # keepalived's vrrp_rt_priority: the VRRP process runs SCHED_RR at this priority, so
    # adverts leave on time however busy the machine is. None: ordinary scheduling.
    vrrp_rt_priority: int | None = Field(default=None, ge=1, le=99)
    # keepalived's vrrp_priority: the VRRP process's nice value.
    vrrp_priority: int | None = Field(default=None, ge=-20, le=19)
    # keepalived's notify_fifo and vrrp_notify_fifo: a FIFO (created if missing) that gets
    # one line per VRRP transition, `INSTANCE "VI_1" MASTER 150`. keepalived also writes
    # its checker's lines to notify_fifo; hacontrol writes VRRP lines to both.
    notify_fifo: str | None = None
    vrrp_notify_fifo: str | None = None
    notify_fifo_buffer: int = Field(default=DEFAULT_NOTIFY_FIFO_BUFFER, ge=1, le=1_000_000)

    _fifo_path = field_validator("notify_fifo", "vrrp_notify_fifo")(_fifo_path)

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
    vrrp_instances: tuple[VrrpInstanceConfig, ...] = Field(default=(), strict=False)
    # keepalived's vrrp_script, track_file, vrrp_track_process and vrrp_sync_group blocks.
    vrrp_scripts: tuple[VrrpScriptConfig, ...] = Field(default=(), strict=False)
    track_files: tuple[TrackFileConfig, ...] = Field(default=(), strict=False)
    track_processes: tuple[TrackProcessConfig, ...] = Field(default=(), strict=False)
    vrrp_sync_groups: tuple[SyncGroupConfig, ...] = Field(default=(), strict=False)
    virtual_servers: tuple[VirtualServerConfig, ...] = Field(default=(), strict=False)
    virtual_server_groups: tuple[VirtualServerGroupConfig, ...] = Field(default=(), strict=False)
    ipvs: IpvsSection = IpvsSection()
    # Further YAML files (globs, relative to this file): read by the loader, which merges
    # lists (vrrp_instances, virtual_servers, ...) into this file's.
    include: str | Annotated[tuple[str, ...], Field(strict=False)] | None = Field(
        default=None, exclude=True
    )

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    # Checks across items (a VRID or VIP used twice, ...) are in config_checks.py, run by
    # the loader so that each one points at its own line.


@dataclass(frozen=True, slots=True)
class CheckedConfig:
    """A valid config and the warnings about it (`FILE:LINE: path: warning: ...`)."""

    config: Config
    warnings: tuple[SourceIssue, ...] = ()


def parse_config(text: str | bytes, filename: str = "<config>") -> Config:
    """Validate `text`; raise ConfigError listing every problem with its line."""
    return check_source(text, filename).config


def load_config(path: str | Path) -> Config:
    """Read and validate a file; raise ConfigError listing every problem with its line."""
    return check_file(path).config


def check_file(path: str | Path, *, for_run: bool = False) -> CheckedConfig:
    """`check_source` on a file, of which at most yamlsrc.MAX_BYTES are read."""
    with _gc_paused():
        loaded = read_yaml_file(path)
        return _check(loaded, for_run)


def check_source(text: str | bytes, filename: str, *, for_run: bool = False) -> CheckedConfig:
    """Validate a config; raise ConfigError with every error (and warning) found.

    `for_run`: what `hacontrol run` and a reload accept, which is stricter than
    `hacontrol check`: a config with nothing to do is an error there, a warning here.
    """
    with _gc_paused():
        return _check(load_yaml(text, filename), for_run)


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    # Loading builds a few objects per byte of YAML, all alive until the end, and none in
    # a cycle: automatic collections would walk them over and over (on 10 MB, most of the
    # load time) and free nothing.
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _issue(
    lines: Any, path: tuple[str | int, ...], message: str, filename: str, severity: str = "error"
) -> SourceIssue:
    """The issue at `path`; with `include:`, in the file the path came from, as it is there."""
    file_of = getattr(lines, "file_of", None)
    if file_of is not None:
        filename, shown = str(file_of(path)), lines.path_in_file(path)
    else:
        shown = path
    return SourceIssue(filename, lines.line_of(path), shown, message, severity)  # type: ignore[arg-type]


def _check(source: LoadedYaml, for_run: bool) -> CheckedConfig:
    loaded: LoadedYaml | IncludedYaml = resolve_includes(source)
    filename = loaded.filename
    if loaded.data is None and loaded.issues:
        raise ConfigError(loaded.issues)
    data = loaded.data if loaded.data is not None else {}
    issues = list(loaded.issues)
    if isinstance(loaded, IncludedYaml) and issues:
        raise ConfigError(_sorted(issues))  # a missing file or a loop: nothing to validate
    if not isinstance(data, dict):
        line = loaded.locate([()]).line_of(())
        issues.append(SourceIssue(filename, line, (), "the top level must be a mapping"))
        raise ConfigError(_sorted(issues))
    loaded.data = None  # the only other reference: let validation free what it is done with
    try:
        config = Config.model_validate(_released(data))
    except ValidationError as exc:
        found = _validation_findings(exc)
        lines = loaded.locate((path for path, _ in found), _SYNONYMS)
        issues.extend(_issue(lines, p, m, filename) for p, m in found)
        raise ConfigError(_sorted(issues)) from None
    errors = findings(config, ERROR_CHECKS)
    # What the IPVS model refuses (a DR real server on another port, ...), named
    # by the layer that would refuse it. Imported here: hacontrol.desired builds on
    # this module.
    from hacontrol.desired import model_problems

    # A virtual server with a problem found above (a real server listed twice, ...) would
    # have it reported again by the model, less precisely.
    flagged = {p[1] for p, _ in errors if p[:1] == ("virtual_servers",) and len(p) > 1}
    errors.extend(
        (("virtual_servers", index), message)
        for index, message in model_problems(config)
        if index not in flagged
    )
    warnings = findings(config, WARNING_CHECKS)
    if for_run:
        errors.extend((p, m) for p, m in warnings if m == NOTHING_TO_DO)
    warnings = [
        (p, f"{m} (hacontrol run refuses such a file)" if m == NOTHING_TO_DO else m)
        for p, m in warnings
        if not (for_run and m == NOTHING_TO_DO)
    ]
    if errors or warnings:
        lines = loaded.locate((p for p, _ in [*errors, *warnings]), _SYNONYMS)
        issues.extend(_issue(lines, p, m, filename) for p, m in errors)
        warned = [_issue(lines, p, m, filename, "warning") for p, m in warnings]
    else:
        warned = []
    if issues:
        raise ConfigError(_sorted(issues + warned))
    return CheckedConfig(config, tuple(_sorted(warned)))


def _released(data: dict[Any, Any]) -> dict[Any, Any]:
    """`data`, its virtual servers (and their real servers) handed to pydantic one by one.

    pydantic reads a generator where a (lax) tuple is declared item by item, so each raw
    item is freed once its model exists, rather than all the raw data living on until the
    whole config is built: on a 10,000-service file that is a quarter of the peak memory.
    Items may be shared (YAML aliases): they are copied, never changed.
    """
    servers = data.get("virtual_servers")
    if isinstance(servers, tuple):
        data["virtual_servers"] = _one_by_one(list(servers), nested="real_servers")
    return data


def _one_by_one(items: list[Any], nested: str | None = None) -> Iterator[Any]:
    for index in range(len(items)):
        item, items[index] = items[index], None
        if nested is not None and isinstance(item, dict) and isinstance(item.get(nested), tuple):
            item = {**item, nested: _one_by_one(list(item[nested]))}
        yield item


def _sorted(issues: list[SourceIssue]) -> list[SourceIssue]:
    return sorted(issues, key=lambda i: (i.line is None, i.line or 0))


def _field_synonyms() -> dict[str, str]:
    """A field's other spelling (validation alias) -> the name hacontrol reports it under."""
    out: dict[str, str] = {}
    for model in _models(Config):
        for name, info in model.model_fields.items():
            if isinstance(info.validation_alias, str) and info.alias is None:
                out[info.validation_alias] = name
    return out


def _models(root: type[BaseModel]) -> list[type[BaseModel]]:
    seen: list[type[BaseModel]] = []
    todo = [root]
    while todo:
        model = todo.pop()
        if model in seen:
            continue
        seen.append(model)
        for info in model.model_fields.values():
            todo.extend(_nested_models(info.annotation))
    return seen


def _nested_models(tp: Any) -> list[type[BaseModel]]:
    if isinstance(tp, type) and issubclass(tp, BaseModel):
        return [tp]
    return [m for arg in get_args(tp) for m in _nested_models(arg)]


_SYNONYMS = _field_synonyms()


def _validation_findings(exc: ValidationError) -> list[tuple[tuple[str | int, ...], str]]:
    errors = exc.errors(include_url=False)
    failed = [tuple(e["loc"]) for e in errors]
    # A required key written in keepalived's spelling: the unknown key's message says it all.
    respelled = {
        (*e["loc"][:-1], KEEPALIVED_SPELLINGS[str(e["loc"][-1])])
        for e in errors
        if e["type"] == "extra_forbidden" and str(e["loc"][-1]) in KEEPALIVED_SPELLINGS
    }
    out: list[tuple[tuple[str | int, ...], str]] = []
    for err in errors:
        loc = tuple(err["loc"])
        if err["type"] == "too_short" and any(
            len(f) > len(loc) and f[: len(loc)] == loc for f in failed
        ):
            continue  # only short because an item failed: that item's error says why
        if err["type"] == "missing" and loc in respelled:
            continue
        path = _clean_loc(loc)
        if err["type"] == "missing":
            path = _canonical(path)
        elif err["type"] in ("union_tag_not_found", "union_tag_invalid"):
            path = (*path, "type")
        out.append((path, _message(err, loc, path)))
    return out


def _canonical(path: tuple[str | int, ...]) -> tuple[str | int, ...]:
    # A missing key is reported under hacontrol's spelling (vrid, not virtual_router_id).
    return tuple(_SYNONYMS.get(p, p) if isinstance(p, str) else p for p in path)


def _clean_loc(loc: tuple[Any, ...]) -> tuple[str | int, ...]:
    # pydantic names union branches in paths ("function-after[...]", "str") and
    # puts a discriminated union's tag in them ("tcp"); the operator only cares
    # about the keys they wrote.
    out: list[str | int] = []
    for index, part in enumerate(loc):
        if isinstance(part, str) and "[" in part:
            continue
        if (
            isinstance(part, str)
            and index > 0
            and isinstance(loc[index - 1], int)
            and part in _CHECK_TYPES
            and model_at(Config, out) is None
        ):
            continue
        out.append(part)
    return tuple(out)


_CHECK_TYPES = frozenset(
    str(m.model_fields["type"].default)
    for m in _models(Config)
    # A check's model is the one value of its tag (a route's `type` has four).
    if "type" in m.model_fields and len(get_args(m.model_fields["type"].annotation)) == 1
)


def _message(err: Any, loc: tuple[Any, ...], path: tuple[str | int, ...]) -> str:
    kind = err["type"]
    msg = str(err["msg"])
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "extra_forbidden":
        # The raw location still has the check's type ('tcp'), which says which model.
        return unknown_key_message(model_at(Config, loc[:-1]), loc[-1] if loc else None)
    if kind == "missing":
        return "required key is missing"
    if kind == "union_tag_not_found":
        return f"required key is missing (one of {', '.join(sorted(_CHECK_TYPES))})"
    if kind == "union_tag_invalid":
        tag = str(err.get("ctx", {}).get("tag", ""))
        return (
            f"unknown check type {tag!r}; one of {', '.join(sorted(_CHECK_TYPES))}"
            + did_you_mean(tag, sorted(_CHECK_TYPES))
        )
    if kind == "invalid_key":
        return f"a key must be a name, not {err.get('input')!r}"
    if kind in _TYPE_ERRORS and "input" in err:
        return f"{msg}, not {_given(kind, err['input'])}"
    if kind == "finite_number":
        return f"{msg}, not {err.get('input')!r}"
    return msg


# pydantic's "Input should be a valid integer" and the like: what was given says why.
_TYPE_ERRORS = frozenset({"int_type", "float_type", "bool_type", "string_type", "literal_error"})
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)$")


def _given(kind: str, value: object) -> str:
    """What the file gave, said so that the fix is plain (YAML types are easy to miss)."""
    if isinstance(value, bool):
        told = f"the boolean {str(value).lower()}"
        if kind == "string_type":
            return f"{told} (YAML reads a bare yes, no, on, off, true or false so): quote it"
        return told
    if isinstance(value, (int, float)):
        told = f"the number {value!r}"
        if kind == "string_type":
            return f'{told}: quote it ("{value}")'
        if kind == "bool_type":
            return f"{told}: write true or false"
        return told
    if isinstance(value, str):
        told = f"the string {value!r}"
        if kind in ("int_type", "float_type") and _NUMBER.match(value.strip()):
            return f"{told}: write {value.strip()} without quotes"
        if kind == "bool_type" and value.strip().lower() in _YAML_BOOLS:
            return f"{told}: write {value.strip().lower()} without quotes"
        return told
    if value is None:
        return "an empty value"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, (list, tuple)):
        return "a list"
    return repr(value)


_YAML_BOOLS = frozenset({"yes", "no", "on", "off", "true", "false", "y", "n"})
