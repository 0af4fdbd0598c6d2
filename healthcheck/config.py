"""Validated, frozen settings of one health check (keepalived's checkers), one model per type.

`CheckConfig` is a discriminated union on `type`; the daemon's config loader maps the YAML
onto it and the probes in `healthcheck.probes` read it. Defaults follow keepalived 2.2
(keepalived.conf(5), "virtual_server" / "real_server" / checker sections):

- `connect_timeout` 5 s; for network checks it bounds the whole probe (connect, TLS, request
  and reply), so a probe never outlives it.
- `delay_loop` 60 s ("60 seconds if not specified").
- `retry` 1 ("Default: 1 unless specified below"), except DNS (3) and script/MISC (0).
- `delay_before_retry` 3 s for HTTP/HTTPS (HTTP_GET/SSL_GET), `delay_loop` for DNS, 1 s
  otherwise.
- `warmup`: keepalived spreads the first check of each checker randomly over up to
  `delay_loop` seconds by default: true (the default) does the same, false or 0 disables
  it, a number of seconds is the maximum (keepalived's `warmup <TIMER>`).
- `alpha`: the check starts down and must pass before the server is used (keepalived's
  alpha); unset, the real server's or virtual server's setting applies.
- `rise` / `fall` (not in keepalived, whose only hysteresis is `retry`): consecutive
  successes / failures before the rise/fall reducer flips the server's state; 1 each keeps
  keepalived's behaviour.
"""

from __future__ import annotations

import math
import re
from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainValidator,
    ValidationInfo,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

Port = Annotated[int, Field(ge=1, le=65535)]
Seconds = Annotated[float, Field(gt=0, allow_inf_nan=False)]
# "200", or an inclusive range "200-299" as keepalived's status_code takes it.
StatusCodeRange = Annotated[str, Field(pattern=r"^[1-5][0-9]{2}(-[1-5][0-9]{2})?$")]


def _to_ip(value: Any) -> Any:
    # Strict validation takes no string for an address; YAML has no other way to write one.
    if isinstance(value, str):
        try:
            return ip_address(value)
        except ValueError:
            raise ValueError(f"{value!r} is not an IPv4 or IPv6 address") from None
    if not isinstance(value, (IPv4Address, IPv6Address)):
        raise ValueError(f"{value!r} is not an IPv4 or IPv6 address")
    return value


IPAddress = Annotated[IPv4Address | IPv6Address, BeforeValidator(_to_ip)]


def _warmup(value: Any) -> bool | float:
    # One validator, not a union: an error then names `warmup`, not a union branch.
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        if not math.isfinite(value):
            raise PydanticCustomError("finite_number", "Input should be a finite number")
        if value < 0:
            raise ValueError(f"warmup is seconds >= 0 (0: none), got {value}")
        return float(value)
    raise PydanticCustomError("bool_type", "Input should be a valid boolean")


# true: spread the first check over delay_loop (keepalived's default); false or 0: none;
# a number: spread over that many seconds (keepalived's `warmup <TIMER>`).
Warmup = Annotated[
    bool | float,
    PlainValidator(_warmup),
    WithJsonSchema({"anyOf": [{"type": "boolean"}, {"type": "number", "minimum": 0}]}),
]
# A file path, written as a string (strict validation alone takes only Path objects).
FilePath = Annotated[Path, Field(strict=False)]

_HEX_DIGEST = {"digest": 32, "sha256_digest": 64}
# Header values are written into the request verbatim: no controls, no whitespace
# (RFC 9110 §7.2 Host is a uri-host; CR/LF would let config inject headers).
_TOKEN_RE = re.compile(r"^[!-~]+$")


def _no_schema_default(schema: dict[str, Any]) -> None:
    # The default is derived from delay_loop at validation; "null" would mislead editors.
    schema.pop("default", None)


def _compile_bytes_regex(pattern: str, field: str) -> str:
    try:
        re.compile(pattern.encode("utf-8"))
    except re.error as exc:
        raise ValueError(f"{field} {pattern!r} does not compile: {exc}") from exc
    return pattern


