"""The Debian package's life cycle on this machine: build, install, verify, upgrade, purge.

What an operator does with it, in order: `apt-get install ./hacontrol_*.deb`; the command,
the example config and the unit are where the README says; the config validates (also as
the daemon's user, as ExecStartPre runs it); `systemd-analyze verify` accepts the unit and
`systemd-analyze security` rates it at most 2.0 (and each drop-in as its comment says); the
installed daemon runs under the unit's user with exactly the unit's capabilities and every
feature works (VRRP, the VIP, a sysctl write, the control socket, reload as ExecReload runs
it, checks, a check as another user holding no capability); an upgrade keeps an edited
config; remove keeps config and user; purge leaves nothing behind.

Safe on a machine that runs production services: it starts no unit (this machine has no
systemd as PID 1 anyway), runs its daemons only inside network namespaces it made, and
refuses to touch a hacontrol it did not install: if the package (or a `hacontrol` user)
is already there it skips, except in CI (CI=true), where the machine is fresh and a
leftover must not hide a failure.

HACONTROL_DEB=path uses a .deb built earlier in the same run; otherwise scripts/build-deb
builds one (about two minutes).
"""

from __future__ import annotations

import grp
import gzip
import io
import os
import pwd
import re
import shutil
import signal
import stat
import subprocess
import tarfile
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.netns.netns_util import Lab, wait_until
from tests.netns.netns_util import require_root as require_netns_root
from tests.support import in_ci

pytestmark = pytest.mark.package

ROOT = Path(__file__).resolve().parents[2]
# By its full path: the test runner's PATH starts with the source tree's virtualenv.
HACONTROL = "/usr/bin/hacontrol"
UNIT = Path("/lib/systemd/system/hacontrol.service")
CONF = Path("/etc/hacontrol/hacontrol.yaml")
VENV = Path("/opt/venvs/hacontrol")
DROP_INS = Path("/usr/share/hacontrol/systemd")
TARGET_EXPOSURE = 2.0
APT = ["apt-get", "-o", "DPkg::Lock::Timeout=600", "-y", "-q"]
# Every path the package owns or makes: none may be left after a purge.
LEFTOVERS = (
    VENV,
    Path(HACONTROL),
    UNIT,
    Path("/etc/hacontrol"),
    Path("/usr/share/hacontrol"),
    Path("/usr/share/doc/hacontrol"),
    Path("/var/lib/hacontrol"),
)


