"""The imported config behaves as keepalived's own: VRRP adverts compared field by field.

For each of Debian's VRRP samples, rewritten onto documentation addresses (every IPv4
address of the file mapped one to one into 192.0.2.0/24 and 198.51.100.0/24, interfaces
kept): keepalived runs with the file, then hacontrol with `hacontrol import keepalived`'s
translation of the same file, in turn, in the same namespace. A witness on the link reads
their adverts; for each comparable instance the fields must be equal: version, VRID,
priority, advert interval, the addresses carried (in order) and the authentication.

Tracking and sync groups are carried over, so instances with tracked interfaces and
scripts and the members of sync groups are compared too: their priorities are keepalived's
only if the weights, defaults and script results are (the samples' scripts run here as
they would on a director: `killall -0` of processes that are not running fails, and
`</dev/tcp/...`, which keepalived hands to /bin/sh, fails under dash). Adverts are read
once the scripts have had time to report (`settle`).

An instance is comparable when nothing the importer reported touches its adverts. The
exclusions that remain are asserted exactly (`EXCLUDED`), so none hides a difference.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from ipaddress import IPv4Address
from pathlib import Path

import pytest
import yaml

from hacontrol.importer.grammar import parse_text, walk
from hacontrol.importer.translate import Translator
from tests.interop.ka_util import HaDaemon, Keepalived, Witness
from tests.netns.netns_util import Frame, Lab, Netns, require_root
from tests.support import require_tool

pytestmark = pytest.mark.interop

SAMPLES = Path("/usr/share/doc/keepalived/samples")
# Findings that leave an instance's adverts as they are: mail, and a route or rule line
# not carried over (where traffic goes, not what is advertised).
HARMLESS = {"smtp_alert"}
ROUTE_LINE = "not carried over: "
# sample -> {instance: why it is not compared}
EXCLUDED: dict[str, dict[str, str]] = {
    "keepalived.conf.SSL_GET": {"VI_1": "authentication"},  # AH
    # Its `@high net_namespace high` puts keepalived in a namespace this test has not.
    "keepalived.conf.conditional_conf": {"VI_0": "net_namespace"},
    # Its instance is on eth0.1, a VLAN the lab does not make.
    "keepalived.conf.track_interface": {"VI_1": "eth0.1"},
    # The sample lists 192.168.200.18 twice: keepalived advertises it twice, hacontrol once.
    "keepalived.conf.vrrp": {"VI_1": "192.0.2.4"},
}
# keepalived's own effective priorities where tracking moves them (so the comparison is of
# weights at work, not of base priorities): VI_1 100 +2 (eth1 up) -4 (chk_sshd: no sshd
# here) -2 -2 -2 (the /dev/tcp checks fail under dash) = 92 (chk_haproxy's +2 only while
# it succeeds); VI_2 100 +2 (eth0) -2 -2 -2 = 96.
TRACKED_PRIORITY: dict[str, dict[int, int]] = {
    "keepalived.conf.vrrp.localcheck": {51: 92, 52: 96},
}
VRRP_SAMPLES = sorted(
    p.name for p in SAMPLES.glob("keepalived.conf.*") if "vrrp_instance" in p.read_text()
)


# ---- the samples on documentation addresses ------------------------------------------------

_IPV4 = re.compile(r"(?<![\d.])(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?![\d.])")


def rewrite(text: str) -> str:
    """Every IPv4 address but loopback and 0.0.0.0, one to one onto documentation ones."""
    mapping: dict[str, str] = {}
    pool = [f"192.0.2.{n}" for n in range(1, 255)] + [f"198.51.100.{n}" for n in range(1, 255)]

    def replace(match: re.Match[str]) -> str:
        old = match.group(0)
        if old.startswith(("127.", "0.")) or any(int(p) > 255 for p in match.groups()):
            return old
        if old not in mapping:
            mapping[old] = pool[len(mapping)]
        return mapping[old]

    return _IPV4.sub(replace, text)


def import_sample(name: str) -> tuple[str, dict[str, object], Translator]:
    text = rewrite((SAMPLES / name).read_text())
    # keepalived will not start a sync daemon without IPVS, which the host kernel lacks
    # (it exits): the line goes from both sides here; tests/kernel covers the sync daemon.
    text = re.sub(r"(?m)^\s*lvs_sync_daemon_interface .*$", "", text)
    tree = parse_text(text, "high", name)
    translator = Translator(tree)
    document = translator.run()
    return text, document, translator


def exclusions(translator: Translator) -> dict[str, str]:
    """Instance -> the first reason its adverts may differ from keepalived's."""
    out: dict[str, str] = {}
    top = {f.keyword for f in translator.report if f.keyword == "net_namespace"}
    for st in translator.tree:
        if st.keyword != "vrrp_instance":
            continue
        name = st.args[0]
        last = max(s.line for s in walk((st,)))
        for finding in translator.report:
            harmless = finding.keyword in HARMLESS or finding.why.startswith(ROUTE_LINE)
            if st.line <= finding.line <= last and not harmless:
                out.setdefault(name, finding.keyword)
        for inner in st.block or ():
            if inner.keyword == "interface" and not re.fullmatch(r"eth\d", inner.args[0]):
                out.setdefault(name, inner.args[0])
        for keyword in top:
            out.setdefault(name, keyword)
    return out


def settle(document: dict[str, object]) -> float:
    """Seconds until every tracking script has reported often enough to be up or down."""
    scripts = document.get("vrrp_scripts", ())
    longest = max(
        (float(s["interval"]) * max(s.get("rise", 1), s.get("fall", 1)) for s in scripts),  # type: ignore[attr-defined, index]
        default=0.0,
    )
    return longest + 1.0 if longest else 0.0