class _Schedule(BaseModel):
    """Scheduling fields every check has; the scheduler and rise/fall reducer read them.

    Strict: a quoted "2" is not a number, 1 is not a string, "yes" is not a boolean; no
    float field takes .inf or .nan. Lists are taken where tuples are declared.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    delay_loop: Seconds = 60.0
    retry: Annotated[int, Field(ge=0, le=100)] = 1
    delay_before_retry: Seconds = 1.0
    rise: Annotated[int, Field(ge=1, le=100)] = 1
    fall: Annotated[int, Field(ge=1, le=100)] = 1
    warmup: Warmup = True
    alpha: bool | None = None


class _NetworkCheck(_Schedule):
    """Fields of the checks that send packets (all but script and file)."""

    # Override the real server's address / port (keepalived connect_ip / connect_port), e.g.
    # the VIP for a DR check that must traverse IPVS.
    connect_ip: IPAddress | None = None
    connect_port: Port | None = None
    # Source of the probe (keepalived bindto / bind_port).
    bind_ip: IPAddress | None = None
    bind_port: Port | None = None
    # SO_MARK on the probe's socket (needs CAP_NET_ADMIN): with an `ip rule fwmark` route, a
    # DR check to the VIP reaches exactly one real server.
    fwmark: Annotated[int, Field(ge=1, le=0xFFFFFFFF)] | None = None
    connect_timeout: Seconds = 5.0

    @model_validator(mode="after")
    def _families_agree(self) -> _NetworkCheck:
        if (
            self.bind_ip is not None
            and self.connect_ip is not None
            and self.bind_ip.version != self.connect_ip.version
        ):
            raise ValueError(
                f"bind_ip {self.bind_ip} and connect_ip {self.connect_ip} are different "
                "address families"
            )
        return self


class TcpCheck(_NetworkCheck):
    """keepalived TCP_CHECK: up when the TCP handshake completes."""

    type: Literal["tcp"] = "tcp"


class UrlConfig(BaseModel):
    """One keepalived `url { }` block of HTTP_GET / SSL_GET: what one GET must return."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True, allow_inf_nan=False)

    path: str = "/"
    # ints and "lo-hi" ranges, like `status_code 200-299 400-499 503` (default 200-299).
    status_codes: tuple[Annotated[int, Field(ge=100, le=599)] | StatusCodeRange, ...] = Field(
        default=("200-299",), strict=False
    )
    # Python `re` syntax (keepalived uses PCRE2), searched in the body as bytes.
    regex: str | None = None
    # keepalived regex_no_match: the check fails when `regex` matches.
    regex_no_match: bool = False
    # MD5 of the body as lowercase hex: exactly what keepalived's genhash prints.
    digest: str | None = None
    sha256_digest: str | None = None
    # Host header (keepalived virtualhost); unset: the check's, else the connect address.
    virtualhost: str | None = None

    @field_validator("path")
    @classmethod
    def _check_path(cls, v: str) -> str:
        if not v.startswith("/") or not _TOKEN_RE.match(v):
            raise ValueError(
                f"path {v!r} must start with '/' and contain no spaces or control characters"
            )
        return v

    @field_validator("virtualhost")
    @classmethod
    def _check_virtualhost(cls, v: str | None) -> str | None:
        if v is not None and not _TOKEN_RE.match(v):
            raise ValueError(f"virtualhost {v!r} must contain no spaces or control characters")
        return v

    @field_validator("status_codes")
    @classmethod
    def _check_ranges(cls, v: tuple[int | str, ...]) -> tuple[int | str, ...]:
        if not v:
            raise ValueError("status_codes must name at least one code or range")
        for item in v:
            if isinstance(item, str) and "-" in item:
                lo, hi = (int(p) for p in item.split("-"))
                if lo > hi:
                    raise ValueError(f"status_codes range {item!r} has its bounds reversed")
        return v

    @field_validator("regex")
    @classmethod
    def _check_regex(cls, v: str | None) -> str | None:
        return None if v is None else _compile_bytes_regex(v, "regex")

    @field_validator("digest", "sha256_digest")
    @classmethod
    def _check_digest(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return None
        field = str(info.field_name)
        want = _HEX_DIGEST[field]
        if len(v) != want or not re.fullmatch(r"[0-9a-fA-F]+", v):
            raise ValueError(f"{field} {v!r} must be {want} hexadecimal digits")
        return v.lower()

    @model_validator(mode="after")
    def _regex_flag_needs_regex(self) -> UrlConfig:
        if self.regex_no_match and self.regex is None:
            raise ValueError("regex_no_match is set but no regex is given")
        return self

    def accepts_status(self, code: int) -> bool:
        """Whether `code` is in `status_codes`."""
        for item in self.status_codes:
            if isinstance(item, int):
                if code == item:
                    return True
                continue
            lo, _, hi = item.partition("-")
            if int(lo) <= code <= int(hi or lo):
                return True
        return False

    @property
    def needs_body(self) -> bool:
        return self.regex is not None or self.digest is not None or self.sha256_digest is not None


_URL_KEYS = frozenset(UrlConfig.model_fields) - {"virtualhost"}


class _HttpFields(_NetworkCheck, UrlConfig):
    """keepalived HTTP_GET / SSL_GET: one url (path, status_codes, ... on the check itself)
    or several (`urls`, each a keepalived `url { }` block; all must pass, one GET each)."""

    delay_before_retry: Seconds = 3.0
    urls: tuple[UrlConfig, ...] = Field(default=(), strict=False)
    # keepalived http_protocol: "1.0" (GET ... HTTP/1.0), "1.0C" (1.0 with Connection:
    # close, hacontrol's default), "1.1" (HTTP/1.1 with Connection: close).
    http_protocol: Literal["1.0", "1.0C", "1.1"] = "1.0C"
    # The probe reads at most this much body (only when regex or a digest needs it).
    max_body_bytes: Annotated[int, Field(ge=0, le=1 << 30)] = 1 << 20

    @model_validator(mode="after")
    def _urls_or_fields(self) -> _HttpFields:
        if self.urls:
            both = sorted(_URL_KEYS & self.model_fields_set)
            if both:
                raise ValueError(
                    f"{', '.join(both)} given both on the check and in urls: give each url "
                    "its own in urls"
                )
        return self

    def url_list(self) -> tuple[UrlConfig, ...]:
        """The urls to GET in turn, each with its effective Host (virtualhost)."""
        if not self.urls:
            return (self,)
        if self.virtualhost is None:
            return self.urls
        return tuple(
            u
            if u.virtualhost is not None
            else u.model_copy(update={"virtualhost": self.virtualhost})
            for u in self.urls
        )

    @property
    def needs_body(self) -> bool:
        return any(
            u.regex is not None or u.digest is not None or u.sha256_digest is not None
            for u in (self.urls or (self,))
        )


class HttpCheck(_HttpFields):
    """keepalived HTTP_GET."""

    type: Literal["http"] = "http"


class HttpsCheck(_HttpFields):
    """keepalived SSL_GET, plus certificate verification keepalived does not offer.

    `verify` is false by default, as in keepalived: a real server's certificate usually
    names the service, not the real server's address. With `verify`, the chain is checked
    against `ca_file` (the system store when unset) and the name against `sni`, else
    `virtualhost`, else the connect address (an IP SAN).
    """

    type: Literal["https"] = "https"
    # Server Name Indication; when unset, `virtualhost` is sent if `enable_sni` (true by
    # default here; keepalived sends no SNI without its `enable_sni`).
    sni: str | None = None
    enable_sni: bool = True
    verify: bool = False
    ca_file: FilePath | None = None
    # A client certificate for servers that ask for one (keepalived's SSL certificate/key/
    # password): PEM files; the key may be in the certificate file.
    client_cert: FilePath | None = None
    client_key: FilePath | None = None
    client_key_password: str | None = None

    @field_validator("sni")
    @classmethod
    def _check_sni(cls, v: str | None) -> str | None:
        if v is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,253}", v):
            raise ValueError(f"sni {v!r} is not a DNS host name")
        return v

    @model_validator(mode="after")
    def _ca_needs_verify(self) -> HttpsCheck:
        if self.ca_file is not None and not self.verify:
            raise ValueError(f"ca_file {str(self.ca_file)!r} is set but verify is false")
        if self.client_cert is None and (
            self.client_key is not None or self.client_key_password is not None
        ):
            raise ValueError("client_key and client_key_password need client_cert")
        return self


