"""keepalived's LVS samples and their `hacontrol import` program the same IPVS table (issue 14).

For each of Debian's samples with a virtual_server, rewritten onto documentation addresses
(tests/interop/test_import_equivalence.py's `rewrite`): keepalived 2.2.7 runs its checker
process (`keepalived -C`) with the file in a namespace of the VM, and `ipvsadm -S -n` is
read once the table stands still; then the namespace's table is cleared and hacontrol's
translation of the same file is turned into its desired table (hacontrol/desired.py) and
programmed through hacontrol's IPVS layer, and `ipvsadm -S -n` must be the same lines.

What is compared is the translation of the table: services, groups, fwmarks, schedulers
and their flags, persistence, forwarding methods, ports and weights. The samples' health
checks are taken out of both sides first: their real servers (HTTP digests, SSL, SMTP,
MISC scripts on hosts that do not exist here) cannot answer in the VM, and a real server
without a checker is one keepalived adds at its configured weight and keeps, which is what
hacontrol's table holds for a real server whose checks pass. How each check judges a
server is tested against real servers in tests/netns/test_checker_parity.py, and the
samples with their checks kept, both daemons against real servers, in
tests/kernel/test_import_lvs_checks.py.
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from hacontrol.config import parse_config
from hacontrol.desired import desired_table, rs_port
from hacontrol.importer.grammar import parse_text
from hacontrol.importer.translate import Translator
from hacontrol.ipvs.model import Table
from hacontrol.ipvs.netlink import IpvsNetlink
from hacontrol.ipvs.plan import plan
from healthcheck.policy import DesiredRealServer
from tests.interop.test_import_equivalence import SAMPLES, rewrite
from tests.kernel.conftest import Ipvsadm, require_tool

LVS_SAMPLES = sorted(
    p.name
    for p in SAMPLES.glob("keepalived.conf.*")
    if re.search(r"(?m)^\s*virtual_server\b", p.read_text())
    # Its `@high net_namespace high` moves keepalived into a namespace that is not here
    # (tests/interop/test_import_equivalence.py says the same of its VRRP side).
    and p.name != "keepalived.conf.conditional_conf"
)
CHECKERS = (
    "HTTP_GET",
    "SSL_GET",
    "TCP_CHECK",
    "SMTP_CHECK",
    "MISC_CHECK",
    "UDP_CHECK",
    "DNS_CHECK",
    "PING_CHECK",
    "FILE_CHECK",
    "BFD_CHECK",
)
_CHECKER = re.compile(r"\b(?:" + "|".join(CHECKERS) + r")\s*\{")


def without_checks(text: str) -> str:
    """The config with every checker block taken out (braces matched, comments kept out)."""
    out: list[str] = []
    pos = 0
    for match in _CHECKER.finditer(text):
        if match.start() < pos:
            continue  # inside a block already removed
        out.append(text[pos : match.start()])
        depth, i = 0, match.end() - 1
        while i < len(text):
            if text[i] == "{":
                depth += 1
            elif text[i] == "}":
                depth -= 1
                if depth == 0:
                    break
            i += 1
        pos = i + 1
    out.append(text[pos:])
    return "".join(out)


def saved(ipvsadm: Ipvsadm, ns: str) -> set[str]:
    return {line.strip() for line in ipvsadm("-S", "-n", netns=ns).splitlines() if line.strip()}


def settled(read: Callable[[], set[str]], timeout: float) -> set[str]:
    """The table once two reads a second apart agree and it is not empty."""
    deadline = time.monotonic() + timeout
    last: set[str] | None = None
    while time.monotonic() < deadline:
        now = read()
        if now and now == last:
            return now
        last = now
        time.sleep(1.0)
    raise AssertionError(f"the table did not settle within {timeout} s: {sorted(last or ())}")


def hacontrol_table(text: str, name: str) -> Table:
    document = Translator(parse_text(text, "high", name)).run()
    # The IPVS side only: instances and their scripts need interfaces this test has not.
    keep = ("global", "virtual_servers", "virtual_server_groups", "ipvs")
    imported = {k: v for k, v in document.items() if k in keep}
    imported.setdefault("global", {})
    imported["global"] = {**imported["global"], "metrics_listen": None}  # type: ignore[dict-item]
    if isinstance(imported.get("ipvs"), dict):
        imported["ipvs"] = {k: v for k, v in imported["ipvs"].items() if k != "sync_daemon"}  # type: ignore[union-attr]
    config = parse_config(yaml.safe_dump(imported, sort_keys=False), name)
    # Every real server up at its configured weight: what keepalived holds without checks.
    desired = {
        vs.display_name: [
            DesiredRealServer(str(rs.address), rs_port(vs, rs.port), rs.weight)
            for rs in vs.real_servers
        ]
        for vs in config.virtual_servers
    }
    return desired_table(config, desired)


@pytest.mark.parametrize("sample", LVS_SAMPLES)
def test_the_imported_sample_programs_keepalived_s_table(
    netns: Callable[[str], str], ipvsadm: Ipvsadm, tmp_path: Path, sample: str
) -> None:
    binary = require_tool("keepalived")
    text = without_checks(rewrite((SAMPLES / sample).read_text()))
    # The sync daemon is VRRP's (not started by -C) and not part of `ipvsadm -S`.
    text = re.sub(r"(?m)^\s*lvs_sync_daemon(?:_interface)? .*$", "", text)
    ns = netns("eq")
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    pids = [tmp_path / f"{n}.pid" for n in ("main", "vrrp", "check")]
    argv = ["ip", "netns", "exec", ns, binary, "-C", "-n", "-l", "-D", "-f", str(conf)]
    argv += ["-p", str(pids[0]), "-r", str(pids[1]), "-c", str(pids[2])]
    log = (tmp_path / "keepalived.log").open("w")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)
    try:
        theirs = settled(lambda: saved(ipvsadm, ns), timeout=120)
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
    assert any(line.startswith("-a ") for line in theirs), theirs  # real servers too
    ipvsadm("-C", netns=ns)
    assert saved(ipvsadm, ns) == set()
    with IpvsNetlink(netns=ns) as link:
        result = link.apply(plan(hacontrol_table(text, sample), Table(), owned=()))
    assert result.ok, result.failures
    ours = saved(ipvsadm, ns)
    assert ours == theirs, (
        f"only keepalived's: {sorted(theirs - ours)}\nonly hacontrol's: {sorted(ours - theirs)}"
        f"\n{(tmp_path / 'keepalived.log').read_text()[-3000:]}"
    )