def test_exclusions_are_exactly_the_documented_ones() -> None:
    found = {}
    for name in VRRP_SAMPLES:
        _, _, translator = import_sample(name)
        if excluded := exclusions(translator):
            found[name] = excluded
    assert found == EXCLUDED


def test_every_vrrp_sample_has_something_compared_or_a_reason() -> None:
    for name in VRRP_SAMPLES:
        _, document, _ = import_sample(name)
        names = {i["name"] for i in document.get("vrrp_instances", ())}  # type: ignore[attr-defined]
        assert names, name
        assert names >= set(EXCLUDED.get(name, {})), name


# ---- adverts ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Advert:
    version: int
    vrid: int
    priority: int
    interval_centis: int
    addresses: tuple[str, ...]
    auth_type: int
    auth_data: bytes


def parse(frame: Frame) -> Advert | None:
    """The witness's own reading of a VRRP packet (not hacontrol's codec)."""
    data = frame.data
    if int.from_bytes(data[12:14], "big") != 0x0800 or len(data) < 34 or data[23] != 112:
        return None
    vrrp = data[14 + (data[14] & 0x0F) * 4 :]
    version, count = vrrp[0] >> 4, vrrp[3]
    if version == 2:
        interval, auth_type = vrrp[5] * 100, vrrp[4]
    else:
        interval, auth_type = int.from_bytes(vrrp[4:6], "big") & 0x0FFF, 0
    body = vrrp[8 : 8 + 4 * count]
    addresses = tuple(str(IPv4Address(body[i : i + 4])) for i in range(0, len(body), 4))
    auth = vrrp[8 + 4 * count : 16 + 4 * count] if version == 2 and auth_type else b""
    return Advert(version, vrrp[1], vrrp[2], interval, addresses, auth_type, auth)


def adverts_of(
    witness: Witness, since: float, vrids: set[int], timeout: float
) -> dict[int, Advert]:
    """The latest non-zero-priority advert of each VRID sent after `since`, waiting until
    every one is seen twice (the second is a master's periodic advert, not a
    transition's)."""
    deadline = time.monotonic() + timeout
    while True:
        seen: dict[int, list[Advert]] = {}
        for frame in witness.poll(0.1):
            if frame.at < since:
                continue
            advert = parse(frame)
            if advert is not None and advert.vrid in vrids and advert.priority:
                seen.setdefault(advert.vrid, []).append(advert)
        if all(len(seen.get(v, ())) >= 2 for v in vrids):
            return {v: seen[v][-1] for v in vrids}
        if time.monotonic() >= deadline:
            missing = sorted(v for v in vrids if len(seen.get(v, ())) < 2)
            raise AssertionError(f"no adverts of VRID(s) {missing} within {timeout} s")


@pytest.fixture
def lab() -> Iterator[Lab]:
    require_root()
    with Lab("eq") as lab:
        yield lab


def director(lab: Lab, text: str) -> tuple[Netns, Witness]:
    switch = lab.switch()
    ns, watch = lab.netns("d"), lab.netns("w")
    for index, ifname in enumerate(sorted(set(re.findall(r"\beth\d\b", text)) | {"eth0"})):
        lab.plug(ns, switch, ifname, f"203.0.113.{10 + index}/24")
    lab.plug(watch, switch, "eth0")
    return ns, Witness(watch, "eth0")


@pytest.mark.parametrize(
    "sample",
    [s for s in VRRP_SAMPLES if s != "keepalived.conf.conditional_conf"],
)
def test_adverts_equal_keepalived_s(lab: Lab, tmp_path: Path, sample: str) -> None:
    binary = require_tool("keepalived")
    text, document, _ = import_sample(sample)
    excluded = EXCLUDED.get(sample, {})
    instances = [i for i in document["vrrp_instances"] if i["name"] not in excluded]  # type: ignore[index]
    if not instances:
        # Every instance is excluded for a reason asserted above; nothing to compare here.
        assert set(excluded) == {i["name"] for i in document["vrrp_instances"]}  # type: ignore[index]
        return
    vrids = {int(i["vrid"]) for i in instances}
    ns, witness = director(lab, text)
    with witness:
        ka = Keepalived(lab, ns, tmp_path, "ka", (), binary=binary)
        ka.conf_path.write_text(text)
        started = time.time()
        ka.start()
        try:
            theirs = adverts_of(witness, started + settle(document), vrids, timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{ka.tail(60)}") from None
        ka.stop()
        ha = HaDaemon(lab, ns, tmp_path, "ha", ())
        imported = dict(document)
        imported["global"] = {**imported.get("global", {}), "metrics_listen": None}  # type: ignore[dict-item]
        ha.config_path.write_text(yaml.safe_dump(imported, sort_keys=False))
        started = time.time()
        ha.start()
        ours = adverts_of(witness, started + settle(document), vrids, timeout=60)
        ha.stop()
    for vrid, priority in TRACKED_PRIORITY.get(sample, {}).items():
        assert theirs[vrid].priority == priority, ka.tail()
    assert ours == theirs, (ka.tail(), ha.tail())


def test_conditional_sample_is_not_runnable_by_keepalived_here() -> None:
    # Its `@high net_namespace high` moves keepalived into a namespace this test does not
    # have, and its only instance tracks a script that is not on this machine: nothing to
    # compare, both asserted.
    _, document, translator = import_sample("keepalived.conf.conditional_conf")
    assert [f.keyword for f in translator.report] == ["net_namespace"]
    (script,) = document["vrrp_scripts"]  # type: ignore[index]
    assert not os.path.exists(script["script"][0])
    assert os.path.exists(SAMPLES / "keepalived.conf.conditional_conf")