def sh(
    *argv: str | Path, timeout: float = 120.0, check: bool = True
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    proc = subprocess.run(
        [str(a) for a in argv], capture_output=True, text=True, timeout=timeout, env=env
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{argv} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def package_status() -> str:
    proc = sh("dpkg-query", "-W", "-f=${db:Status-Abbrev}", "hacontrol", check=False)
    return proc.stdout.strip() if proc.returncode == 0 else ""


def user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def group_exists(name: str) -> bool:
    try:
        grp.getgrnam(name)
    except KeyError:
        return False
    return True


def exposure(unit: Path) -> float:
    out = sh("systemd-analyze", "security", "--offline=yes", unit).stdout
    match = re.search(rf"Overall exposure level for {unit.name}: (\d+\.\d+)", out)
    assert match, out
    return float(match.group(1))


def unit_capabilities(*files: Path) -> list[str]:
    """The AmbientCapabilities= the unit (plus drop-ins) gives, as setpriv names them."""
    caps: list[str] = []
    for path in files:
        for line in path.read_text().splitlines():
            if line.startswith("AmbientCapabilities="):
                caps += [c.lower().removeprefix("cap_") for c in line.split("=", 1)[1].split()]
    return caps


def as_unit_user(caps: list[str]) -> list[str]:
    """setpriv argv: the unit's User=/Group=, no supplementary groups, exactly `caps`
    inheritable, ambient and bounding (CapabilityBoundingSet= equals the ambient set),
    NoNewPrivileges=yes."""
    listed = ",".join(f"+{c}" for c in caps)
    return [
        "setpriv",
        "--reuid=hacontrol",
        "--regid=hacontrol",
        "--clear-groups",
        f"--inh-caps=-all,{listed}",
        f"--ambient-caps=-all,{listed}",
        f"--bounding-set=-all,{listed}",
        "--no-new-privs",
        "--",
    ]


def deb_version(deb: Path) -> str:
    return sh("dpkg-deb", "-f", deb, "Version").stdout.strip()


@pytest.fixture(scope="module")
def deb(tmp_path_factory: pytest.TempPathFactory) -> Path:
    require_netns_root("apt-get", "dpkg-deb", "systemd-analyze", "setpriv")
    status = package_status()
    if status and not status.startswith("un") and not in_ci():
        pytest.skip(f"hacontrol is already installed here (dpkg: {status}): not replacing it")
    if user_exists("hacontrol") and not status and not in_ci():
        pytest.skip("a user 'hacontrol' exists that the package did not make: not touching it")
    given = os.environ.get("HACONTROL_DEB")
    if given:
        return Path(given)
    out = tmp_path_factory.mktemp("deb")
    proc = sh(ROOT / "scripts" / "build-deb", out, timeout=1800, check=False)
    if proc.returncode != 0:
        pytest.fail(f"scripts/build-deb failed:\n{proc.stdout}\n{proc.stderr}", pytrace=False)
    (built,) = out.glob("hacontrol_*.deb")
    return built


@pytest.fixture(scope="module")
def installed(deb: Path) -> Iterator[Path]:
    sh(*APT, "install", deb.resolve(), timeout=900)
    try:
        yield deb
    finally:
        if package_status():
            sh(*APT, "purge", "hacontrol", timeout=600, check=False)


def test_installs_the_command_config_unit_and_user(installed: Path) -> None:
    version = sh(HACONTROL, "--version").stdout.strip()
    upstream = re.split(r"[-+~]", deb_version(installed))[0]  # no Debian revision
    assert version == f"hacontrol {upstream}"
    assert Path(HACONTROL).resolve() == VENV / "bin" / "hacontrol"
    files = set(sh("dpkg", "-L", "hacontrol").stdout.split())
    for path in (
        HACONTROL,
        str(UNIT),
        str(CONF),
        "/usr/share/hacontrol/hacontrol.schema.json",
        str(DROP_INS / "realtime.conf"),
        str(DROP_INS / "script-users.conf"),
        "/usr/share/doc/hacontrol/README.md",
        "/usr/share/doc/hacontrol/configuration.md",
        "/usr/share/man/man8/hacontrol.8.gz",
        "/usr/share/man/man5/hacontrol.yaml.5.gz",
    ):
        assert path in files, path
    # The manual pages are the ones generated from the config models (hacontrol/reference.py),
    # read from the package itself: a minimal image may exclude /usr/share/man from installs.
    tar = subprocess.run(
        ["dpkg-deb", "--fsys-tarfile", installed], capture_output=True, check=True, timeout=120
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(tar)) as archive:
        member = archive.extractfile("./usr/share/man/man5/hacontrol.yaml.5.gz")
        assert member is not None
        assert gzip.decompress(member.read()) == (ROOT / "doc" / "hacontrol.yaml.5").read_bytes()
    conffiles = Path("/var/lib/dpkg/info/hacontrol.conffiles").read_text().split()
    assert conffiles == [str(CONF)]
    assert CONF.read_bytes() == (ROOT / "conf" / "hacontrol.yaml").read_bytes()
    # Readable by the daemon's group only: it may hold an auth_pass.
    st = CONF.stat()
    assert (st.st_uid, grp.getgrgid(st.st_gid).gr_name) == (0, "hacontrol")
    assert stat.S_IMODE(st.st_mode) == 0o640
    user = pwd.getpwnam("hacontrol")
    assert user.pw_uid < 1000, "a system user"
    assert user.pw_shell in ("/usr/sbin/nologin", "/bin/false")
    # Installing must not enable the unit: the example would join VRID 51 on eth0.
    assert not Path("/etc/systemd/system/multi-user.target.wants/hacontrol.service").exists()


def test_the_installed_example_validates_as_root_and_as_the_daemons_user(installed: Path) -> None:
    assert "OK" in sh(HACONTROL, "check", "-c", CONF).stdout
    caps = unit_capabilities(UNIT)
    proc = sh(*as_unit_user(caps), HACONTROL, "check", "-c", CONF, check=False)
    assert proc.returncode == 0, proc.stderr


def test_systemd_analyze_verify_accepts_the_unit(installed: Path) -> None:
    # --man=no: whether `man` finds a page is the machine's (minimal images have no man
    # pages); that the package ships them is checked above.
    proc = sh("systemd-analyze", "verify", "--man=no", UNIT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "hacontrol" not in proc.stderr, proc.stderr


def test_exposure_is_at_most_the_target_and_each_drop_in_as_documented(
    installed: Path, tmp_path: Path
) -> None:
    assert exposure(UNIT) <= TARGET_EXPOSURE
    # A drop-in beside a unit given by path is read as from /etc/systemd/system/*.d.
    for drop_in in sorted(DROP_INS.glob("*.conf")):
        unit = tmp_path / drop_in.stem / "hacontrol.service"
        (unit.parent / "hacontrol.service.d").mkdir(parents=True)
        shutil.copy(UNIT, unit)
        shutil.copy(drop_in, unit.parent / "hacontrol.service.d" / drop_in.name)
        verify = sh("systemd-analyze", "verify", "--man=no", unit, check=False)
        assert verify.returncode == 0 and "hacontrol" not in verify.stderr, verify.stderr
        documented = re.search(
            r"rates the\s*(?:#\s*)?unit\s*(?:#\s*)?(\d\.\d) with this file", drop_in.read_text()
        )
        assert documented, f"{drop_in} does not say its exposure"
        assert exposure(unit) == float(documented.group(1)), drop_in.name


# ---- the installed daemon, as the unit runs it -------------------------------------------


def _world_dir(parent: str, mode: int = 0o755) -> Path:
    path = Path(tempfile.mkdtemp(prefix="hacontrol-pkg-", dir=parent))
    path.chmod(mode)
    return path


CONFIG = """\
global: {{router_id: pkgtest, metrics_listen: null}}
vrrp_instances:
  - name: VI_1
    interface: eth0
    vrid: 51
    version: 3
    priority: 150
    advert_int: 0.1
    virtual_ipaddresses: [192.0.2.10/24]
virtual_servers:
  - address: 192.0.2.10
    port: 80
    protocol: TCP
    real_servers:
      - address: 198.51.100.11
        checks:
          - {{type: script, delay_loop: 1, argv: [/bin/sh, -c, '{probe}', {out}/caps-daemon]}}
{user_check}"""
USER_CHECK = """\
      - address: 198.51.100.12
        checks:
          - {{type: script, delay_loop: 1, user: nobody,
              argv: [/bin/sh, -c, '{probe}', {out}/caps-nobody]}}
"""
# What a check sees of itself: uid and capability sets.
PROBE = '(id -u; grep ^Cap /proc/self/status) > "$0.tmp" && mv "$0.tmp" "$0"'


def _caps(path: Path) -> dict[str, Any]:
    lines = path.read_text().splitlines()
    sets = dict(line.split(":\t") for line in lines[1:])
    return {"uid": int(lines[0]), **{k: int(v, 16) for k, v in sets.items()}}


def _mask(caps: list[str]) -> int:
    numbers = {"net_admin": 12, "net_raw": 13, "setgid": 6, "setuid": 7, "kill": 5}
    return sum(1 << numbers[c] for c in caps)


@pytest.mark.parametrize("drop_in", [None, "script-users.conf"])
def test_the_installed_daemon_works_as_the_units_user_with_the_units_capabilities(
    installed: Path, drop_in: str | None
) -> None:
    files = [UNIT] + ([DROP_INS / drop_in] if drop_in else [])
    caps = unit_capabilities(*files)
    hacontrol = pwd.getpwnam("hacontrol")
    work = _world_dir("/tmp")
    out = _world_dir(str(work), 0o1777)
    run_dir, state_dir = work / "run", work / "state"
    for d in (run_dir, state_dir):
        d.mkdir()
        os.chown(d, hacontrol.pw_uid, hacontrol.pw_gid)
    config = work / "hacontrol.yaml"
    user_check = USER_CHECK.format(probe=PROBE, out=out) if drop_in else ""
    config.write_text(CONFIG.format(probe=PROBE, out=out, user_check=user_check))
    config.chmod(0o644)
    log = work / "daemon.log"
    try:
        with Lab("pkg") as lab, open(log, "wb") as log_file:
            ns = lab.netns("d")
            sw = lab.switch()
            lab.plug(ns, sw, "eth0", "198.51.100.1/24")
            proc = lab.spawn(
                ns,
                [
                    *as_unit_user(caps),
                    HACONTROL,
                    "run",
                    "-c",
                    str(config),
                    "--run-dir",
                    str(run_dir),
                    "--state-dir",
                    str(state_dir),
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
            # VRRP (raw socket), the VIP (rtnetlink), its GARPs (AF_PACKET).
            wait_until(lambda: ns.has_address("eth0", "192.0.2.10"), timeout=15)
            socket_path = run_dir / "control"
            status = sh(HACONTROL, "status", "--json", "-s", socket_path)
            assert '"state": "MASTER"' in status.stdout
            # ExecReload runs as the unit's user: the control socket lets it in.
            reload = sh(*as_unit_user(caps), HACONTROL, "reload", "-s", socket_path)
            assert "unchanged" in reload.stdout
            # A check without `user:` runs as the daemon's user with the unit's capabilities.
            wait_until(lambda: (out / "caps-daemon").exists(), timeout=10)
            seen = _caps(out / "caps-daemon")
            assert seen["uid"] == hacontrol.pw_uid
            assert seen["CapAmb"] == seen["CapEff"] == _mask(caps)
            if drop_in:
                # A check with `user:` runs as that user and holds nothing.
                wait_until(lambda: (out / "caps-nobody").exists(), timeout=10)
                seen = _caps(out / "caps-nobody")
                assert seen["uid"] == pwd.getpwnam("nobody").pw_uid
                assert (seen["CapAmb"], seen["CapPrm"], seen["CapEff"], seen["CapInh"]) == (
                    0,
                    0,
                    0,
                    0,
                )
            # An address of the VIP's subnet added after it is a secondary; removing the VIP
            # (the primary) on stop turns on promote_secondaries (a sysctl write as a
            # non-root user with CAP_NET_ADMIN) so that address survives.
            ns.ip("addr", "add", "192.0.2.20/24", "dev", "eth0")
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=15) == 0
            assert not ns.has_address("eth0", "192.0.2.10")
            assert ns.has_address("eth0", "192.0.2.20")
            promote = ns.run("cat", "/proc/sys/net/ipv4/conf/eth0/promote_secondaries")
            assert promote.strip() == "1"
        text = log.read_text()
        assert "Traceback" not in text and "sched_failed" not in text, text
        assert "promote_secondaries_failed" not in text, text
    except BaseException:
        if log.exists():
            print(log.read_text())
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- upgrade, remove, purge ----------------------------------------------------------------


def _next_version(deb: Path, workdir: Path) -> Path:
    """The same package as a higher version whose shipped config changed (an upgrade that
    brings a new conffile, the case where dpkg must choose)."""
    tree = workdir / "tree"
    sh("dpkg-deb", "-R", deb, tree)
    control = tree / "DEBIAN" / "control"
    version = deb_version(deb)
    control.write_text(control.read_text().replace(f"Version: {version}", f"Version: {version}+1"))
    shipped = tree / "etc" / "hacontrol" / "hacontrol.yaml"
    shipped.write_text(shipped.read_text() + "# shipped by the next version\n")
    md5 = sh("md5sum", shipped).stdout.split()[0]
    sums = tree / "DEBIAN" / "md5sums"
    sums.write_text(
        re.sub(r"^\w+(  etc/hacontrol/hacontrol\.yaml)$", rf"{md5}\1", sums.read_text(), flags=re.M)
    )
    newer = workdir / "hacontrol_next.deb"
    sh("dpkg-deb", "-Zgzip", "-z1", "-b", tree, newer, timeout=300)
    return newer


def test_an_upgrade_keeps_the_operators_config(installed: Path, tmp_path: Path) -> None:
    edited = CONF.read_text() + "# the operator's own line\n"
    CONF.write_text(edited)
    newer = _next_version(installed, tmp_path)
    sh(
        *APT,
        "-o",
        "Dpkg::Options::=--force-confdef",
        "-o",
        "Dpkg::Options::=--force-confold",
        "install",
        newer,
        timeout=900,
    )
    installed_version = sh("dpkg-query", "-W", "-f=${Version}", "hacontrol").stdout
    assert installed_version == deb_version(newer)
    assert CONF.read_text() == edited
    dist = CONF.with_name("hacontrol.yaml.dpkg-dist")
    assert dist.read_text().endswith("# shipped by the next version\n")
    st = CONF.stat()
    assert (grp.getgrgid(st.st_gid).gr_name, stat.S_IMODE(st.st_mode)) == ("hacontrol", 0o640)


def test_remove_keeps_config_and_user_and_purge_leaves_nothing(installed: Path) -> None:
    # What systemd's StateDirectory= would have made for a daemon that ran.
    Path("/var/lib/hacontrol").mkdir(exist_ok=True)
    Path("/var/lib/hacontrol/state.json").write_text("{}")
    sh(*APT, "remove", "hacontrol", timeout=600)
    assert package_status().startswith("rc")
    assert CONF.exists() and user_exists("hacontrol")
    assert not VENV.exists() and not Path(HACONTROL).exists()
    sh(*APT, "purge", "hacontrol", timeout=600)
    assert package_status() == ""
    left = [str(p) for p in LEFTOVERS if p.exists() or p.is_symlink()]
    assert left == []
    assert not user_exists("hacontrol") and not group_exists("hacontrol")
