"""Check config models: keepalived defaults, the `type` union, and specific errors; where a
check connects (endpoint, Host header).

Pure (no sockets, no sleeps): the probes' contract, in the unit tier.
"""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address, ip_address
from pathlib import Path
from typing import Any

import pytest
from pydantic import TypeAdapter, ValidationError

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
)
from healthcheck.probes import ProbeTarget, probe_timeout
from healthcheck.probes.common import Endpoint, endpoint
from healthcheck.probes.http import host_header

ADAPTER: TypeAdapter[Any] = TypeAdapter(CheckConfig)


def parse(data: dict[str, Any]) -> Any:
    return ADAPTER.validate_python(data)


@pytest.mark.parametrize(
    ("data", "model"),
    [
        ({"type": "tcp"}, TcpCheck),
        ({"type": "http"}, HttpCheck),
        ({"type": "https"}, HttpsCheck),
        ({"type": "script", "argv": ["/bin/true"]}, ScriptCheck),
        ({"type": "udp"}, UdpCheck),
        ({"type": "dns"}, DnsCheck),
        ({"type": "smtp"}, SmtpCheck),
        ({"type": "icmp"}, IcmpCheck),
        ({"type": "file", "path": "/run/x"}, FileCheck),
    ],
)
def test_type_selects_the_model(data: dict[str, Any], model: type) -> None:
    assert type(parse(data)) is model


def test_keepalived_defaults() -> None:
    tcp = TcpCheck()
    assert (tcp.connect_timeout, tcp.delay_loop, tcp.retry, tcp.delay_before_retry) == (
        5.0,
        60.0,
        1,
        1.0,
    )
    assert (tcp.rise, tcp.fall, tcp.warmup) == (1, 1, True)
    http = HttpCheck()
    assert (http.delay_before_retry, http.path, http.status_codes) == (3.0, "/", ("200-299",))
    assert http.max_body_bytes == 1 << 20
    assert HttpsCheck().verify is False
    dns = parse({"type": "dns", "delay_loop": 10})
    assert (dns.retry, dns.delay_before_retry, dns.name, dns.qtype) == (3, 10.0, ".", "SOA")
    script = parse({"type": "script", "argv": ["/bin/true"], "delay_loop": 7})
    assert (script.retry, script.timeout) == (0, 7.0)
    assert parse({"type": "script", "argv": ["/x"], "timeout": 2}).timeout == 2.0


def test_frozen_and_extra_forbidden() -> None:
    check = TcpCheck()
    with pytest.raises(ValidationError):
        check.connect_timeout = 1
    with pytest.raises(ValidationError, match="nb_get_retry"):
        parse({"type": "tcp", "nb_get_retry": 3})


