"""keepalived's LVS samples, checks kept: keepalived and hacontrol judge real servers alike.

The last point of issue 14. tests/kernel/test_import_lvs_equivalence.py compares the
translation of each sample's table with the checks taken out; here they stay in. Every
one of Debian's LVS samples (the same list, `LVS_SAMPLES`) is rewritten so that its
checks reach real servers this test starts, and all of them run merged into one
keepalived.conf, so each implementation starts once:

- only the samples' virtual_server and virtual_server_group blocks are kept (their
  VRRP halves are tests/interop's), comments dropped;
- addresses are moved onto documentation ones, sample by sample so that samples do not
  collide: virtual addresses into 192.0.2.0/24 (IPv6 2001:db8:a::/64), real servers,
  sorry servers and SMTP hosts (`connect_ip`) into 198.51.100.0/24 (2001:db8:b::/64)
  (a sample that uses one address as both a virtual and a real server gets two, so a
  check never goes to a virtual service), `bindto` onto the director's own address; each
  sample's fwmarks get 100 * (its place + 1) added;
- `delay_loop 10`, `delay_before_retry 1`, `connect_timeout 30` where the sample sets
  one (both daemons read the same rewritten file, so both get the same timings). Not
  shorter: a MISC script's timeout is the delay_loop, and under the VM's emulation, with
  other work on the machine, a server's answer can take seconds (a 3 s timeout made
  keepalived's SMTP checks flap). Failing servers fail at once (a reset, a digest, an
  exit code), so the long timeout only guards the passing ones;
- HTTP_GET/SSL_GET digests become the md5 of the page the servers serve (keepalived's
  genhash digest of the body), MISC_CHECK's `misc_path` and the quorum scripts become
  scripts this test writes (exit 0, or exit 1 for a failing server);
- `status_code` sample: its url with the 200-299 400-499 503 505 statuses asks a path
  the servers answer 404 to (a good status there).

In a second namespace behind a veth, one process (tests/kernel/lvs_servers.py) serves
every endpoint the checks ask: HTTP, HTTPS (trustme's certificate), TCP listeners, SMTP
(aiosmtpd), UDP echo; the namespace answers pings for every real server address. Some
real servers fail on purpose (`FAILS`): a port nobody listens on (TCP_CHECK, HTTP_GET,
SMTP_CHECK), the samples' own digests (not the page's), a MISC script that exits 1.
Between them the samples cover removal, `inhibit_on_failure` (weight 0), the sorry
server taking over a service whose only real server failed, `alpha` and a quorum with
hysteresis that is not reached, a virtual_server_group and fwmarks, IPv6 and UDP.

keepalived 2.2.7 runs as a daemon (`keepalived -n -l -D -G -f`) in the director
namespace until its table holds every judgement (each failing server absent or at
weight 0, each passing one at a weight > 0) and stands still; it is stopped and the
table cleared. Then hacontrol runs (`python -m hacontrol run`) from the same file's
translation (hacontrol/importer, as `hacontrol import keepalived` writes it), and
`ipvsadm -S -n` must become keepalived's lines exactly and stay so.

Every check type of the samples reaches a local server here: HTTP_GET, SSL_GET,
TCP_CHECK, SMTP_CHECK, MISC_CHECK, UDP_CHECK and PING_CHECK (`NOT_POINTED` is empty
and asserted so). No sample has a DNS_CHECK, FILE_CHECK or BFD_CHECK. Not covered: a
passing SMTP_CHECK with several `host` blocks (keepalived.conf.SMTP_CHECK's second real
server fails here on purpose: keepalived 2.2.7 flapped on it, see `FAILS`), and a failing
PING_CHECK or UDP_CHECK (their samples' one real server passes).

What it found: keepalived.conf.inhibit's `inhibit_on_failure` sits inside the real_server
block; hacontrol read only the virtual server's flag and removed the failed server where
keepalived keeps it at weight 0 (fixed in healthcheck/policy.py and hacontrol/desired.py).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hacontrol.importer.grammar import Statement, parse_text
from hacontrol.importer.translate import translate
from tests.interop.test_import_equivalence import SAMPLES
from tests.kernel.conftest import Ipvsadm, require_tool
from tests.kernel.daemon_util import ROOT, Procs, start_daemon, wait_for
from tests.kernel.test_import_lvs_equivalence import CHECKERS, LVS_SAMPLES, saved

DELAY_LOOP = 10
CONNECT_TIMEOUT = 30
BODY = "<html><body>lvseq: the page every real server serves</body></html>\n"
DIGEST = hashlib.md5(BODY.encode()).hexdigest()

# (sample, its real_server's words) -> how that server fails: "closed" (nothing listens
# on what its checks connect to), "digest" (the sample's own digests stay: not the page's),
# "false" (its MISC script exits 1). Every other real server passes.
FAILS: dict[tuple[str, str], str] = {
    ("keepalived.conf.fwmark", "192.168.201.101"): "closed",
    ("keepalived.conf.inhibit", "192.168.200.2 1358"): "digest",
    ("keepalived.conf.sample", "192.168.200.2 1358"): "closed",
    ("keepalived.conf.SSL_GET", "192.168.201.100 80"): "digest",
    ("keepalived.conf.virtual_server_group", "192.168.200.2 1358"): "digest",
    ("keepalived.conf.SMTP_CHECK", "172.16.1.12 25"): "closed",
    # Its three `host` blocks: keepalived 2.2.7 flapped on them against aiosmtpd in the VM
    # (a "Read timeout" within a second of a success, in three runs out of three, while
    # the one-host servers held), so it fails here for sure: nothing listens.
    ("keepalived.conf.SMTP_CHECK", "172.16.1.11 25"): "closed",
    ("keepalived.conf.misc_check", "192.168.200.6 1358"): "false",
    # 6 of 10 up: below quorum 7 + hysteresis 2, so never "quorum up".
    **{("keepalived.conf.quorum", f"10.0.0.{n} 8080"): "closed" for n in (7, 8, 9, 10)},
}
# Samples whose checks cannot reach a server the test starts, and why: none.
NOT_POINTED: dict[str, str] = {}

DIRECTOR_V4, SERVERS_V4 = "203.0.113.1", "203.0.113.2"
DIRECTOR_V6, SERVERS_V6 = "2001:db8:ff::1", "2001:db8:ff::2"
KINDS = {"HTTP_GET": "http", "SSL_GET": "https", "TCP_CHECK": "tcp", "SMTP_CHECK": "smtp"}
KINDS |= {"UDP_CHECK": "udp"}  # PING_CHECK, MISC_CHECK: no listener (ping, a script)

_IPV4 = re.compile(r"\b(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})(?:-(\d{1,3}))?\b")
_IPV6 = "ae00::"  # the only IPv6 prefix the samples use


@dataclass
class Pools:
    """Documentation addresses handed out in order, one per (sample, role, address)."""

    mapping: dict[tuple[str, str, str], str] = field(default_factory=dict)
    next: dict[str, int] = field(default_factory=lambda: {"vip": 1, "rs": 1})

    def v4(self, sample: str, role: str, match: re.Match[str]) -> str:
        span = int(match.group(5)) - int(match.group(4)) if match.group(5) else 0
        key = (sample, role, match.group(0))
        if key not in self.mapping:
            first = self.next[role]
            self.next[role] += span + 1
            assert self.next[role] <= 255, "documentation pool exhausted"
            net = "192.0.2" if role == "vip" else "198.51.100"
            self.mapping[key] = f"{net}.{first}" + (f"-{first + span}" if span else "")
        return self.mapping[key]


@dataclass
class Scripts:
    passing: str
    failing: str


def merged(pools: Pools, scripts: Scripts) -> tuple[str, dict[str, str]]:
    """The samples' LVS blocks rewritten into one keepalived.conf; real server -> fail mode.

    Real servers are keyed "address:port" as `ipvsadm -S -n` prints them (":0" without a
    port, IPv6 in brackets).
    """
    out = ["global_defs {\n    router_id lvseq\n}\n"]
    fails: dict[str, str] = {}
    for index, sample in enumerate(LVS_SAMPLES):
        text = (SAMPLES / sample).read_text()
        if sample == "keepalived.conf.status_code":
            text, n = re.subn(
                r"path /(\s+status_code 200-299 400-499)", r"path /status404/\1", text
            )
            assert n == 1
        out.append(f"# {sample}\n")
        out.extend(_rewrite(sample, index, text, pools, scripts, fails))
    return "".join(out), fails


def _rewrite(
    sample: str,
    index: int,
    text: str,
    pools: Pools,
    scripts: Scripts,
    fails: dict[str, str],
) -> Iterator[str]:
    stack: list[str] = []
    mode = ""  # the current real server's fail mode
    for raw in text.splitlines():
        line = re.sub(r"[#!].*", "", raw).rstrip()
        words = line.split()
        if not words:
            continue
        keyword = words[0]
        opens, closes = line.endswith("{"), keyword == "}"
        assert not (opens and closes) and line.count("{") + line.count("}") <= 1, raw
        inside = bool(stack) and stack[0] in ("virtual_server", "virtual_server_group")
        if not stack and keyword in ("virtual_server", "virtual_server_group"):
            inside = True
        if closes:
            stack.pop()
            if inside:
                yield line + "\n"
            continue
        if opens:
            stack.append(keyword)
        if not inside:
            continue
        if (stack[-1] == "virtual_server_group" and not opens) or keyword == "virtual_server":
            role = "vip"
        elif keyword in ("real_server", "sorry_server", "connect_ip"):
            role = "rs"
        elif keyword in ("bindto", "bind_to"):
            line = _IPV4.sub(DIRECTOR_V4, line)
            role = ""
        else:
            assert not _IPV4.search(line) and _IPV6 not in line, raw
            role = ""
        if role:
            line = _IPV4.sub(lambda m, r=role: pools.v4(sample, r, m), line)
            line = line.replace(_IPV6, "2001:db8:a::" if role == "vip" else "2001:db8:b::")
            line = re.sub(
                r"\bfwmark (\d+)", lambda m: f"fwmark {int(m[1]) + 100 * (index + 1)}", line
            )
        if keyword == "real_server":
            mode = FAILS.get((sample, " ".join(words[1:-1])), "")
            new = line.split()
            address = new[1] if ":" not in new[1] else f"[{new[1]}]"
            port = new[2] if len(new) > 3 else "0"
            if mode:
                fails[f"{address}:{port}"] = mode
        elif keyword == "delay_loop":
            line = f"    delay_loop {DELAY_LOOP}"
        elif keyword == "connect_timeout":
            line = f"    connect_timeout {CONNECT_TIMEOUT}"
        elif keyword == "delay_before_retry":
            line = "    delay_before_retry 1"
        elif keyword == "digest" and mode != "digest":
            line = f"    digest {DIGEST}"
        elif keyword == "misc_path":
            script = scripts.failing if mode == "false" else scripts.passing
            line = re.sub(r"/usr/local/bin/script\.sh", script, line)
            assert script in line, raw
        elif keyword in ("quorum_up", "quorum_down"):
            line = f"    {keyword} {scripts.passing}"
        yield line + "\n"
    assert not stack, sample


def _find(block: tuple[Statement, ...] | None, keyword: str) -> str | None:
    for st in block or ():
        if st.keyword == keyword:
            return st.args[0]
    return None


def endpoints(
    text: str, fails: dict[str, str]
) -> tuple[set[tuple[str, str, int]], set[str], set[str]]:
    """What the servers must listen on ((kind, address, port)), every address the servers'
    namespace must hold, and every real server ("address:port" as ipvsadm prints it)."""
    listen: dict[tuple[str, int], str] = {}
    addresses: set[str] = set()
    keys: set[str] = set()
    for vs in parse_text(text, "lvseq"):
        if vs.keyword != "virtual_server":
            continue
        for rs in vs.block or ():
            if rs.keyword == "sorry_server":
                addresses.add(rs.args[0])
            if rs.keyword != "real_server":
                continue
            address, port = rs.args[0], rs.args[1] if len(rs.args) > 1 else "0"
            addresses.add(address)
            key = f"{address if ':' not in address else f'[{address}]'}:{port}"
            keys.add(key)
            closed = fails.get(key)
            for check in rs.block or ():
                if check.keyword not in CHECKERS:
                    continue
                assert check.keyword in (*KINDS, "PING_CHECK", "MISC_CHECK"), check.keyword
                ip = _find(check.block, "connect_ip") or address
                cport = _find(check.block, "connect_port") or port
                hosts = [h for h in check.block or () if h.keyword == "host"]
                targets = [
                    (_find(h.block, "connect_ip") or ip, _find(h.block, "connect_port") or cport)
                    for h in hosts
                ] or [(ip, cport)]
                for tip, tport in targets:
                    addresses.add(tip)
                    if check.keyword in KINDS and closed != "closed":
                        kind = KINDS[check.keyword]
                        assert listen.setdefault((tip, int(tport)), kind) == kind, (tip, tport)
    return {(kind, ip, port) for (ip, port), kind in listen.items()}, addresses, keys


def real_servers(table: set[str]) -> dict[str, set[int]]:
    """Real server "address:port" -> its weights in every service that holds it."""
    found: dict[str, set[int]] = {}
    for line in table:
        match = re.match(r"-a .* -r (\S+) .*-w (\d+)", line)
        if match:
            found.setdefault(match[1], set()).add(int(match[2]))
    return found


def judged(table: set[str], fails: dict[str, str], passing: set[str]) -> bool:
    """Every failing real server absent or at weight 0, every passing one at a weight > 0."""
    held = real_servers(table)
    return all(held.get(rs, {0}) == {0} for rs in fails) and all(
        held.get(rs) and 0 not in held[rs] for rs in passing
    )


def wait_stable(
    read: Callable[[], set[str]], done: Callable[[set[str]], bool], hold: float, timeout: float
) -> set[str]:
    """The table once `done` holds and it has not changed for `hold` seconds (bounded)."""
    deadline = time.monotonic() + timeout
    since, last = time.monotonic(), None
    while time.monotonic() < deadline:
        now = read()
        if now != last:
            since, last = time.monotonic(), now
        elif done(now) and time.monotonic() - since >= hold:
            return now
        time.sleep(1.0)
    raise AssertionError(f"no settled table within {timeout} s; last: {sorted(last or ())}")


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def test_every_lvs_sample_check_reaches_a_local_server() -> None:
    assert NOT_POINTED == {}
    assert set(LVS_SAMPLES) >= {sample for sample, _ in FAILS}


def test_keepalived_and_hacontrol_judge_the_samples_real_servers_alike(
    netns: Callable[[str], str], ipvsadm: Ipvsadm, procs: Procs, tmp_path: Path
) -> None:
    import trustme

    binary = require_tool("keepalived")
    scripts = Scripts(str(tmp_path / "pass.sh"), str(tmp_path / "fail.sh"))
    for path, code in ((scripts.passing, 0), (scripts.failing, 1)):
        Path(path).write_text(f"#!/bin/sh\nexit {code}\n")
        Path(path).chmod(0o755)
    text, fails = merged(Pools(), scripts)
    conf = tmp_path / "keepalived.conf"
    conf.write_text(text)
    listen, addresses, keys = endpoints(text, fails)
    passing = keys - set(fails)
    assert len(fails) == len(FAILS) and passing, (sorted(fails), sorted(FAILS))

    # The director and the servers' namespace, a veth between them, a /32 (/128) route
    # per real server address.
    director, servers = netns("lvd"), netns("lvs")
    veth = ["link", "add", "lvd0", "type", "veth", "peer", "name", "lvs0", "netns", servers]
    subprocess.run(["ip", "-n", director, *veth], check=True)
    batch_d = [
        f"addr add {DIRECTOR_V4}/24 dev lvd0",
        f"addr add {DIRECTOR_V6}/64 dev lvd0 nodad",
        "link set lvd0 up",
    ]
    batch_s = [
        f"addr add {SERVERS_V4}/24 dev lvs0",
        f"addr add {SERVERS_V6}/64 dev lvs0 nodad",
        "link set lvs0 up",
    ]
    for address in sorted(addresses):
        v6 = ipaddress.ip_address(address).version == 6
        prefix = f"{address}/{128 if v6 else 32}"
        batch_s.append(f"addr add {prefix} dev lo")
        batch_d.append(f"route add {prefix} via {SERVERS_V6 if v6 else SERVERS_V4}")
    for ns, batch in ((director, batch_d), (servers, batch_s)):
        subprocess.run(
            ["ip", "-n", ns, "-batch", "-"], input="\n".join(batch) + "\n", text=True, check=True
        )

    ca = trustme.CA()
    cert = ca.issue_cert("rs.example.test", *sorted(addresses))
    cert.private_key_pem.write_to_path(str(tmp_path / "rs.key"))
    cert.cert_chain_pems[0].write_to_path(str(tmp_path / "rs.pem"))
    spec = tmp_path / "servers.json"
    spec.write_text(
        json.dumps(
            {
                "body": BODY,
                "cert": str(tmp_path / "rs.pem"),
                "key": str(tmp_path / "rs.key"),
                "endpoints": sorted(listen),
            }
        )
    )
    argv = [sys.executable, str(ROOT / "tests/kernel/lvs_servers.py"), str(spec)]
    with (tmp_path / "servers.log").open("wb") as out:
        server = procs.start(["ip", "netns", "exec", servers, *argv], stdout=out, stderr=out)
    wait_for(lambda: _ready(server, tmp_path / "servers.log"), "the real servers", timeout=120)
    read = lambda: saved(ipvsadm, director)  # noqa: E731

    # keepalived, as a daemon, from the rewritten file.
    pids = [str(tmp_path / f"{n}.pid") for n in ("main", "vrrp", "check")]
    argv = [binary, "-n", "-l", "-D", "-G", "-f", str(conf), "-p", pids[0], "-r", pids[1]]
    log = tmp_path / "keepalived.log"
    with log.open("wb") as out:
        keepalived = procs.start(
            ["ip", "netns", "exec", director, *argv, "-c", pids[2]], stdout=out, stderr=out
        )
    try:
        theirs = wait_stable(
            read, lambda t: judged(t, fails, passing), hold=2 * DELAY_LOOP, timeout=240
        )
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log.read_text()[-4000:]}") from None
    finally:
        stop(keepalived)
    assert any(" -w 0" in line for line in theirs), "no inhibit_on_failure weight 0"
    ipvsadm("-C", netns=director)
    assert read() == set()

    # hacontrol, from the translation of the same file.
    document, _findings = translate(parse_text(text, "lvseq", "keepalived.conf"))
    assert set(document) <= {"global", "virtual_servers", "virtual_server_groups"}, document
    document.setdefault("global", {})
    document["global"] = {**document["global"], "metrics_listen": None}  # type: ignore[dict-item]
    config = tmp_path / "hacontrol.yaml"
    config.write_text(yaml.safe_dump(document, sort_keys=False))
    log = tmp_path / "hacontrol.log"
    daemon = start_daemon(procs, director, config, log, tmp_path)
    try:
        # Start-up under emulation takes a minute or more: bounded generously.
        ours = wait_stable(read, lambda t: t == theirs, hold=2 * DELAY_LOOP, timeout=420)
    except AssertionError:
        ours = read()
        raise AssertionError(
            f"only keepalived's: {sorted(theirs - ours)}\nonly hacontrol's: "
            f"{sorted(ours - theirs)}\n{log.read_text()[-4000:]}"
        ) from None
    finally:
        stop(daemon)
    assert ours == theirs


def _ready(proc: subprocess.Popen[bytes], log: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the servers exited {proc.returncode}: {log.read_text()[-3000:]}")
    return b"ready" in log.read_bytes()