class ScriptCheck(_Schedule):
    """keepalived MISC_CHECK: run a program without a shell; exit 0 up, anything else down.

    With `dynamic` (misc_dynamic), exit codes 2..255 mean up with weight `code - 2`.
    `timeout` (misc_timeout) defaults to `delay_loop`; on expiry the program's whole process
    group is killed.
    """

    type: Literal["script"] = "script"
    retry: Annotated[int, Field(ge=0, le=100)] = 0
    argv: tuple[str, ...] = Field(min_length=1, strict=False)
    timeout: Seconds = Field(
        default=None,
        validate_default=True,
        description="seconds; defaults to delay_loop (keepalived misc_timeout)",
        json_schema_extra=_no_schema_default,
    )
    dynamic: bool = False
    user: str | None = None
    group: str | None = None

    @field_validator("timeout", mode="before")
    @classmethod
    def _timeout_defaults_to_delay_loop(cls, v: Any, info: ValidationInfo) -> Any:
        return info.data.get("delay_loop", 60.0) if v is None else v

    @field_validator("argv")
    @classmethod
    def _check_argv(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        if not v[0]:
            raise ValueError("argv[0] (the program) is empty")
        for arg in v:
            if "\0" in arg:
                raise ValueError(f"argv element {arg!r} contains a NUL byte")
        return v

    @model_validator(mode="after")
    def _group_needs_user(self) -> ScriptCheck:
        if self.group is not None and self.user is None:
            raise ValueError(f"group {self.group!r} is set without user")
        return self


class UdpCheck(_NetworkCheck):
    """keepalived UDP_CHECK: send one datagram; an ICMP port unreachable means down.

    Without `require_reply` (and `expect`), silence until `connect_timeout` is up, as in
    keepalived; with them, a reply is needed and `expect` (a regex, Python `re` syntax) must
    match its bytes. The datagram is `payload` (UTF-8 text) or `payload_hex` (hex digits,
    spaces allowed), empty when neither is set.
    """

    type: Literal["udp"] = "udp"
    payload: str | None = None
    payload_hex: str | None = None
    require_reply: bool = False
    expect: str | None = None
    # keepalived's `require_reply HEX`: the reply's first bytes must match, up to the
    # shorter of the two; hex digits, an X matching any nibble ("4a XX 00"). Implies
    # require_reply.
    reply_hex: str | None = None
    # keepalived's min_reply_length / max_reply_length: a reply's size must lie within
    # (keepalived's defaults 0 and 255 when it requires a reply; no maximum here unless set).
    min_reply_length: Annotated[int, Field(ge=0, le=65535)] = 0
    max_reply_length: Annotated[int, Field(ge=0, le=65535)] | None = None

    @field_validator("payload_hex")
    @classmethod
    def _check_hex(cls, v: str | None) -> str | None:
        if v is None:
            return None
        try:
            bytes.fromhex(v)
        except ValueError as exc:
            raise ValueError(f"payload_hex {v!r} is not hexadecimal bytes: {exc}") from exc
        return v

    @field_validator("expect")
    @classmethod
    def _check_expect(cls, v: str | None) -> str | None:
        return None if v is None else _compile_bytes_regex(v, "expect")

    @field_validator("reply_hex")
    @classmethod
    def _check_reply_hex(cls, v: str | None) -> str | None:
        if v is None:
            return None
        digits = "".join(v.split())
        if not digits or len(digits) % 2 or not re.fullmatch(r"[0-9a-fA-FxX]+", digits):
            raise ValueError(
                f"reply_hex {v!r} must be pairs of hex digits (X for any nibble), e.g. '4a XX 00'"
            )
        return v

    @model_validator(mode="after")
    def _one_payload(self) -> UdpCheck:
        if self.payload is not None and self.payload_hex is not None:
            raise ValueError("payload and payload_hex are both set; give one")
        if self.max_reply_length is not None and self.max_reply_length < self.min_reply_length:
            raise ValueError("max_reply_length is below min_reply_length")
        return self

    @property
    def needs_reply(self) -> bool:
        return (
            self.require_reply
            or self.expect is not None
            or self.reply_hex is not None
            or self.min_reply_length > 0
        )

    def reply_matches(self, reply: bytes) -> bool:
        """keepalived: the pattern is compared up to the shorter of it and the reply."""
        if self.reply_hex is None:
            return True
        digits = "".join(self.reply_hex.split())
        for index in range(min(len(digits) // 2, len(reply))):
            byte = reply[index]
            for shift, nibble in ((4, digits[2 * index]), (0, digits[2 * index + 1])):
                if nibble in "xX":
                    continue
                if (byte >> shift) & 0xF != int(nibble, 16):
                    return False
        return True

    def payload_bytes(self) -> bytes:
        if self.payload_hex is not None:
            return bytes.fromhex(self.payload_hex)
        return (self.payload or "").encode("utf-8")


DnsType = Literal["A", "NS", "CNAME", "SOA", "PTR", "MX", "TXT", "AAAA", "SRV"]
DnsRcode = Literal["NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED"]


class DnsCheck(_NetworkCheck):
    """keepalived DNS_CHECK over UDP: query `name`/`qtype`, expect `rcode` (and an answer).

    Defaults as keepalived: name ".", type SOA, retry 3, delay_before_retry = delay_loop.
    `expect_answer` (A/AAAA only) must appear among the answers' addresses.
    """

    type: Literal["dns"] = "dns"
    retry: Annotated[int, Field(ge=0, le=100)] = 3
    name: str = "."
    qtype: DnsType = "SOA"
    rcode: DnsRcode = "NOERROR"
    expect_answer: IPAddress | None = None
    delay_before_retry: Seconds = Field(
        default=None,
        validate_default=True,
        description="seconds; defaults to delay_loop (keepalived DNS_CHECK)",
        json_schema_extra=_no_schema_default,
    )

    @field_validator("delay_before_retry", mode="before")
    @classmethod
    def _retry_delay_defaults_to_delay_loop(cls, v: Any, info: ValidationInfo) -> Any:
        return info.data.get("delay_loop", 60.0) if v is None else v

    @field_validator("name")
    @classmethod
    def _check_name(cls, v: str) -> str:
        if v == ".":
            return v
        labels = v.rstrip(".").split(".")
        # RFC 1035 §2.3.4: labels 63 octets, names 255 octets on the wire.
        if (
            not v.isascii()
            or any(not label or len(label) > 63 for label in labels)
            or sum(len(label) + 1 for label in labels) + 1 > 255
            or not _TOKEN_RE.match(v)
        ):
            raise ValueError(f"name {v!r} is not a valid DNS name")
        return v

    @model_validator(mode="after")
    def _answer_matches_type(self) -> DnsCheck:
        if self.expect_answer is not None:
            want = "A" if self.expect_answer.version == 4 else "AAAA"
            if self.qtype != want:
                raise ValueError(
                    f"expect_answer {self.expect_answer} needs qtype {want}, not {self.qtype}"
                )
        return self


class SmtpCheck(_NetworkCheck):
    """keepalived SMTP_CHECK: 220 banner, HELO/EHLO answered 250, QUIT.

    `use_ehlo` defaults to true (RFC 5321 §4.1.1.1: clients SHOULD send EHLO; every server
    must also accept HELO, which keepalived sends). `helo_name` defaults to the host name.
    """

    type: Literal["smtp"] = "smtp"
    helo_name: str | None = None
    use_ehlo: bool = True

    @field_validator("helo_name")
    @classmethod
    def _check_helo(cls, v: str | None) -> str | None:
        if v is not None and not _TOKEN_RE.match(v):
            raise ValueError(f"helo_name {v!r} must contain no spaces or control characters")
        return v


class IcmpCheck(_NetworkCheck):
    """keepalived PING_CHECK: one ICMP/ICMPv6 echo, answered by the matching echo reply."""

    type: Literal["icmp"] = "icmp"


class FileCheck(_Schedule):
    """keepalived FILE_CHECK / track_file for a real server.

    The file holds an integer as text (surrounding whitespace ignored). With `weight` 0,
    zero means up and anything else down (keepalived's rule). Otherwise the result is
    `value * weight`: negative means down; else up, and with `dynamic` the result becomes
    the server's weight (as a script's dynamic exit code does); a result above IPVS's
    maximum weight (2**31 - 1) is down. A missing or unreadable file is down.
    """

    type: Literal["file"] = "file"
    path: FilePath
    weight: Annotated[int, Field(ge=-(2**31 - 1), le=2**31 - 1)] = 1
    dynamic: bool = False
    # keepalived's `weight W reverse`: the value read counts negated (with weight 0: zero
    # means down, anything else up).
    reverse: bool = False
    # keepalived's init_file [VALUE] [overwrite]: at start, write VALUE to the file if it
    # does not exist (or always, with init_overwrite).
    init_file: int | None = None
    init_overwrite: bool = False

    @model_validator(mode="after")
    def _overwrite_needs_init(self) -> FileCheck:
        if self.init_overwrite and self.init_file is None:
            raise ValueError("init_overwrite is set without init_file")
        return self


CheckConfig = Annotated[
    TcpCheck
    | HttpCheck
    | HttpsCheck
    | ScriptCheck
    | UdpCheck
    | DnsCheck
    | SmtpCheck
    | IcmpCheck
    | FileCheck,
    Field(discriminator="type"),
]
NetworkCheck = TcpCheck | HttpCheck | HttpsCheck | UdpCheck | DnsCheck | SmtpCheck | IcmpCheck

__all__ = [
    "CheckConfig",
    "DnsCheck",
    "FileCheck",
    "HttpCheck",
    "HttpsCheck",
    "IcmpCheck",
    "NetworkCheck",
    "ScriptCheck",
    "SmtpCheck",
    "TcpCheck",
    "UdpCheck",
    "UrlConfig",
]