def test_status_codes() -> None:
    check = parse({"type": "http", "status_codes": [200, "301-302", "404"]})
    assert [c for c in (199, 200, 201, 301, 302, 303, 404) if check.accepts_status(c)] == [
        200,
        301,
        302,
        404,
    ]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"type": "http", "regex": "a(b"}, "regex 'a(b' does not compile"),
        ({"type": "udp", "expect": "[z-a]"}, "expect '[z-a]' does not compile"),
        ({"type": "http", "digest": "abc"}, "digest 'abc' must be 32 hexadecimal digits"),
        ({"type": "http", "sha256_digest": "0" * 32}, "sha256_digest '0000"),
        ({"type": "http", "status_codes": ["300-200"]}, "'300-200' has its bounds reversed"),
        ({"type": "http", "status_codes": ["2xx"]}, "String should match pattern"),
        ({"type": "http", "status_codes": [600]}, "less than or equal to 599"),
        ({"type": "http", "status_codes": []}, "at least one code"),
        ({"type": "http", "regex_no_match": True}, "regex_no_match is set but no regex"),
        ({"type": "http", "path": "index.html"}, "path 'index.html' must start with '/'"),
        ({"type": "http", "path": "/a\r\nX: y"}, "must start with '/' and contain no spaces"),
        ({"type": "http", "virtualhost": "a b"}, "virtualhost 'a b' must contain no spaces"),
        ({"type": "https", "ca_file": "/ca.pem"}, "ca_file '/ca.pem' is set but verify is false"),
        ({"type": "https", "sni": "bad name"}, "sni 'bad name' is not a DNS host name"),
        ({"type": "udp", "payload": "a", "payload_hex": "00"}, "payload and payload_hex"),
        ({"type": "udp", "payload_hex": "0g"}, "payload_hex '0g' is not hexadecimal"),
        ({"type": "dns", "name": "a" * 64 + ".test"}, "is not a valid DNS name"),
        ({"type": "dns", "name": "a..b"}, "name 'a..b' is not a valid DNS name"),
        ({"type": "dns", "expect_answer": "192.0.2.1"}, "needs qtype A, not SOA"),
        ({"type": "dns", "qtype": "A", "expect_answer": "2001:db8::1"}, "needs qtype AAAA"),
        ({"type": "dns", "rcode": "OK"}, "NOERROR"),
        ({"type": "tcp", "bind_ip": "::1", "connect_ip": "127.0.0.1"}, "different address"),
        ({"type": "tcp", "connect_port": 0}, "greater than or equal to 1"),
        ({"type": "tcp", "connect_timeout": 0}, "greater than 0"),
        ({"type": "tcp", "fwmark": 0}, "greater than or equal to 1"),
        ({"type": "script", "argv": []}, "at least 1 item"),
        ({"type": "script", "argv": [""]}, "argv[0] (the program) is empty"),
        ({"type": "script", "argv": ["/x"], "group": "g"}, "group 'g' is set without user"),
        ({"type": "smtp", "helo_name": "a b"}, "helo_name 'a b'"),
        ({"type": "ftp"}, "does not match any of the expected tags"),
    ],
)
def test_errors_name_the_value(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as info:
        parse(data)
    assert message in str(info.value)


def test_digest_is_normalised_to_lowercase() -> None:
    assert HttpCheck(digest="AB" * 16).digest == "ab" * 16


def test_udp_payload_bytes() -> None:
    assert UdpCheck(payload_hex="de ad BE EF").payload_bytes() == b"\xde\xad\xbe\xef"
    assert UdpCheck(payload="hé").payload_bytes() == "hé".encode()
    assert UdpCheck().payload_bytes() == b""


def test_yaml_like_input_round_trips() -> None:
    data = {
        "type": "https",
        "connect_ip": "192.0.2.10",
        "connect_port": 8443,
        "bind_ip": "192.0.2.1",
        "fwmark": 7,
        "path": "/healthz",
        "status_codes": [200, "300-399"],
        "virtualhost": "www.example.test",
        "verify": True,
        "ca_file": "/etc/ssl/ca.pem",
    }
    check = parse(data)
    assert check.connect_ip == IPv4Address("192.0.2.10")
    assert check.ca_file == Path("/etc/ssl/ca.pem")
    assert parse(check.model_dump(mode="json")) == check


def test_probe_timeout_bounds_each_type() -> None:
    assert probe_timeout(HttpsCheck(connect_timeout=2.5)) == 2.5
    assert probe_timeout(IcmpCheck()) == 5.0
    assert probe_timeout(ScriptCheck(argv=("/x",), timeout=3)) == 3.5
    assert probe_timeout(FileCheck(path=Path("/x"))) == 1.0


def test_endpoint_takes_the_target_unless_the_check_overrides_it() -> None:
    target = ProbeTarget(IPv4Address("192.0.2.10"), 8080)
    assert target.host == "192.0.2.10"
    assert endpoint(TcpCheck(), target) == Endpoint(target.address, 8080, "192.0.2.10")
    moved = TcpCheck(connect_ip=IPv6Address("2001:db8::7"), connect_port=81)
    assert endpoint(moved, target) == Endpoint(IPv6Address("2001:db8::7"), 81, "2001:db8::7")
    # The cached string is derived: targets still compare (and hash) by address and port.
    assert target == ProbeTarget(IPv4Address("192.0.2.10"), 8080)
    assert hash(target) == hash(ProbeTarget(IPv4Address("192.0.2.10"), 8080))


@pytest.mark.parametrize(
    ("check", "address", "port", "host"),
    [
        (HttpCheck(), "192.0.2.1", 80, "192.0.2.1"),
        (HttpCheck(), "192.0.2.1", 8080, "192.0.2.1:8080"),
        (HttpsCheck(), "192.0.2.1", 443, "192.0.2.1"),
        (HttpsCheck(), "192.0.2.1", 80, "192.0.2.1:80"),
        (HttpCheck(), "2001:db8::1", 80, "[2001:db8::1]"),
        (HttpCheck(), "2001:db8::1", 8080, "[2001:db8::1]:8080"),
        (HttpCheck(virtualhost="www.example.com"), "192.0.2.1", 8080, "www.example.com"),
    ],
)
def test_host_header(check: HttpCheck | HttpsCheck, address: str, port: int, host: str) -> None:
    assert host_header(check, endpoint(check, ProbeTarget(ip_address(address), port))) == host
