"""The imported config behaves as keepalived's own: VRRP adverts compared field by field.

For each of Debian's VRRP samples, rewritten onto documentation addresses (every IPv4
address of the file mapped one to one into 192.0.2.0/24 and 198.51.100.0/24, interfaces
kept): keepalived runs with the file, then hacontrol with `hacontrol import keepalived`'s
translation of the same file, in turn, in the same namespace. A witness on the link reads
their adverts; for each comparable instance the fields must be equal: version, VRID,
priority, advert interval, the addresses carried (in order) and the authentication.

An instance is comparable when nothing the importer reported touches its adverts: a
tracked interface, script or file, or a sync group, changes keepalived's priority or
state, and AH authentication is not carried over. Those exclusions are asserted exactly
(`EXCLUDED`), so none hides a difference.
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

from hacontrol.importer.grammar import Statement, parse_text, walk
from hacontrol.importer.translate import Translator
from tests.interop.ka_util import HaDaemon, Keepalived, Witness
from tests.netns.netns_util import Frame, Lab, Netns, require_root
from tests.support import require_tool

pytestmark = pytest.mark.interop

SAMPLES = Path("/usr/share/doc/keepalived/samples")
# Findings that leave an instance's adverts as they are: its start-up state, mail, notify
# scripts, VMAC (adverts from another MAC), routes and per-VIP interfaces (where the
# address goes, not whether it is advertised).
HARMLESS = {
    "state",
    "smtp_alert",
    "notify_master",
    "notify_backup",
    "notify_fault",
    "notify_stop",
    "notify",
    "use_vmac",
    "virtual_routes",
    "virtual_rules",
    "dev",
}
# sample -> {instance: why it is not compared}
EXCLUDED: dict[str, dict[str, str]] = {
    "keepalived.conf.SSL_GET": {"VI_1": "authentication"},  # AH
    "keepalived.conf.conditional_conf": {"VI_0": "track_script"},
    "keepalived.conf.track_interface": {"VI_1": "track_interface"},
    # The sample lists 192.168.200.18 twice: keepalived advertises it twice, hacontrol once.
    "keepalived.conf.vrrp": {"VI_1": "192.0.2.4"},
    "keepalived.conf.vrrp.localcheck": {"VI_1": "track_interface", "VI_2": "track_interface"},
    "keepalived.conf.vrrp.scripts": {"VI_2": "sync group", "VI_3": "sync group"},
    "keepalived.conf.vrrp.sync": {f"VI_{n}": "sync group" for n in range(1, 10)},
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


def sync_group_members(tree: tuple[Statement, ...]) -> set[str]:
    """Instances in a sync group's `group { }` (keepalived 2.2 takes names nowhere else:
    1.x's bare names are unknown keywords to it, and the group stays empty)."""
    members: set[str] = set()
    for st in tree:
        if st.keyword == "vrrp_sync_group":
            for inner in st.block or ():
                if inner.keyword == "group":
                    members.update(name.keyword for name in inner.block or ())
    return members


def exclusions(translator: Translator) -> dict[str, str]:
    """Instance -> the first reason its adverts may differ from keepalived's."""
    out: dict[str, str] = {}
    grouped = sync_group_members(translator.tree)
    for st in translator.tree:
        if st.keyword != "vrrp_instance":
            continue
        name = st.args[0]
        last = max(s.line for s in walk((st,)))
        for finding in translator.report:
            if st.line <= finding.line <= last and finding.keyword not in HARMLESS:
                out.setdefault(name, finding.keyword)
        if name in grouped:
            out.setdefault(name, "sync group")
    return out


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
    """The latest non-zero-priority advert of each VRID, waiting until every one is seen
    twice (the second is a master's periodic advert, not a transition's)."""
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
            theirs = adverts_of(witness, started, vrids, timeout=30)
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{ka.tail(60)}") from None
        ka.stop()
        ha = HaDaemon(lab, ns, tmp_path, "ha", ())
        imported = dict(document)
        imported["global"] = {**imported.get("global", {}), "metrics_listen": None}  # type: ignore[dict-item]
        ha.config_path.write_text(yaml.safe_dump(imported, sort_keys=False))
        started = time.time()
        ha.start()
        ours = adverts_of(witness, started, vrids, timeout=60)
        ha.stop()
    assert ours == theirs, (ka.tail(), ha.tail())


def test_conditional_sample_is_not_runnable_by_keepalived_here() -> None:
    # Its `@high net_namespace high` moves keepalived into a namespace this test does not
    # have, and its only instance tracks a script: nothing to compare, both asserted.
    _, _, translator = import_sample("keepalived.conf.conditional_conf")
    keywords = {f.keyword for f in translator.report}
    assert {"net_namespace", "track_script"} <= keywords
    assert os.path.exists(SAMPLES / "keepalived.conf.conditional_conf")
